// AssessReadiness on its own: the verdict's words, the next step, the metric's reason, and
// advisory checks that stay readable with many clients.
#include "proxy/control/readiness_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

ReadinessFacts Facts(Mode from, Mode to) {
  ReadinessFacts facts;
  facts.transition.from = from;
  facts.transition.to = to;
  facts.transition.certificate_loaded = true;
  facts.now_unix = 1'700'000'000;
  return facts;
}

TEST(ReadinessCheckTest, NextStepOfTheUpgrade) {
  EXPECT_EQ(NextMode(Mode::kDisabled), Mode::kAllowTls);
  EXPECT_EQ(NextMode(Mode::kAllowTls), Mode::kPreferTls);
  EXPECT_EQ(NextMode(Mode::kPreferTls), Mode::kRequireTls);
  EXPECT_EQ(NextMode(Mode::kRequireTls), std::nullopt);
}

TEST(ReadinessCheckTest, VerdictWords) {
  ReadinessReport ready = AssessReadiness(Facts(Mode::kAllowTls, Mode::kPreferTls));
  EXPECT_TRUE(ready.ready);
  EXPECT_EQ(ready.Verdict(), "ready");
  EXPECT_EQ(MetricReason(ready), "none");

  ReadinessFacts expiring = Facts(Mode::kAllowTls, Mode::kPreferTls);
  certs::CertificateInfo cert;
  cert.role = "server";
  cert.subject = "CN=node1";
  cert.not_after = expiring.now_unix + 3 * 86400;
  expiring.certificates = {cert};
  ReadinessReport warned = AssessReadiness(expiring);
  EXPECT_TRUE(warned.ready);
  EXPECT_EQ(warned.Verdict(), "ready with warnings");
  ASSERT_EQ(warned.warnings.size(), 1u);
  EXPECT_EQ(warned.warnings[0].code, "certificate_expiry");

  ReadinessFacts skip = Facts(Mode::kAllowTls, Mode::kRequireTls);
  skip.transition.open_plaintext = {{"10.0.0.7", "billing", "PyMongo 4.6", false, 2}};
  ReadinessReport refused = AssessReadiness(skip);
  EXPECT_FALSE(refused.ready);
  EXPECT_EQ(refused.Verdict(), "not ready");
  ASSERT_EQ(refused.reasons.size(), 2u);
  EXPECT_EQ(refused.reasons[0].code, "not_one_step");
  EXPECT_EQ(refused.reasons[1].code, "plaintext_clients");
  EXPECT_EQ(MetricReason(refused), "not_one_step");
  EXPECT_EQ(refused.plaintext_clients.size(), 1u);
}

TEST(ReadinessCheckTest, ForceInTheRequestChangesNothing) {
  ReadinessFacts facts = Facts(Mode::kPreferTls, Mode::kRequireTls);
  facts.transition.force = true;
  facts.transition.open_plaintext = {{"10.0.0.7", "billing", "PyMongo 4.6", false, 2}};
  EXPECT_FALSE(AssessReadiness(facts).ready);
}

TEST(ReadinessCheckTest, ManyClientGroupsAreSummarised) {
  ReadinessFacts facts = Facts(Mode::kAllowTls, Mode::kPreferTls);
  for (int i = 0; i < 40; ++i) {
    ClientRow row;
    row.address = "10.0.0." + std::to_string(i);
    row.application = "app" + std::to_string(i);
    row.active = i + 1;
    facts.clients.push_back(row);
  }
  ReadinessReport report = AssessReadiness(facts);
  ASSERT_EQ(report.warnings.size(), 6u);
  // Busiest first.
  EXPECT_THAT(report.warnings[0].sentence, HasSubstr("40 plaintext connections from application "
                                                     "app39"));
  EXPECT_THAT(report.warnings[5].sentence, HasSubstr("35 more client groups"));
}

TEST(ReadinessCheckTest, ClosedPlaintextRowsAndTlsRowsAreNotWarnedAbout) {
  ReadinessFacts facts = Facts(Mode::kAllowTls, Mode::kPreferTls);
  ClientRow gone;
  gone.application = "gone";
  gone.active = 0;
  gone.total = 9;
  ClientRow tls;
  tls.application = "tls";
  tls.transport = Transport::kTls;
  tls.active = 3;
  facts.clients = {gone, tls};
  EXPECT_TRUE(AssessReadiness(facts).warnings.empty());
}

TEST(ReadinessCheckTest, TheLastStepIsReady) {
  ReadinessReport report = AssessReadiness(Facts(Mode::kRequireTls, Mode::kRequireTls));
  EXPECT_TRUE(report.ready);
  EXPECT_THAT(report.note, HasSubstr("last step"));
}

}  // namespace
}  // namespace sidecar::proxy
