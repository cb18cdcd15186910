// `tls-sidecar ctl` speaks the CLI's words, the JSON answers the protocol's (issue 10 item 6):
// every refusal and warning the control plane can produce, run through CliWording.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "proxy/config/mode_persistence.h"
#include "proxy/control/control_commands.h"
#include "proxy/control/ctl_main.h"
#include "proxy/control/mode_transition.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Every refusal DecideTransition can give, and the sentences of persist and status.
std::vector<std::string> EverySentence() {
  std::vector<std::string> sentences;
  const std::vector<OpenPlaintextClient> open = {
      {"10.0.0.7", "inventory", "PyMongo 4.6", false, 1}};
  for (Mode from : kAllModes) {
    for (Mode to : kAllModes) {
      for (bool force : {false, true}) {
        for (bool certificate : {false, true}) {
          for (bool plaintext : {false, true}) {
            for (std::optional<PreflightFacts> last :
                 {std::optional<PreflightFacts>(), std::optional<PreflightFacts>({false, 1})}) {
              TransitionRequest request{from, to, force, certificate,
                                        plaintext ? open : std::vector<OpenPlaintextClient>{}};
              request.egress_peers = 2;
              request.last_preflight = last;
              TransitionDecision decision = DecideTransition(request);
              if (!decision.error.empty()) {
                sentences.push_back(decision.error);
              }
            }
          }
        }
      }
    }
  }
  for (ModeSource source : {ModeSource::kDefault, ModeSource::kFile, ModeSource::kFlag}) {
    for (const char* file : {"", "/etc/s.toml"}) {
      StartupMode startup{Mode::kAllowTls, source, source == ModeSource::kFlag ? "--sslMode" : "",
                          file};
      if (auto refusal = PersistRefusal(startup, Mode::kRequireTls)) {
        sentences.push_back(*refusal);
      }
      RestartOutlook outlook = PredictRestart(startup, Mode::kPreferTls, Mode::kRequireTls);
      for (bool certificate : {false, true}) {
        for (Mode running : kAllModes) {
          for (std::string& warning : StatusWarnings(running, certificate, outlook, {})) {
            sentences.push_back(std::move(warning));
          }
        }
      }
    }
  }
  return sentences;
}

TEST(CliWordingTest, ProtocolSentencesUseTheProtocolsWords) {
  std::vector<std::string> sentences = EverySentence();
  ASSERT_GT(sentences.size(), 50u);
  for (const std::string& sentence : sentences) {
    EXPECT_THAT(sentence, Not(HasSubstr("--force"))) << sentence;
    EXPECT_THAT(sentence, Not(HasSubstr("--persist"))) << sentence;
    EXPECT_THAT(sentence, Not(HasSubstr("drain-plaintext"))) << sentence;
  }
}

TEST(CliWordingTest, CtlSentencesUseTheCommandLinesWords) {
  // What is left of a protocol word once the CLI's own spellings are taken out.
  const std::regex protocol_word(
      R"(\bforce\b|\bpersist\b|drainPlaintext|plaintextClients|`peers`)");
  bool saw_force = false;
  bool saw_persist = false;
  bool saw_drain = false;
  for (const std::string& sentence : EverySentence()) {
    std::string cli = CliWording(sentence);
    saw_force = saw_force || cli.find("`--force`") != std::string::npos;
    saw_persist = saw_persist || cli.find("`--persist`") != std::string::npos;
    saw_drain = saw_drain || cli.find("drain-plaintext SECONDS") != std::string::npos;
    std::string rest = std::regex_replace(cli, std::regex("--force|--persist|Cannot persist"), "");
    EXPECT_FALSE(std::regex_search(rest, protocol_word)) << cli;
  }
  EXPECT_TRUE(saw_force && saw_persist && saw_drain);
}

TEST(CliWordingTest, RewritesExactlyTheMarkedWords) {
  EXPECT_EQ(CliWording("Move them to TLS, close them with `drainPlaintext`, or set `force`."),
            "Move them to TLS, close them with `tls-sidecar ctl drain-plaintext SECONDS`, or add "
            "`--force`.");
  EXPECT_EQ(CliWording("2 connections are open (see `plaintextClients`); set the mode without "
                       "`persist`."),
            "2 connections are open (listed below); set the mode without `--persist`.");
  // Unmarked text, even the same letters, stays as it is.
  EXPECT_EQ(CliWording("force overrode the gate; cannot persist"),
            "force overrode the gate; cannot persist");
}

}  // namespace
}  // namespace sidecar::proxy
