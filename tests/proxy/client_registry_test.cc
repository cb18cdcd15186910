// The client table behind `ctl clients`: refused plaintext clients in rows of their own,
// the transport filter, eviction of idle rows, and the per-row queued-bytes maxima.
#include "proxy/observe/client_registry.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace sidecar::proxy {
namespace {

const ClientRow* Find(const std::vector<ClientRow>& rows, std::string_view application,
                      ClientState state) {
  for (const ClientRow& row : rows) {
    if (row.application == application && row.state == state) {
      return &row;
    }
  }
  return nullptr;
}

TEST(ClientRegistryTest, RefusedClientsGetARowOfTheirOwnWithCountAndLastSeen) {
  ClientRegistry registry;
  registry.Refused("10.0.0.7:50001", "billing", "PyMongo 4.6", false);
  registry.Refused("10.0.0.7:50002", "billing", "PyMongo 4.6", false);
  std::vector<ClientRow> rows = registry.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  const ClientRow& row = rows[0];
  EXPECT_EQ(row.state, ClientState::kRefused);
  EXPECT_EQ(row.address, "10.0.0.7");
  EXPECT_EQ(row.application, "billing");
  EXPECT_EQ(row.driver, "PyMongo 4.6");
  EXPECT_FALSE(row.member);
  EXPECT_EQ(row.transport, Transport::kPlaintext);
  EXPECT_EQ(row.active, 0);  // a refused connection is never open
  EXPECT_EQ(row.total, 2);
  EXPECT_GT(row.last_seen_unix_ms, 0);
  EXPECT_EQ(ClientStateName(row.state), "refused");
}

TEST(ClientRegistryTest, RefusalsDoNotTouchTheConnectedRowOfTheSameClient) {
  ClientRegistry registry;
  // Connected before the switch to requireTLS, refused after it: both are true at once.
  ClientRegistry::Handle open =
      registry.Opened("10.0.0.7:50001", Transport::kPlaintext, "billing", "PyMongo 4.6", false);
  registry.Refused("10.0.0.7:50002", "billing", "PyMongo 4.6", false);
  std::vector<ClientRow> rows = registry.Snapshot();
  ASSERT_EQ(rows.size(), 2u);
  const ClientRow* connected = Find(rows, "billing", ClientState::kConnected);
  const ClientRow* refused = Find(rows, "billing", ClientState::kRefused);
  ASSERT_NE(connected, nullptr);
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(connected->active, 1);
  EXPECT_EQ(connected->total, 1);
  EXPECT_EQ(refused->active, 0);
  EXPECT_EQ(refused->total, 1);
  EXPECT_EQ(ClientStateName(connected->state), "connected");
  registry.Closed(open);
  EXPECT_EQ(Find(registry.Snapshot(), "billing", ClientState::kConnected)->active, 0);
}

TEST(ClientRegistryTest, ThePlaintextViewIncludesRefusedRowsAndTheTlsViewDoesNot) {
  ClientRegistry registry;
  registry.Refused("10.0.0.8:1", "legacy", "", false);
  ClientRegistry::Handle tls =
      registry.Opened("10.0.0.9:2", Transport::kTls, "moved", "Node 6", false);
  Transport plaintext = Transport::kPlaintext;
  Transport tls_only = Transport::kTls;
  std::vector<ClientRow> plaintext_rows = registry.Snapshot(&plaintext);
  ASSERT_EQ(plaintext_rows.size(), 1u);
  EXPECT_EQ(plaintext_rows[0].application, "legacy");
  EXPECT_EQ(plaintext_rows[0].state, ClientState::kRefused);
  std::vector<ClientRow> tls_rows = registry.Snapshot(&tls_only);
  ASSERT_EQ(tls_rows.size(), 1u);
  EXPECT_EQ(tls_rows[0].application, "moved");
  registry.Closed(tls);
}

TEST(ClientRegistryTest, ClientsRefusedBeforeTheirHelloShareOneRowPerAddress) {
  ClientRegistry registry;
  for (int i = 0; i < 3; ++i) {
    registry.Refused("[::1]:4000" + std::to_string(i), "", "", false);
  }
  std::vector<ClientRow> rows = registry.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].address, "::1");
  EXPECT_EQ(rows[0].total, 3);
}

TEST(ClientRegistryTest, TheTableStaysBoundedByEvictingTheIdlestRows) {
  ClientRegistry registry(/*max_rows=*/4);
  ClientRegistry::Handle open =
      registry.Opened("10.0.0.1:1", Transport::kPlaintext, "open", "", false);
  for (int i = 0; i < 100; ++i) {
    registry.Refused("10.0.1.1:1", "refused-" + std::to_string(i), "", false);
  }
  std::vector<ClientRow> rows = registry.Snapshot();
  EXPECT_EQ(rows.size(), 4u);
  // The row with an open connection is never evicted; the latest refusals are kept.
  EXPECT_NE(Find(rows, "open", ClientState::kConnected), nullptr);
  EXPECT_NE(Find(rows, "refused-99", ClientState::kRefused), nullptr);
  EXPECT_EQ(Find(rows, "refused-0", ClientState::kRefused), nullptr);
  registry.Closed(open);
}

TEST(ClientRegistryTest, QueuedMaximaKeepTheHighestPeakPerFlowOverTheRowsConnections) {
  ClientRegistry registry;
  ClientRegistry::Handle a = registry.Opened("10.0.0.1:1", Transport::kTls, "app", "", false);
  ClientRegistry::Handle b = registry.Opened("10.0.0.1:2", Transport::kTls, "app", "", false);
  ClientRegistry::QueuedPeak(a, FlowDirection::kServerToClient, 100000);
  ClientRegistry::QueuedPeak(b, FlowDirection::kServerToClient, 50000);  // lower: kept at 100000
  ClientRegistry::QueuedPeak(b, FlowDirection::kClientToServer, 7000);
  ClientRegistry::QueuedPeak({}, FlowDirection::kClientToServer, 1 << 30);  // unidentified
  registry.Closed(a);
  std::vector<ClientRow> rows = registry.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].max_queued_to_client, 100000);
  EXPECT_EQ(rows[0].max_queued_to_upstream, 7000);
  registry.Closed(b);
  // A closed connection's peak stays in its row.
  EXPECT_EQ(registry.Snapshot()[0].max_queued_to_client, 100000);
}

TEST(ClientRegistryTest, QueuedPeaksFromManyThreadsEndAtTheHighest) {
  ClientRegistry registry;
  ClientRegistry::Handle row =
      registry.Opened("10.0.0.1:1", Transport::kPlaintext, "app", "", false);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([row, t] {
      for (size_t i = 0; i < 10000; ++i) {
        ClientRegistry::QueuedPeak(row, FlowDirection::kClientToServer, i * 4 + t);
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(registry.Snapshot()[0].max_queued_to_upstream, 9999 * 4 + 3);
  registry.Closed(row);
}

}  // namespace
}  // namespace sidecar::proxy
