// The refused-clients metric: tls_sidecar_plaintext_client_refusals_total{application,driver}
// is bounded exactly as the plaintext clients' family (SPEC §7).
#include "proxy/observe/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace sidecar::proxy {
namespace {

// Series of `name` by (application, driver), with every label of each series checked.
std::map<std::pair<std::string, std::string>, double> Refusals(const Metrics& metrics) {
  std::map<std::pair<std::string, std::string>, double> series;
  bool found = false;
  for (const auto& family : metrics.registry()->Collect()) {
    if (family.name != "tls_sidecar_plaintext_client_refusals_total") {
      continue;
    }
    found = true;
    EXPECT_EQ(family.type, prometheus::MetricType::Counter);
    for (const auto& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) {
        labels[label.name] = label.value;
      }
      EXPECT_EQ(labels.size(), 2u) << "only application and driver";
      series[{labels["application"], labels["driver"]}] += metric.counter.value;
    }
  }
  EXPECT_TRUE(found) << "the family is registered";
  return series;
}

TEST(MetricsTest, RefusedPlaintextClientsAreCountedByApplicationAndDriver) {
  Metrics metrics("test", "BoringSSL");
  metrics.PlaintextClientRefused("billing", "PyMongo 4.6");
  metrics.PlaintextClientRefused("billing", "PyMongo 4.6");
  metrics.PlaintextClientRefused("", "");
  auto series = Refusals(metrics);
  EXPECT_EQ(series.size(), 2u);
  EXPECT_EQ((series[{"billing", "PyMongo 4.6"}]), 2);
  EXPECT_EQ((series[{"", ""}]), 1);
  // Refusals are not admitted connections.
  EXPECT_EQ(metrics.PlaintextClientLabelSets(), 0u);
}

TEST(MetricsTest, FloodOfRefusedApplicationNamesFoldsIntoOther) {
  Metrics metrics("test", "BoringSSL");
  for (int i = 0; i < 10000; ++i) {
    metrics.PlaintextClientRefused(absl::StrCat("app-", i), "driver 1.0");
  }
  EXPECT_EQ(metrics.PlaintextClientRefusalLabelSets(), Metrics::kMaxClientLabelSets);
  auto series = Refusals(metrics);
  EXPECT_EQ(series.size(), Metrics::kMaxClientLabelSets);
  // The first 255 keep their names; the rest are folded, never dropped.
  EXPECT_EQ((series[{"app-0", "driver 1.0"}]), 1);
  EXPECT_EQ((series[{"app-254", "driver 1.0"}]), 1);
  EXPECT_EQ(series.count({"app-255", "driver 1.0"}), 0u);
  EXPECT_EQ((series[{"other", "other"}]), 10000 - 255);
  // A name seen before the cap keeps counting under its own name.
  metrics.PlaintextClientRefused("app-3", "driver 1.0");
  EXPECT_EQ((Refusals(metrics)[{"app-3", "driver 1.0"}]), 2);
}

TEST(MetricsTest, RefusalsAndConnectionsHaveSeparateCaps) {
  Metrics metrics("test", "BoringSSL");
  for (int i = 0; i < 300; ++i) {
    metrics.PlaintextClient(absl::StrCat("connected-", i), "d", false);
  }
  metrics.PlaintextClientRefused("refused-after-the-switch", "d");
  EXPECT_EQ((Refusals(metrics)[{"refused-after-the-switch", "d"}]), 1);
}

}  // namespace
}  // namespace sidecar::proxy
