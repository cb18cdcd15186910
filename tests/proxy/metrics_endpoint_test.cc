// Metrics label bounds, readiness, the /metrics and /ready endpoint, and the pure parts of the
// upstream probe (hello reply parsing and the advertised-host check).
#include "proxy/metrics_endpoint.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "protocol/bson.h"
#include "protocol/wire.h"
#include "proxy/metrics.h"
#include "proxy/mode.h"
#include "proxy/readiness.h"
#include "proxy/upstream_probe.h"

namespace sidecar::proxy {
namespace {

TEST(MetricsTest, FloodOfApplicationNamesFoldsIntoOther) {
  Metrics metrics("test", "BoringSSL");
  for (int i = 0; i < 10000; ++i) {
    metrics.PlaintextClient(absl::StrCat("app-", i), "driver 1.0", false);
  }
  EXPECT_EQ(metrics.PlaintextClientLabelSets(), Metrics::kMaxClientLabelSets);
  for (int i = 0; i < 100; ++i) {
    metrics.PlaintextClient(absl::StrCat("member-", i), "mongod", true);
  }
  // One more for the members' "other": never more than 257 series.
  EXPECT_EQ(metrics.PlaintextClientLabelSets(), Metrics::kMaxClientLabelSets + 1);
  double total = 0;
  for (const auto& family : metrics.registry()->Collect()) {
    if (family.name == "tls_sidecar_plaintext_client_connections_total") {
      for (const auto& metric : family.metric) {
        total += metric.counter.value;
      }
    }
  }
  EXPECT_EQ(total, 10100);  // folded, never dropped
}

TEST(MetricsTest, EveryModeTransitionIsExportedFromTheStart) {
  Metrics metrics("test", "BoringSSL");
  for (const auto& family : metrics.registry()->Collect()) {
    if (family.name == "tls_sidecar_mode_transitions_total") {
      EXPECT_EQ(family.metric.size(), 12u);
    }
  }
}

std::string Get(int port, const char* path, int* status, const char* method = "GET") {
  char error[256] = {};
  mg_connection* connection = mg_download("127.0.0.1", port, 0, error, sizeof(error),
                                          "%s %s HTTP/1.0\r\n\r\n", method, path);
  if (connection == nullptr) {
    *status = -1;
    return error;
  }
  *status = mg_get_response_info(connection)->status_code;
  std::string body;
  char buffer[4096];
  int n;
  while ((n = mg_read(connection, buffer, sizeof(buffer))) > 0) {
    body.append(buffer, n);
  }
  mg_close_connection(connection);
  return body;
}

TEST(MetricsEndpointTest, ServesMetricsAndReadinessThatFollowsTheUpstream) {
  Metrics metrics("test", "BoringSSL");
  Readiness readiness(metrics);
  auto endpoint = MetricsEndpoint::Create("127.0.0.1:0", metrics.registry(), &readiness);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  int port = (*endpoint)->port();
  ASSERT_GT(port, 0);

  int status = 0;
  std::string body = Get(port, "/ready", &status);
  EXPECT_EQ(status, 503);
  EXPECT_NE(body.find("listeners not bound"), std::string::npos) << body;
  EXPECT_NE(body.find("upstream mongod"), std::string::npos) << body;

  readiness.SetListenersBound(true);
  readiness.SetCertificatesLoaded(true);
  readiness.SetUpstream(absl::UnavailableError("127.0.0.1:1: connection refused"));
  body = Get(port, "/ready", &status);
  EXPECT_EQ(status, 503);
  EXPECT_EQ(body, "upstream mongod 127.0.0.1:1: connection refused\n");
  EXPECT_EQ(metrics.ReadyValue(), 0);

  readiness.SetUpstream(absl::OkStatus());
  body = Get(port, "/ready", &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, "ready\n");
  EXPECT_EQ(metrics.ReadyValue(), 1);

  body = Get(port, "/metrics", &status);
  EXPECT_EQ(status, 200);
  EXPECT_NE(body.find("\ntls_sidecar_ready 1\n"), std::string::npos) << body;
  EXPECT_NE(body.find("# TYPE tls_sidecar_tls_handshake_duration_seconds histogram"),
            std::string::npos);

  Get(port, "/metrics", &status, "POST");
  EXPECT_EQ(status, 405);
  Get(port, "/other", &status);
  EXPECT_EQ(status, 404);

  readiness.SetDraining();
  body = Get(port, "/ready", &status);
  EXPECT_EQ(status, 503);
  EXPECT_EQ(metrics.ReadyValue(), 0);
}

// requireTLS without a server certificate serves nobody: readiness computes that from the mode
// and the certificate instead of assuming that a loaded snapshot can serve.
TEST(MetricsEndpointTest, ReadinessIs503WhenNoClientCanBeServed) {
  Metrics metrics("test", "BoringSSL");
  Readiness readiness(metrics);
  auto endpoint = MetricsEndpoint::Create("127.0.0.1:0", metrics.registry(), &readiness);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  int port = (*endpoint)->port();
  readiness.SetListenersBound(true);
  readiness.SetCertificatesLoaded(true);
  readiness.SetUpstream(absl::OkStatus());

  struct Case {
    Mode mode;
    bool server_certificate;
    bool ready;
  };
  for (const Case& c : std::vector<Case>{{Mode::kDisabled, false, true},
                                         {Mode::kAllowTls, false, true},  // plaintext still in
                                         {Mode::kPreferTls, false, true},
                                         {Mode::kRequireTls, false, false},
                                         {Mode::kRequireTls, true, true},
                                         {Mode::kAllowTls, true, true}}) {
    readiness.SetServing(c.mode, c.server_certificate);
    int status = 0;
    std::string body = Get(port, "/ready", &status);
    EXPECT_EQ(status, c.ready ? 200 : 503) << ModeName(c.mode) << " " << c.server_certificate;
    EXPECT_EQ(metrics.ReadyValue(), c.ready ? 1 : 0) << ModeName(c.mode);
    if (!c.ready) {
      EXPECT_EQ(body,
                "no client can be served: requireTLS refuses plaintext and no server certificate "
                "is loaded (net.tls.certificateKeyFile or net.tls.certificateSelector)\n");
    }
  }
}

// /live is the liveness probe of deploy/kubernetes: it answers 200 while /ready is 503 (an
// upstream that is down, no certificate), so an orchestrator never restarts a sidecar for
// what a restart cannot fix.
TEST(MetricsEndpointTest, LiveAnswers200WhateverTheReadiness) {
  Metrics metrics("test", "BoringSSL");
  Readiness readiness(metrics);
  auto endpoint = MetricsEndpoint::Create("127.0.0.1:0", metrics.registry(), &readiness);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  int port = (*endpoint)->port();
  readiness.SetListenersBound(true);
  readiness.SetCertificatesLoaded(true);
  readiness.SetUpstream(absl::UnavailableError("connection refused"));
  int status = 0;
  Get(port, "/ready", &status);
  ASSERT_EQ(status, 503);
  EXPECT_EQ(Get(port, "/live", &status), "live\n");
  EXPECT_EQ(status, 200);
  readiness.SetUpstream(absl::OkStatus());
  EXPECT_EQ(Get(port, "/live", &status), "live\n");
  EXPECT_EQ(status, 200);
  Get(port, "/live", &status, "POST");
  EXPECT_EQ(status, 405);
  Get(port, "/lively", &status);
  EXPECT_EQ(status, 404);
}

TEST(MetricsEndpointTest, AnAddressInUseIsAnErrorNamingIt) {
  Metrics metrics("test", "BoringSSL");
  Readiness readiness(metrics);
  auto first = MetricsEndpoint::Create("127.0.0.1:0", metrics.registry(), &readiness);
  ASSERT_TRUE(first.ok());
  std::string taken = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = MetricsEndpoint::Create(taken, metrics.registry(), &readiness);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(std::string(second.status().message()).find(taken), std::string::npos);
}

std::vector<uint8_t> HelloReply(protocol::BsonWriter& writer) {
  std::vector<uint8_t> body = writer.Finish();
  return protocol::BuildOpMsg(7, 1, body);
}

TEST(UpstreamProbeTest, ParsesHostsOfAReplicaSetHello) {
  protocol::BsonWriter writer;
  writer.AppendBool("isWritablePrimary", true).AppendString("setName", "rs0");
  writer.StartArray("hosts").AppendString("0", "a:27017").AppendString("1", "b:27017").EndArray();
  writer.StartArray("arbiters").AppendString("0", "c:27017").EndArray();
  writer.AppendString("me", "a:27017").AppendInt32("maxWireVersion", 21).AppendDouble("ok", 1);
  auto summary = ParseHelloReply(HelloReply(writer));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->set_name, "rs0");
  EXPECT_EQ(summary->me, "a:27017");
  EXPECT_EQ(summary->hosts, (std::vector<std::string>{"a:27017", "b:27017", "c:27017"}));
  EXPECT_TRUE(summary->writable_primary);
  EXPECT_EQ(summary->max_wire_version, 21);
}

TEST(UpstreamProbeTest, AnErrorReplyCarriesItsMessage) {
  protocol::BsonWriter writer;
  writer.AppendDouble("ok", 0).AppendString("errmsg", "not now");
  auto summary = ParseHelloReply(HelloReply(writer));
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(std::string(summary.status().message()).find("not now"), std::string::npos);
  std::vector<uint8_t> truncated = HelloReply(writer.AppendDouble("ok", 1));
  truncated.pop_back();
  EXPECT_FALSE(ParseHelloReply(truncated).ok());
}

sockaddr_storage V4(const char* ip, uint16_t port) {
  sockaddr_storage address{};
  auto* in = reinterpret_cast<sockaddr_in*>(&address);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  inet_pton(AF_INET, ip, &in->sin_addr);
  return address;
}

std::vector<sockaddr_storage> FakeResolve(const std::string& host) {
  if (host == "node-a") {
    return {V4("10.0.0.1", 0)};
  }
  if (host == "node-b") {
    return {V4("10.0.0.2", 0)};
  }
  return {};
}

TEST(UpstreamProbeTest, WarnsWhenThisNodeIsAdvertisedAtMongodsOwnPort) {
  SidecarAddresses sidecar;
  sidecar.port = 27017;
  sidecar.listening = {V4("10.0.0.1", 27017)};
  sidecar.local = {V4("127.0.0.1", 0), V4("10.0.0.1", 0)};
  HelloSummary hello;

  hello.hosts = {"node-a:27017", "node-b:27017"};  // the sidecars: fine
  EXPECT_TRUE(AdvertisedHostWarnings(hello, sidecar, &FakeResolve).empty());

  hello.hosts = {"node-a:27018", "node-b:27017"};  // this node at mongod's port
  auto warnings = AdvertisedHostWarnings(hello, sidecar, &FakeResolve);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("node-a:27018"), std::string::npos) << warnings[0];

  hello.hosts = {"node-b:27017", "unresolvable:27017"};  // this node is not advertised
  warnings = AdvertisedHostWarnings(hello, sidecar, &FakeResolve);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("none of the hosts"), std::string::npos) << warnings[0];

  hello.hosts = {};  // a standalone advertises nothing
  EXPECT_TRUE(AdvertisedHostWarnings(hello, sidecar, &FakeResolve).empty());

  sidecar.listening = {V4("0.0.0.0", 27017)};  // a wildcard covers every local address
  hello.hosts = {"node-a:27017"};
  EXPECT_TRUE(AdvertisedHostWarnings(hello, sidecar, &FakeResolve).empty());
}

TEST(UpstreamProbeTest, WarnsWhenTheUpstreamIsNotLoopback) {
  SidecarAddresses sidecar;
  sidecar.port = 27017;
  sidecar.upstream = V4("10.0.0.1", 27018);
  auto warnings = ExposedUpstreamWarnings(sidecar, 100);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("10.0.0.1:27018"), std::string::npos) << warnings[0];
}

}  // namespace
}  // namespace sidecar::proxy
