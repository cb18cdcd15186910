// Metrics label bounds, readiness, the /metrics and /ready endpoint, and the pure parts of the
// upstream probe (the advertised-host check; hello reply parsing is tested in
// tests/protocol/hello_probe_test.cc).
#include "proxy/observe/metrics_endpoint.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/base/mode.h"
#include "proxy/observe/metrics.h"
#include "proxy/observe/readiness.h"
#include "tests/support/http_get.h"
#include "proxy/upstream/upstream_probe.h"

namespace sidecar::proxy {
namespace {

// The family `name` as the registry exports it; nullptr when it is not exported, which the
// caller turns into a failure (an expectation guarded by "if found" would pass without it).
const prometheus::MetricFamily* FindFamily(const std::vector<prometheus::MetricFamily>& families,
                                           const std::string& name) {
  for (const auto& family : families) {
    if (family.name == name) {
      return &family;
    }
  }
  return nullptr;
}

std::string Label(const prometheus::ClientMetric& metric, const std::string& name) {
  for (const auto& label : metric.label) {
    if (label.name == name) {
      return label.value;
    }
  }
  return "(absent)";
}

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
  std::vector<prometheus::MetricFamily> families = metrics.registry()->Collect();
  const prometheus::MetricFamily* family =
      FindFamily(families, "tls_sidecar_plaintext_client_connections_total");
  ASSERT_NE(family, nullptr);
  EXPECT_EQ(family->metric.size(), Metrics::kMaxClientLabelSets + 1);
  double total = 0;
  for (const auto& metric : family->metric) {
    total += metric.counter.value;
  }
  EXPECT_EQ(total, 10100);  // folded, never dropped
}

TEST(MetricsTest, EveryModeTransitionIsExportedFromTheStart) {
  Metrics metrics("test", "BoringSSL");
  std::vector<prometheus::MetricFamily> families = metrics.registry()->Collect();
  const prometheus::MetricFamily* family =
      FindFamily(families, "tls_sidecar_mode_transitions_total");
  ASSERT_NE(family, nullptr);
  // Every ordered pair of the four modes but the pair of a mode with itself, each at zero.
  std::set<std::pair<std::string, std::string>> pairs;
  for (const auto& metric : family->metric) {
    std::string from = Label(metric, "from");
    std::string to = Label(metric, "to");
    EXPECT_NE(from, to);
    EXPECT_EQ(metric.counter.value, 0) << from << " -> " << to;
    pairs.emplace(from, to);
  }
  const char* modes[] = {"disabled", "allowTLS", "preferTLS", "requireTLS"};
  std::set<std::pair<std::string, std::string>> expected;
  for (const char* from : modes) {
    for (const char* to : modes) {
      if (std::string(from) != to) {
        expected.emplace(from, to);
      }
    }
  }
  EXPECT_EQ(pairs, expected);
  EXPECT_EQ(family->metric.size(), 12u);
}

std::string Get(int port, const char* path, int* status, const char* method = "GET") {
  return test_support::HttpRequest(port, path, status, nullptr, method);
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
  // In words, not civetweb's "Failed to setup server ports".
  EXPECT_NE(std::string(second.status().message()).find("address already in use"),
            std::string::npos)
      << second.status();
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
