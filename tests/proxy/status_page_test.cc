// The status page (SPEC §8): what it shows, that no client-controlled string can become
// markup, that it names nothing outside the sidecar, the loopback rule of the endpoint
// that serves it, and the next-mode readiness metric.
#include "proxy/observe/status_page.h"

#include <civetweb.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "proxy/observe/metrics.h"
#include "proxy/observe/metrics_endpoint.h"
#include "proxy/observe/readiness.h"
#include "proxy/observe/status_board.h"
#include "tests/support/http_get.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kEvil[] = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

StatusPageData Sample() {
  StatusPageData d;
  d.version = "0.1.0";
  d.now_unix = 1'700'000'000;
  d.mode = "preferTLS";
  d.next_mode = "requireTLS";
  d.verdict = "not ready";
  d.reasons = {"3 plaintext client connections are open; move them to TLS."};
  d.warnings = {"The server certificate expires in 9 days."};
  d.mix = {{d.now_unix - 60, 1, 5}, {d.now_unix - 30, 3, 4}, {d.now_unix, 6, 2}};
  ClientRow evil;
  evil.address = "10.0.0.7";
  evil.application = kEvil;
  evil.driver = "PyMongo 4.6 <b>";
  evil.active = 2;
  evil.total = 5;
  ClientRow refused;
  refused.address = "10.0.0.8";
  refused.application = "reports";
  refused.state = ClientState::kRefused;
  refused.total = 4;
  d.clients = {evil, refused};
  d.egress_peers = 1;
  d.preflight = PreflightRecord{d.now_unix - 90, "preferTLS", false, {{"mongo-b:27017", false,
                                                                       "certificate verify failed"}}};
  certs::CertificateInfo cert;
  cert.role = "server";
  cert.subject = "CN=<node1>";
  cert.not_after = d.now_unix + 9 * 86400;
  cert.sha1_hex = "ab12";
  d.certificates = {cert};
  d.changes = {{d.now_unix - 600, "allowTLS", "preferTLS", 0, false, "setMode"}};
  return d;
}

TEST(StatusPageTest, ShowsVerdictReasonsClientsPeersCertificatesAndChanges) {
  std::string page = RenderStatusPage(Sample());
  EXPECT_THAT(page, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(page, HasSubstr("<div id=\"verdict\" class=\"verdict not-ready\">not ready</div>"));
  EXPECT_THAT(page, HasSubstr("3 plaintext client connections are open"));
  EXPECT_THAT(page, HasSubstr("expires in 9 days"));
  EXPECT_THAT(page, HasSubstr("<tr class=\"client connected\">"));
  EXPECT_THAT(page, HasSubstr("<tr class=\"client refused\">"));
  EXPECT_THAT(page, HasSubstr("mongo-b:27017"));
  EXPECT_THAT(page, HasSubstr("certificate verify failed"));
  EXPECT_THAT(page, HasSubstr("CN=&lt;node1&gt;"));
  EXPECT_THAT(page, HasSubstr("<td>allowTLS</td><td>preferTLS</td>"));
  EXPECT_THAT(page, HasSubstr("<polyline id=\"mix-tls\""));
  EXPECT_THAT(page, HasSubstr("<polyline id=\"mix-plaintext\""));
  EXPECT_THAT(page, HasSubstr("6 TLS"));
  EXPECT_THAT(page, HasSubstr("http-equiv=\"refresh\""));
}

TEST(StatusPageTest, ClientStringsNeverBecomeMarkup) {
  std::string page = RenderStatusPage(Sample());
  EXPECT_THAT(page, Not(HasSubstr("<script")));
  EXPECT_THAT(page, Not(HasSubstr("<img")));
  EXPECT_THAT(page, Not(HasSubstr("<b>\"")));
  EXPECT_THAT(page, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x "
                              "onerror=alert(2)&gt;"));
  EXPECT_THAT(page, HasSubstr("PyMongo 4.6 &lt;b&gt;"));
  // No attribute of any tag is an event handler.
  EXPECT_FALSE(std::regex_search(page, std::regex("<[^>]*\\son[a-z]+\\s*=", std::regex::icase)));
}

TEST(StatusPageTest, NamesNothingOutsideTheSidecar) {
  std::string page = RenderStatusPage(Sample());
  EXPECT_THAT(page, Not(HasSubstr("http://")));
  EXPECT_THAT(page, Not(HasSubstr("https://")));
  EXPECT_THAT(page, Not(HasSubstr("src=\"")));
  EXPECT_THAT(page, Not(HasSubstr("href=")));
  EXPECT_THAT(page, Not(HasSubstr("url(")));
  EXPECT_LT(page.size(), 16u * 1024) << "a few KiB";
}

TEST(StatusPageTest, EscapesEveryMarkupCharacter) {
  EXPECT_EQ(HtmlEscape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
  EXPECT_EQ(HtmlEscape(""), "");
}

TEST(StatusPageTest, ChartWaitsForTwoSamples) {
  EXPECT_THAT(MixChartSvg({}), HasSubstr("collecting samples"));
  EXPECT_THAT(MixChartSvg({{1, 1, 1}}), Not(HasSubstr("polyline")));
  EXPECT_THAT(RenderStatusPage(std::nullopt), HasSubstr("first sample is not in yet"));
}

TEST(StatusPageTest, LoopbackListeners) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:9442"));
  EXPECT_TRUE(IsLoopbackListen("127.3.4.5:0"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:9442"));
  EXPECT_TRUE(IsLoopbackListen("localhost:9442"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:9442"));
  EXPECT_FALSE(IsLoopbackListen("[::]:9442"));
  EXPECT_FALSE(IsLoopbackListen("10.0.0.5:9442"));
  EXPECT_FALSE(IsLoopbackListen("128.0.0.1:9442"));
}

std::string Get(int port, const char* path, int* status, std::string* headers) {
  return test_support::HttpRequest(port, path, status, headers);
}

TEST(StatusPageEndpointTest, ServedOnLoopbackWithAPolicyThatForbidsScriptsAndFetches) {
  Metrics metrics("test", "BoringSSL");
  Readiness readiness(metrics);
  auto board = std::make_shared<StatusBoard>();
  board->Publish(Sample());
  auto endpoint = MetricsEndpoint::Create("127.0.0.1:0", metrics.registry(), &readiness,
                                          StatusPageOptions{board, false});
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  for (const char* path : {"/", "/status"}) {
    int status = 0;
    std::string headers;
    std::string body = Get((*endpoint)->port(), path, &status, &headers);
    EXPECT_EQ(status, 200) << path << body;
    EXPECT_THAT(headers, HasSubstr("text/html"));
    EXPECT_THAT(headers, HasSubstr("default-src 'none'"));
    EXPECT_THAT(body, HasSubstr("not ready"));
  }
  int status = 0;
  std::string headers;
  // Paths match exactly as sent (SPEC §10), as for /metrics.
  for (const char* path : {"/status/", "/index.html", "/STATUS", "/./", "/status/../status",
                           "/%73tatus", "//"}) {
    Get((*endpoint)->port(), path, &status, &headers);
    EXPECT_EQ(status, 404) << path;
  }
}

TEST(StatusPageEndpointTest, RefusedOnOtherListenersUnlessAskedFor) {
  Metrics metrics("test", "BoringSSL");
  Readiness readiness(metrics);
  auto board = std::make_shared<StatusBoard>();
  board->Publish(Sample());
  auto closed = MetricsEndpoint::Create("0.0.0.0:0", metrics.registry(), &readiness,
                                        StatusPageOptions{board, false});
  ASSERT_TRUE(closed.ok()) << closed.status();
  int status = 0;
  std::string headers;
  std::string body = Get((*closed)->port(), "/", &status, &headers);
  EXPECT_EQ(status, 403);
  EXPECT_THAT(body, HasSubstr("metrics.statusPage"));
  EXPECT_THAT(body, Not(HasSubstr(kEvil)));
  Get((*closed)->port(), "/metrics", &status, &headers);
  EXPECT_EQ(status, 200) << "only the page is withheld";

  auto open = MetricsEndpoint::Create("0.0.0.0:0", metrics.registry(), &readiness,
                                      StatusPageOptions{board, true});
  ASSERT_TRUE(open.ok()) << open.status();
  Get((*open)->port(), "/", &status, &headers);
  EXPECT_EQ(status, 200);
}

TEST(NextModeReadyMetricTest, OneSeriesWhoseLabelsFollowTheVerdict) {
  Metrics metrics("test", "BoringSSL");
  auto series = [&] {
    std::vector<std::tuple<std::string, std::string, double>> out;
    for (const auto& family : metrics.registry()->Collect()) {
      if (family.name != "tls_sidecar_next_mode_ready") {
        continue;
      }
      for (const auto& m : family.metric) {
        std::string next;
        std::string reason;
        for (const auto& label : m.label) {
          (label.name == "next_mode" ? next : reason) = label.value;
        }
        out.emplace_back(next, reason, m.gauge.value);
      }
    }
    return out;
  };
  metrics.SetNextModeReady("requireTLS", "plaintext_clients", false);
  using Row = std::tuple<std::string, std::string, double>;
  EXPECT_EQ(series(), (std::vector<Row>{{"requireTLS", "plaintext_clients", 0}}));
  metrics.SetNextModeReady("requireTLS", "none", true);
  EXPECT_EQ(series(), (std::vector<Row>{{"requireTLS", "none", 1}}));
  metrics.SetNextModeReady("requireTLS", "none", true);
  EXPECT_EQ(series().size(), 1u);
}

}  // namespace
}  // namespace sidecar::proxy
