#include "proxy/control/mode_transition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

constexpr Mode kD = Mode::kDisabled;
constexpr Mode kA = Mode::kAllowTls;
constexpr Mode kP = Mode::kPreferTls;
constexpr Mode kR = Mode::kRequireTls;

const std::vector<OpenPlaintextClient> kOneClient = {
    {"10.0.0.7", "inventory", "PyMongo 4.6.1", false, 2}};

struct Case {
  Mode from;
  Mode to;
  bool force;
  bool certificate;
  bool plaintext_open;
  TransitionVerdict verdict;
  uint32_t obstacles;
};

std::string Describe(const Case& c) {
  return std::string(ModeName(c.from)) + "->" + std::string(ModeName(c.to)) +
         (c.force ? " force" : "") + (c.certificate ? " cert" : " nocert") +
         (c.plaintext_open ? " plaintext-open" : "");
}

TEST(ModeTransitionTest, FollowsTheRulesOfSpecSection6) {
  using V = TransitionVerdict;
  const std::vector<Case> cases = {
      // Asking for the running mode: unchanged, whatever else holds.
      {kD, kD, false, false, false, V::kUnchanged, 0},
      {kA, kA, false, true, true, V::kUnchanged, 0},
      {kR, kR, false, true, true, V::kUnchanged, 0},
      {kR, kR, true, true, true, V::kUnchanged, 0},
      // One step up.
      {kD, kA, false, true, false, V::kAllowed, 0},
      {kA, kP, false, true, true, V::kAllowed, 0},
      {kP, kR, false, true, false, V::kAllowed, 0},
      // disabled -> allowTLS needs a certificate, force or not: without one every TLS client
      // would fail, and force must never leave a sidecar that serves no client.
      {kD, kA, false, false, false, V::kRefused, kNoCertificate},
      {kD, kA, true, false, false, V::kRefused, kNoCertificate},
      {kA, kP, true, false, false, V::kRefused, kNoCertificate},
      {kP, kR, true, false, false, V::kRefused, kNoCertificate},
      {kA, kR, true, false, true, V::kRefused, kNotOneStepUp | kNoCertificate | kPlaintextClients},
      // Skips need force.
      {kD, kP, false, true, false, V::kRefused, kNotOneStepUp},
      {kA, kR, false, true, false, V::kRefused, kNotOneStepUp},
      {kD, kR, false, true, false, V::kRefused, kNotOneStepUp},
      {kA, kR, true, true, false, V::kAllowed, kNotOneStepUp},
      // Steps down need force.
      {kA, kD, false, true, false, V::kRefused, kNotOneStepUp},
      {kR, kP, false, true, false, V::kRefused, kNotOneStepUp},
      {kR, kD, false, true, false, V::kRefused, kNotOneStepUp},
      {kP, kA, true, true, true, V::kAllowed, kNotOneStepUp},
      {kR, kD, true, true, false, V::kAllowed, kNotOneStepUp},
      // Going down to disabled needs no certificate.
      {kA, kD, true, false, false, V::kAllowed, kNotOneStepUp},
      // The requireTLS gate.
      {kP, kR, false, true, true, V::kRefused, kPlaintextClients},
      {kP, kR, true, true, true, V::kAllowed, kPlaintextClients},
      // Everything at once: one force lifts it all, except a missing certificate.
      {kD, kR, false, false, true, V::kRefused, kNotOneStepUp | kNoCertificate | kPlaintextClients},
      {kD, kR, true, false, true, V::kRefused, kNotOneStepUp | kNoCertificate | kPlaintextClients},
      {kD, kR, true, true, true, V::kAllowed, kNotOneStepUp | kPlaintextClients},
      // Plaintext clients matter only when entering requireTLS.
      {kD, kA, false, true, true, V::kAllowed, 0},
  };
  for (const Case& c : cases) {
    TransitionRequest request{c.from, c.to, c.force, c.certificate,
                              c.plaintext_open ? kOneClient : std::vector<OpenPlaintextClient>{}};
    TransitionDecision decision = DecideTransition(request);
    EXPECT_EQ(decision.verdict, c.verdict) << Describe(c);
    EXPECT_EQ(decision.obstacles, c.obstacles) << Describe(c);
    if (decision.verdict == TransitionVerdict::kRefused) {
      EXPECT_FALSE(decision.error.empty()) << Describe(c);
      EXPECT_TRUE(decision.overridden.empty()) << Describe(c);
    } else {
      EXPECT_TRUE(decision.error.empty()) << Describe(c);
      EXPECT_EQ(decision.overridden.empty(), c.obstacles == 0) << Describe(c);
    }
  }
}

TEST(ModeTransitionTest, GateRefusalListsThePlaintextClients) {
  TransitionDecision decision = DecideTransition({kP, kR, false, true, kOneClient});
  ASSERT_TRUE(decision.refused_by_gate());
  EXPECT_EQ(decision.plaintext_clients, kOneClient);
  EXPECT_THAT(decision.error, HasSubstr("2 plaintext client connections are open"));
  EXPECT_THAT(decision.error, HasSubstr("drainPlaintext"));
  EXPECT_THAT(decision.error, HasSubstr("force"));
}

TEST(ModeTransitionTest, RefusalsSayWhatIsSkippedAndHowToProceed) {
  EXPECT_THAT(DecideTransition({kA, kR, false, true, {}}).error,
              HasSubstr("allowTLS -> requireTLS skips preferTLS"));
  EXPECT_THAT(DecideTransition({kD, kR, false, true, {}}).error,
              HasSubstr("skips allowTLS and preferTLS"));
  EXPECT_THAT(DecideTransition({kR, kP, false, true, {}}).error, HasSubstr("step down"));
  EXPECT_THAT(DecideTransition({kD, kA, false, false, {}}).error,
              HasSubstr("no server certificate is loaded"));
}

TEST(ModeTransitionTest, ForceIsRefusedWithoutACertificateAndNamesIt) {
  TransitionDecision decision = DecideTransition({kD, kR, true, false, kOneClient});
  EXPECT_EQ(decision.verdict, TransitionVerdict::kRefused);
  EXPECT_THAT(decision.error, HasSubstr("even with `force`"));
  EXPECT_THAT(decision.error, HasSubstr("net.tls.certificateKeyFile"));
  EXPECT_THAT(decision.error, HasSubstr("net.tls.certificateSelector"));
  EXPECT_THAT(decision.error, HasSubstr("no client at all could be served"));
  EXPECT_TRUE(decision.overridden.empty());
}

TEST(ModeTransitionTest, ForceNamesWhatItOverrode) {
  TransitionDecision decision = DecideTransition({kA, kR, true, true, kOneClient});
  EXPECT_EQ(decision.verdict, TransitionVerdict::kAllowed);
  EXPECT_THAT(decision.overridden, HasSubstr("one-step rule"));
  EXPECT_THAT(decision.overridden, HasSubstr("plaintext-client gate"));
}

TEST(ModeTransitionTest, OneStepUpFollowsTheUpgradeOrder) {
  EXPECT_TRUE(IsOneStepUp(kD, kA));
  EXPECT_TRUE(IsOneStepUp(kA, kP));
  EXPECT_TRUE(IsOneStepUp(kP, kR));
  EXPECT_FALSE(IsOneStepUp(kR, kD));
  EXPECT_FALSE(IsOneStepUp(kA, kA));
  EXPECT_FALSE(IsOneStepUp(kP, kA));
}

}  // namespace
}  // namespace sidecar::proxy

namespace sidecar::proxy {
namespace {

// The request for `from` -> `to` with a certificate, no plaintext clients, and `peers` egress
// peers whose last TLS preflight is `last`.
TransitionRequest WithPeers(Mode from, Mode to, int peers, std::optional<PreflightFacts> last,
                            bool force = false) {
  TransitionRequest request{from, to, force, true, {}};
  request.egress_peers = peers;
  request.last_preflight = last;
  return request;
}

TEST(ModeTransitionTest, TurningEgressTlsOnNeedsARecentPassedPreflight) {
  const PreflightFacts passed{true, 30};
  const PreflightFacts failed{false, 30};
  const PreflightFacts stale{true, kPreflightMaxAgeSeconds + 1};
  const PreflightFacts edge{true, kPreflightMaxAgeSeconds};

  EXPECT_EQ(DecideTransition(WithPeers(kA, kP, 2, passed)).verdict, TransitionVerdict::kAllowed);
  EXPECT_EQ(DecideTransition(WithPeers(kA, kP, 2, edge)).verdict, TransitionVerdict::kAllowed);
  for (const auto& [last, needle] :
       std::vector<std::pair<std::optional<PreflightFacts>, std::string>>{
           {std::nullopt, "no preflight has run"},
           {failed, "the last preflight failed"},
           {stale, "older than 10 minutes"}}) {
    TransitionDecision decision = DecideTransition(WithPeers(kA, kP, 2, last));
    EXPECT_EQ(decision.verdict, TransitionVerdict::kRefused) << needle;
    EXPECT_EQ(decision.obstacles, kNoPreflight) << needle;
    EXPECT_THAT(decision.error, HasSubstr(needle));
    EXPECT_THAT(decision.error, HasSubstr("tls-sidecar ctl preflight preferTLS"));
    EXPECT_THAT(decision.error, HasSubstr("2 egress peers"));
  }
  // Force lifts it, and says so.
  TransitionDecision forced = DecideTransition(WithPeers(kA, kP, 1, failed, /*force=*/true));
  EXPECT_EQ(forced.verdict, TransitionVerdict::kAllowed);
  EXPECT_THAT(forced.overridden, HasSubstr("preflight"));
  // A forced skip into requireTLS turns egress TLS on too: the preflight is among the
  // obstacles it names.
  TransitionDecision skip = DecideTransition(WithPeers(kA, kR, 1, std::nullopt));
  EXPECT_EQ(skip.obstacles, kNotOneStepUp | kNoPreflight);
}

TEST(ModeTransitionTest, PreflightMattersOnlyWhenEgressTlsTurnsOnWithPeers) {
  // No peers configured: nothing to check.
  EXPECT_EQ(DecideTransition(WithPeers(kA, kP, 0, std::nullopt)).verdict,
            TransitionVerdict::kAllowed);
  // preferTLS -> requireTLS keeps egress on TLS.
  EXPECT_EQ(DecideTransition(WithPeers(kP, kR, 3, std::nullopt)).verdict,
            TransitionVerdict::kAllowed);
  // Going up to allowTLS keeps egress plaintext.
  EXPECT_EQ(DecideTransition(WithPeers(kD, kA, 3, std::nullopt)).verdict,
            TransitionVerdict::kAllowed);
  // Rollbacks are about force, not preflight.
  EXPECT_EQ(DecideTransition(WithPeers(kR, kA, 3, std::nullopt)).obstacles, kNotOneStepUp);
}

}  // namespace
}  // namespace sidecar::proxy
