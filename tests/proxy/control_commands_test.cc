#include "proxy/control/control_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/base/concat.h"
#include "proxy/config/config.h"
#include "proxy/config/config_file_edit.h"
#include "proxy/config/mode_persistence.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// FakeTarget records what the commands did; its asynchronous calls complete when the test
// says so, as the worker loops would.
class FakeTarget : public ControlTarget {
 public:
  Mode mode() const override { return mode_; }
  Mode startup_mode() const override { return startup_mode_; }
  ModeSource mode_source() const override { return mode_source_; }
  const std::string& mode_flag() const override { return mode_flag_; }
  bool certificate_loaded() const override { return certificate_loaded_; }
  const std::string& config_file() const override { return config_file_; }
  int egress_peer_count() const override { return egress_peers_; }
  absl::StatusOr<Mode> ReadConfiguredMode() override {
    return sidecar::proxy::ReadConfiguredMode(config_file_);
  }
  absl::Status PersistMode(Mode mode) override {
    return sidecar::proxy::PersistMode(config_file_, mode);
  }
  void ApplyMode(Mode from, Mode to) override {
    transitions.emplace_back(from, to);
    mode_ = to;
  }
  void SetModePersisted(bool persisted) override { persisted_gauge = persisted; }
  absl::Status Reload() override { return reload_status; }
  StatusFacts Facts() override { return facts; }
  std::vector<ClientRow> Clients(std::optional<Transport> only) override {
    std::vector<ClientRow> rows;
    for (const ClientRow& row : clients) {
      if (!only || row.transport == *only) {
        rows.push_back(row);
      }
    }
    return rows;
  }
  void ListOpenPlaintext(absl::AnyInvocable<void(std::vector<OpenPlaintextClient>)> done) override {
    pending_list = std::move(done);
  }
  void DrainPlaintext(uint64_t over_ms, absl::AnyInvocable<void(DrainStarted)> done) override {
    drain_over_ms = over_ms;
    done(drain_started);
  }
  void Preflight(
      Mode mode,
      absl::AnyInvocable<void(absl::StatusOr<std::vector<PeerPreflight>>)> done) override {
    preflight_modes.push_back(mode);
    done(preflight_rows);
  }
  void RecordPreflight(bool ok) override { last_preflight_ = PreflightFacts{ok, 0}; }
  std::optional<PreflightFacts> last_preflight() const override { return last_preflight_; }
  std::vector<std::string> topology_warnings() const override { return topology; }
  std::vector<std::string> topology;

  Mode mode_ = Mode::kAllowTls;
  Mode startup_mode_ = Mode::kAllowTls;
  ModeSource mode_source_ = ModeSource::kDefault;
  std::string mode_flag_;
  bool certificate_loaded_ = true;
  std::string config_file_;
  std::vector<std::pair<Mode, Mode>> transitions;
  std::optional<bool> persisted_gauge;
  absl::Status reload_status;
  StatusFacts facts;
  std::vector<ClientRow> clients;
  absl::AnyInvocable<void(std::vector<OpenPlaintextClient>)> pending_list;
  uint64_t drain_over_ms = 0;
  DrainStarted drain_started;
  int egress_peers_ = 0;
  absl::StatusOr<std::vector<PeerPreflight>> preflight_rows = std::vector<PeerPreflight>{};
  std::vector<Mode> preflight_modes;
  std::optional<PreflightFacts> last_preflight_;
};

class ControlCommandsTest : public ::testing::Test {
 protected:
  // Ask sends `line` and returns the answer, which must come at once.
  Json Ask(std::string_view line) {
    std::optional<std::string> answer;
    commands_.Handle(line, 1000, [&](std::string text) { answer = std::move(text); });
    EXPECT_TRUE(answer.has_value()) << line;
    if (!answer) {
      return Json();
    }
    Json parsed = Json::parse(*answer, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << *answer;
    EXPECT_TRUE(parsed.contains("ok")) << *answer;
    if (parsed.contains("ok") && parsed["ok"] == false) {
      EXPECT_TRUE(parsed.contains("error") && parsed["error"].is_string()) << *answer;
    }
    return parsed;
  }

  void ExpectRefused(std::string_view line, std::string_view needle) {
    Json answer = Ask(line);
    EXPECT_EQ(answer["ok"], false) << line;
    EXPECT_THAT(answer.value("error", ""), HasSubstr(std::string(needle))) << line;
  }

  FakeTarget target_;
  ControlCommands commands_{target_};
};

TEST_F(ControlCommandsTest, MalformedRequestsGetHelpfulRefusals) {
  ExpectRefused("{\"cmd\":", "not valid JSON");
  ExpectRefused("garbage", "not valid JSON");
  ExpectRefused("", "not valid JSON");
  ExpectRefused("[1,2]", "must be a JSON object");
  ExpectRefused("\"status\"", "must be a JSON object");
  ExpectRefused("{}", "has no \"cmd\"");
  ExpectRefused("{\"cmd\":7}", "\"cmd\" must be a string");
  ExpectRefused("{\"cmd\":\"shutdown\"}", "Unknown command \"shutdown\"");
  ExpectRefused("{\"cmd\":\"status\",\"verbose\":true}", "does not take \"verbose\"");
  ExpectRefused("{\"cmd\":\"setMode\"}", "needs \"mode\"");
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":3}", "must be a string");
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"requireSsl\"}", "valid modes are");
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\",\"force\":\"yes\"}",
                "\"force\" must be true or false");
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\",\"forse\":true}",
                "does not take \"forse\"");
  ExpectRefused("{\"cmd\":\"drainPlaintext\"}", "needs \"overSeconds\"");
  ExpectRefused("{\"cmd\":\"drainPlaintext\",\"overSeconds\":\"10\"}", "needs \"overSeconds\"");
  ExpectRefused("{\"cmd\":\"drainPlaintext\",\"overSeconds\":-1}", "between 0 and");
  ExpectRefused("{\"cmd\":\"drainPlaintext\",\"overSeconds\":1e300}", "between 0 and");
  ExpectRefused("{\"cmd\":\"clients\",\"transport\":\"ssl\"}", "\"tls\" or \"plaintext\"");
  ExpectRefused("{\"setParameter\":1}", "tlsMode (or sslMode)");
  ExpectRefused("{\"setParameter\":1,\"tlsMode\":\"preferTLS\",\"sslMode\":\"preferSSL\"}",
                "not both");
  ExpectRefused("{\"setParameter\":1,\"logLevel\":2}", "does not take \"logLevel\"");
  // Deep nesting and odd bytes are refused like any other bad request.
  ExpectRefused(std::string(10000, '[') + std::string(10000, ']'), "must be a JSON object");
  ExpectRefused(std::string("{\"cmd\":\"st\xff\xfe\"}"), "not valid JSON");
  EXPECT_TRUE(target_.transitions.empty());
}

TEST_F(ControlCommandsTest, OneStepUpChangesTheMode) {
  Json answer = Ask("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\"}");
  EXPECT_EQ(answer["ok"], true);
  EXPECT_EQ(answer["from"], "allowTLS");
  EXPECT_EQ(answer["to"], "preferTLS");
  EXPECT_EQ(answer["forced"], false);
  EXPECT_EQ(answer["persisted"], false);
  EXPECT_EQ(target_.mode_, Mode::kPreferTls);
  ASSERT_EQ(target_.transitions.size(), 1u);
  // Started without a file in allowTLS: the gauge says the running mode is not persisted.
  EXPECT_EQ(target_.persisted_gauge, false);
  EXPECT_THAT(answer["warnings"][0].get<std::string>(), HasSubstr("a restart goes back"));
}

TEST_F(ControlCommandsTest, AskingForTheRunningModeIsUnchanged) {
  Json answer = Ask("{\"cmd\":\"setMode\",\"mode\":\"allowSSL\"}");
  EXPECT_EQ(answer["ok"], true);
  EXPECT_EQ(answer["unchanged"], true);
  EXPECT_EQ(answer["to"], "allowTLS");
  EXPECT_TRUE(target_.transitions.empty());
}

TEST_F(ControlCommandsTest, SkipsAndStepsDownNeedForce) {
  Json refused = Ask("{\"cmd\":\"setMode\",\"mode\":\"disabled\"}");
  EXPECT_EQ(refused["ok"], false);
  EXPECT_THAT(refused["error"].get<std::string>(), HasSubstr("step down"));
  EXPECT_FALSE(refused.contains("plaintextClients"));
  EXPECT_EQ(target_.mode_, Mode::kAllowTls);

  Json forced = Ask("{\"cmd\":\"setMode\",\"mode\":\"disabled\",\"force\":true}");
  EXPECT_EQ(forced["ok"], true);
  EXPECT_EQ(forced["forced"], true);
  EXPECT_EQ(target_.mode_, Mode::kDisabled);
}

TEST_F(ControlCommandsTest, DisabledToAllowNeedsACertificate) {
  target_.mode_ = Mode::kDisabled;
  target_.certificate_loaded_ = false;
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"allowTLS\"}", "no server certificate");
  EXPECT_EQ(target_.mode_, Mode::kDisabled);
  target_.certificate_loaded_ = true;
  EXPECT_EQ(Ask("{\"cmd\":\"setMode\",\"mode\":\"allowTLS\"}")["ok"], true);
}

TEST_F(ControlCommandsTest, RequireTlsGateListsOpenPlaintextClientsAfterAskingTheLoops) {
  target_.mode_ = Mode::kPreferTls;
  std::optional<std::string> answer;
  commands_.Handle("{\"cmd\":\"setMode\",\"mode\":\"requireTLS\"}", 0,
                   [&](std::string text) { answer = std::move(text); });
  EXPECT_FALSE(answer.has_value());  // waits for the loops
  ASSERT_TRUE(target_.pending_list);
  target_.pending_list(
      {{"10.1.2.3", "billing", "PyMongo 4.6", false, 3}, {"10.1.2.4", "", "mongod 7.0", true, 1}});
  ASSERT_TRUE(answer.has_value());
  Json refused = Json::parse(*answer);
  EXPECT_EQ(refused["ok"], false);
  EXPECT_THAT(refused["error"].get<std::string>(), HasSubstr("4 plaintext client connections"));
  ASSERT_EQ(refused["plaintextClients"].size(), 2u);
  EXPECT_EQ(refused["plaintextClients"][0],
            Json::parse(R"({"address":"10.1.2.3","application":"billing","driver":"PyMongo 4.6",
                            "kind":"client","connections":3})"));
  EXPECT_EQ(refused["plaintextClients"][1]["kind"], "member");
  EXPECT_EQ(target_.mode_, Mode::kPreferTls);

  // Once they are gone, the same request goes through.
  answer.reset();
  commands_.Handle("{\"cmd\":\"setMode\",\"mode\":\"requireTLS\"}", 0,
                   [&](std::string text) { answer = std::move(text); });
  target_.pending_list({});
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(Json::parse(*answer)["ok"], true);
  EXPECT_EQ(target_.mode_, Mode::kRequireTls);
}

TEST_F(ControlCommandsTest, ForceLiftsTheGate) {
  target_.mode_ = Mode::kPreferTls;
  std::optional<std::string> answer;
  commands_.Handle("{\"cmd\":\"setMode\",\"mode\":\"requireTLS\",\"force\":true}", 0,
                   [&](std::string text) { answer = std::move(text); });
  target_.pending_list({{"10.1.2.3", "billing", "PyMongo 4.6", false, 1}});
  ASSERT_TRUE(answer.has_value());
  Json forced = Json::parse(*answer);
  EXPECT_EQ(forced["ok"], true);
  EXPECT_EQ(forced["forced"], true);
  EXPECT_THAT(forced["overridden"].get<std::string>(), HasSubstr("gate"));
  EXPECT_EQ(target_.mode_, Mode::kRequireTls);
}

TEST_F(ControlCommandsTest, SetParameterIsSetModeWithoutForce) {
  Json answer = Ask("{\"setParameter\":1,\"sslMode\":\"preferSSL\"}");
  EXPECT_EQ(answer["ok"], true);
  EXPECT_EQ(answer["was"], "allowTLS");
  EXPECT_EQ(answer["to"], "preferTLS");
  EXPECT_EQ(target_.mode_, Mode::kPreferTls);
  ExpectRefused("{\"setParameter\":1,\"tlsMode\":\"disabled\"}", "step down");
  EXPECT_EQ(target_.mode_, Mode::kPreferTls);
}

TEST_F(ControlCommandsTest, PersistWithoutAConfigFileRefusesAndLeavesTheMode) {
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\",\"persist\":true}",
                "started without --config");
  EXPECT_EQ(target_.mode_, Mode::kAllowTls);
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char dir_template[] = "/tmp/control_commands_test.XXXXXX";
    dir_ = mkdtemp(dir_template);
    path_ = dir_ + "/sidecar.toml";
    std::ofstream(path_) << text;
  }
  ~TempFile() {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string Read() const {
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string dir_;
  std::string path_;
};

TEST_F(ControlCommandsTest, PersistRewritesOnlyTheModeAndTheGaugeFollows) {
  const std::string original =
      "# operator's notes\n[net]\nport = 27017\n\n[net.tls]\nmode = \"allowTLS\"  # step 1\n"
      "certificateKeyFile = \"/etc/s.pem\"\n";
  TempFile file(original);
  target_.config_file_ = file.path();

  Json status = Ask("{\"cmd\":\"status\"}");
  EXPECT_EQ(status["configuredMode"], "allowTLS");
  EXPECT_TRUE(status["warnings"].empty()) << status;
  EXPECT_EQ(target_.persisted_gauge, true);

  Json changed = Ask("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\"}");
  EXPECT_EQ(changed["ok"], true);
  EXPECT_EQ(target_.persisted_gauge, false);
  EXPECT_THAT(changed["warnings"][0].get<std::string>(),
              HasSubstr("differs from the configuration file's allowTLS"));
  status = Ask("{\"cmd\":\"status\"}");
  EXPECT_EQ(status["mode"], "preferTLS");
  EXPECT_EQ(status["configuredMode"], "allowTLS");
  ASSERT_EQ(status["warnings"].size(), 1u);
  EXPECT_THAT(status["warnings"][0].get<std::string>(),
              HasSubstr("differs from the configuration"));

  // Persisting the running mode (unchanged) writes it and clears the warning.
  Json persisted = Ask("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\",\"persist\":true}");
  EXPECT_EQ(persisted["ok"], true);
  EXPECT_EQ(persisted["unchanged"], true);
  EXPECT_EQ(persisted["persisted"], true);
  EXPECT_EQ(target_.persisted_gauge, true);
  std::string expected = original;
  expected.replace(expected.find("allowTLS"), 8, "preferTLS");
  EXPECT_EQ(file.Read(), expected);
  status = Ask("{\"cmd\":\"status\"}");
  EXPECT_EQ(status["configuredMode"], "preferTLS");
  EXPECT_TRUE(status["warnings"].empty()) << status;
}

TEST_F(ControlCommandsTest, RefusedChangesPersistNothing) {
  const std::string original = "[net.tls]\nmode = \"allowTLS\"\n";
  TempFile file(original);
  target_.config_file_ = file.path();
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"disabled\",\"persist\":true}", "step down");
  EXPECT_EQ(file.Read(), original);
}

TEST_F(ControlCommandsTest, StatusReportsEveryField) {
  target_.facts.version = "0.1.0";
  target_.facts.uptime_seconds = 42;
  target_.facts.now_unix = 1700000000;
  target_.facts.active = {3, 4};
  target_.facts.accepted = {30, 40};
  target_.facts.rejected = {{"plaintext_in_requireTLS", 2}, {"sniff_timeout", 0}};
  certs::CertificateInfo cert;
  cert.role = "server";
  cert.subject = "CN=node1";
  cert.not_after = 1700000000 + 5 * 86400;  // expires in five days
  cert.sha1_hex = "ab12";
  target_.facts.certificates = {cert};
  Json status = Ask("{\"cmd\":\"status\"}");
  EXPECT_EQ(status["ok"], true);
  EXPECT_EQ(status["mode"], "allowTLS");
  EXPECT_EQ(status["configuredMode"], "allowTLS");
  EXPECT_EQ(status["version"], "0.1.0");
  EXPECT_EQ(status["uptimeSeconds"], 42);
  EXPECT_EQ(status["active"], Json::parse(R"({"tls":3,"plaintext":4})"));
  EXPECT_EQ(status["accepted"], Json::parse(R"({"tls":30,"plaintext":40})"));
  EXPECT_EQ(status["rejected"]["plaintext_in_requireTLS"], 2);
  ASSERT_EQ(status["certificates"].size(), 1u);
  EXPECT_EQ(status["certificates"][0]["role"], "server");
  EXPECT_EQ(status["certificates"][0]["subject"], "CN=node1");
  EXPECT_EQ(status["certificates"][0]["sha1"], "ab12");
  EXPECT_EQ(status["certificates"][0]["notAfter"], "2023-11-19T22:13:20Z");
  ASSERT_EQ(status["warnings"].size(), 1u);
  EXPECT_THAT(status["warnings"][0].get<std::string>(), HasSubstr("CN=node1"));
}

TEST_F(ControlCommandsTest, ReloadAnswersWhyItFailed) {
  EXPECT_EQ(Ask("{\"cmd\":\"reload\"}")["ok"], true);
  target_.reload_status = absl::InvalidArgumentError("/etc/s.pem: key does not match");
  ExpectRefused("{\"cmd\":\"reload\"}", "key does not match");
}

TEST_F(ControlCommandsTest, DrainAnswersHowManyItWillClose) {
  target_.drain_started = {8, 2, 0};
  Json answer = Ask("{\"cmd\":\"drainPlaintext\",\"overSeconds\":2.5}");
  EXPECT_EQ(answer["ok"], true);
  EXPECT_EQ(answer["closing"], 10);
  EXPECT_EQ(answer["members"], 2);
  EXPECT_EQ(target_.drain_over_ms, 2500u);
}

TEST_F(ControlCommandsTest, ClientsListsRowsFilteredByTransport) {
  target_.clients = {
      {"10.0.0.1", "app", "PyMongo 4", false, Transport::kPlaintext, 2, 5, 1700000000000},
      {"10.0.0.2", "", "mongod 7", true, Transport::kTls, 0, 1, 1700000000000,
       "CN=node2,O=Example"}};
  Json all = Ask("{\"cmd\":\"clients\"}");
  ASSERT_EQ(all["clients"].size(), 2u);
  Json plaintext = Ask("{\"cmd\":\"clients\",\"transport\":\"plaintext\"}");
  ASSERT_EQ(plaintext["clients"].size(), 1u);
  EXPECT_EQ(plaintext["clients"][0],
            Json::parse(R"({"address":"10.0.0.1","application":"app","driver":"PyMongo 4",
                            "kind":"client","transport":"plaintext","state":"connected",
                            "active":2,"total":5,"lastSeen":"2023-11-14T22:13:20Z",
                            "subject":"","maxQueuedToClient":0,"maxQueuedToUpstream":0})"));
  Json tls = Ask("{\"cmd\":\"clients\",\"transport\":\"tls\"}");
  EXPECT_EQ(tls["clients"][0]["kind"], "member");
  EXPECT_EQ(tls["clients"][0]["subject"], "CN=node2,O=Example");
}

TEST_F(ControlCommandsTest, ClientsShowRefusedRowsAndQueuedMaxima) {
  ClientRow connected{"10.0.0.1", "app", "PyMongo 4",  false, Transport::kPlaintext,
                      1,          1,     1700000000000};
  connected.max_queued_to_client = 294912;
  connected.max_queued_to_upstream = 32768;
  ClientRow refused{"10.0.0.1", "app", "PyMongo 4",  false, Transport::kPlaintext,
                    0,          3,     1700000001000};
  refused.state = ClientState::kRefused;
  target_.clients = {refused, connected};
  Json plaintext = Ask("{\"cmd\":\"clients\",\"transport\":\"plaintext\"}");
  ASSERT_EQ(plaintext["clients"].size(), 2u);
  // Connected rows first, then the refused ones.
  EXPECT_EQ(plaintext["clients"][0]["state"], "connected");
  EXPECT_EQ(plaintext["clients"][0]["maxQueuedToClient"], 294912);
  EXPECT_EQ(plaintext["clients"][0]["maxQueuedToUpstream"], 32768);
  EXPECT_EQ(plaintext["clients"][1],
            Json::parse(R"({"address":"10.0.0.1","application":"app","driver":"PyMongo 4",
                            "kind":"client","transport":"plaintext","state":"refused",
                            "active":0,"total":3,"lastSeen":"2023-11-14T22:13:21Z",
                            "subject":"","maxQueuedToClient":0,"maxQueuedToUpstream":0})"));
}

TEST_F(ControlCommandsTest, InvalidUtf8FromPeersIsReplacedNotFatal) {
  target_.clients = {{"10.0.0.1", "bad\xff\xfe", "", false, Transport::kPlaintext, 1, 1, 0}};
  Json answer = Ask("{\"cmd\":\"clients\"}");
  EXPECT_EQ(answer["ok"], true);
  EXPECT_THAT(answer["clients"][0]["application"].get<std::string>(), HasSubstr("bad"));
}

PeerPreflight PassedPeer(std::string target) {
  return {std::move(target), true, true, "ok", "TLSv1.3", ""};
}

TEST_F(ControlCommandsTest, PreflightReportsEveryPeerAndPassesOnlyWhenAllDo) {
  ExpectRefused("{\"cmd\":\"preflight\"}", "needs \"mode\"");
  ExpectRefused("{\"cmd\":\"preflight\",\"mode\":\"preferSSL!\"}", "valid modes are");
  target_.egress_peers_ = 2;
  target_.preflight_rows =
      std::vector<PeerPreflight>{PassedPeer("b.example:27017"), PassedPeer("c.example:27017")};
  Json answer = Ask("{\"cmd\":\"preflight\",\"mode\":\"preferSSL\"}");
  EXPECT_EQ(answer["ok"], true) << answer;
  EXPECT_EQ(answer["mode"], "preferTLS");
  EXPECT_EQ(answer["transport"], "tls");
  ASSERT_EQ(answer["peers"].size(), 2u);
  EXPECT_EQ(answer["peers"][0]["target"], "b.example:27017");
  EXPECT_EQ(answer["peers"][0]["handshake"], true);
  EXPECT_EQ(answer["peers"][0]["verification"], "ok");
  EXPECT_EQ(answer["peers"][0]["version"], "TLSv1.3");
  EXPECT_EQ(answer["peers"][0]["error"], "");
  EXPECT_EQ(target_.last_preflight_, (PreflightFacts{true, 0}));

  // One failing peer fails the whole preflight, and says why.
  target_.preflight_rows = std::vector<PeerPreflight>{
      PassedPeer("b.example:27017"),
      {"c.example:27017", true, false, "unable to get local issuer certificate", "",
       "the peer's certificate was not accepted: unable to get local issuer certificate"}};
  answer = Ask("{\"cmd\":\"preflight\",\"mode\":\"requireTLS\"}");
  EXPECT_EQ(answer["ok"], false);
  EXPECT_THAT(answer["error"].get<std::string>(), HasSubstr("verified TLS handshake"));
  EXPECT_EQ(answer["peers"][1]["handshake"], false);
  EXPECT_EQ(answer["peers"][1]["verification"], "unable to get local issuer certificate");
  EXPECT_EQ(target_.last_preflight_, (PreflightFacts{false, 0}));
}

TEST_F(ControlCommandsTest, PlaintextPreflightOnlyConnectsAndIsNotRemembered) {
  target_.egress_peers_ = 1;
  target_.preflight_rows =
      std::vector<PeerPreflight>{{"b.example:27017", false, false, "", "", "connection refused"}};
  Json answer = Ask("{\"cmd\":\"preflight\",\"mode\":\"allowTLS\"}");
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["transport"], "plaintext");
  EXPECT_FALSE(answer["peers"][0].contains("handshake"));
  EXPECT_EQ(answer["peers"][0]["connected"], false);
  EXPECT_FALSE(target_.last_preflight_.has_value());
}

TEST_F(ControlCommandsTest, PreflightWithoutPeersPassesWithAWarning) {
  Json answer = Ask("{\"cmd\":\"preflight\",\"mode\":\"preferTLS\"}");
  EXPECT_EQ(answer["ok"], true);
  EXPECT_TRUE(answer["peers"].empty());
  EXPECT_THAT(answer["warnings"][0].get<std::string>(), HasSubstr("nothing to dial"));
}

TEST_F(ControlCommandsTest, PreflightAlreadyRunningIsRefused) {
  target_.preflight_rows = absl::FailedPreconditionError("a preflight is already running");
  ExpectRefused("{\"cmd\":\"preflight\",\"mode\":\"preferTLS\"}", "already running");
}

TEST_F(ControlCommandsTest, PreferTlsWithPeersNeedsAPassedPreflight) {
  target_.egress_peers_ = 2;
  ExpectRefused("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\"}", "no preflight has run");
  target_.preflight_rows = std::vector<PeerPreflight>{
      PassedPeer("b.example:27017"), {"c.example:27017", false, false, "", "", "refused"}};
  Ask("{\"cmd\":\"preflight\",\"mode\":\"preferTLS\"}");
  ExpectRefused("{\"setParameter\":1,\"sslMode\":\"preferSSL\"}", "the last preflight failed");
  EXPECT_TRUE(target_.transitions.empty());

  target_.preflight_rows =
      std::vector<PeerPreflight>{PassedPeer("b.example:27017"), PassedPeer("c.example:27017")};
  Ask("{\"cmd\":\"preflight\",\"mode\":\"preferTLS\"}");
  Json answer = Ask("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\"}");
  EXPECT_EQ(answer["ok"], true) << answer;
  EXPECT_EQ(answer["forced"], false);
  ASSERT_EQ(target_.transitions.size(), 1u);
}

TEST_F(ControlCommandsTest, ForceSkipsThePreflight) {
  target_.egress_peers_ = 1;
  Json answer = Ask("{\"cmd\":\"setMode\",\"mode\":\"preferTLS\",\"force\":true}");
  EXPECT_EQ(answer["ok"], true) << answer;
  EXPECT_THAT(answer["overridden"].get<std::string>(), HasSubstr("preflight"));
}

// --- force and the server certificate (issue 10 item 4) ------------------------------------

TEST_F(ControlCommandsTest, ForceNeverEntersAModeThatNeedsACertificateWhileNoneIsLoaded) {
  for (Mode from : {Mode::kDisabled, Mode::kAllowTls}) {
    for (const char* to : {"allowTLS", "preferTLS", "requireTLS"}) {
      if (ModeName(from) == to) {
        continue;
      }
      target_.mode_ = from;
      target_.certificate_loaded_ = false;
      const std::string request =
          Concat("{\"cmd\":\"setMode\",\"mode\":\"", to, "\",\"force\":true}");
      // requireTLS asks the loops for their plaintext connections first: none are open.
      std::optional<std::string> text;
      commands_.Handle(request, 1000, [&](std::string t) { text = std::move(t); });
      if (target_.pending_list) {
        std::move(target_.pending_list)({});
        target_.pending_list = nullptr;
      }
      ASSERT_TRUE(text.has_value()) << request;
      Json answer = Json::parse(*text);
      EXPECT_EQ(answer["ok"], false) << request << " from " << ModeName(from);
      const std::string error = answer.value("error", "");
      EXPECT_THAT(error, HasSubstr("no server certificate is loaded")) << request;
      EXPECT_THAT(error, HasSubstr("net.tls.certificateKeyFile")) << request;
      EXPECT_THAT(error, HasSubstr("net.tls.certificateSelector")) << request;
      EXPECT_THAT(error, HasSubstr("`force` does not override this")) << request;
      EXPECT_EQ(target_.mode_, from) << request;
    }
  }
  EXPECT_TRUE(target_.transitions.empty());
  // Going down to disabled needs no certificate, and force still takes it there.
  target_.mode_ = Mode::kAllowTls;
  EXPECT_EQ(Ask("{\"cmd\":\"setMode\",\"mode\":\"disabled\",\"force\":true}")["ok"], true);
}

TEST_F(ControlCommandsTest, StatusWarnsWhenNoClientCanBeServed) {
  target_.mode_ = Mode::kRequireTls;
  target_.startup_mode_ = Mode::kRequireTls;
  target_.certificate_loaded_ = false;
  Json status = Ask("{\"cmd\":\"status\"}");
  ASSERT_EQ(status["warnings"].size(), 1u) << status;
  EXPECT_THAT(status["warnings"][0].get<std::string>(), HasSubstr("No client can be served"));
  EXPECT_THAT(status["warnings"][0].get<std::string>(), HasSubstr("/ready answers 503"));

  target_.mode_ = Mode::kAllowTls;
  target_.startup_mode_ = Mode::kAllowTls;
  status = Ask("{\"cmd\":\"status\"}");
  ASSERT_EQ(status["warnings"].size(), 1u) << status;
  EXPECT_THAT(status["warnings"][0].get<std::string>(),
              HasSubstr("every TLS client fails its handshake"));

  target_.certificate_loaded_ = true;
  EXPECT_TRUE(Ask("{\"cmd\":\"status\"}")["warnings"].empty());
}

// --- where the mode comes from, and what a restart runs (issue 10 item 1) -------------------

// A start-up combination of mode flag and configuration file, as an operator writes it.
struct StartCase {
  std::string name;
  std::vector<std::string> mode_flag;  // e.g. {"--sslMode", "allowSSL"}; empty: none
  std::optional<std::string> file;     // the file's [net.tls] lines; nullopt: no --config
  ModeSource source;                   // what status must report as modeSource
  bool persist_refused;                // persist cannot keep a mode across a restart
  std::string persist_error;           // what the refusal must name
  bool warns_at_start;                 // the file and the flag disagree from the start
};

absl::StatusOr<Config> StartWith(const StartCase& c, const std::string& config_path) {
  std::vector<std::string> args = {"tls-sidecar", "--tlsCertificateKeyFile", "/etc/s.pem"};
  args.insert(args.end(), c.mode_flag.begin(), c.mode_flag.end());
  if (c.file) {
    args.push_back("--config");
    args.push_back(config_path);
  }
  std::vector<const char*> argv;
  for (const std::string& arg : args) {
    argv.push_back(arg.c_str());
  }
  return LoadConfig(static_cast<int>(argv.size()), argv.data());
}

// Every combination of flag and file: status tells what a restart with the same command line
// runs, persist never claims what that restart would undo, and the restart (LoadConfig with
// the same argv, reading the file as persist left it) runs exactly what status said.
TEST(ModeSourceTest, StatusAndPersistTellTheTruthAboutARestartInEveryCombination) {
  // clang-format off
  const std::vector<StartCase> cases = {
      {"flag only", {"--sslMode", "allowSSL"}, std::nullopt, ModeSource::kFlag, true,
       "--sslMode", false},
      {"file only", {}, "[net.tls]\nmode = \"allowTLS\"\n", ModeSource::kFile, false, "", false},
      {"flag and file agreeing", {"--sslMode", "allowSSL"}, "[net.tls]\nmode = \"allowTLS\"\n",
       ModeSource::kFlag, true, "--sslMode", false},
      {"flag and file differing", {"--tlsMode", "allowTLS"},
       "[net.tls]\nmode = \"requireTLS\"\n", ModeSource::kFlag, true, "--tlsMode", true},
      {"old switch and file", {"--sslOnNormalPorts"}, "[net.tls]\nmode = \"allowTLS\"\n",
       ModeSource::kFlag, true, "--sslOnNormalPorts", true},
      {"neither, file without mode", {}, "[net]\nport = 27017\n", ModeSource::kDefault, false, "",
       false},
      {"neither, no file", {}, std::nullopt, ModeSource::kDefault, true, "without --config",
       false},
  };
  // clang-format on
  for (const StartCase& c : cases) {
    SCOPED_TRACE(c.name);
    TempFile file(c.file.value_or(""));
    absl::StatusOr<Config> config = StartWith(c, file.path());
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->mode_source, c.source);

    FakeTarget target;
    target.mode_ = target.startup_mode_ = config->mode;
    target.mode_source_ = config->mode_source;
    target.mode_flag_ = config->mode_flag;
    target.config_file_ = config->config_file;
    ControlCommands commands(target);
    auto ask = [&](const std::string& line) {
      std::optional<std::string> answer;
      commands.Handle(line, 1000, [&](std::string text) { answer = std::move(text); });
      EXPECT_TRUE(answer.has_value()) << line;
      return Json::parse(answer.value_or("{}"));
    };

    // At start.
    Json status = ask("{\"cmd\":\"status\"}");
    EXPECT_EQ(status["modeSource"], ModeSourceName(c.source)) << status;
    EXPECT_EQ(status["configuredMode"], ModeName(config->mode)) << status;
    EXPECT_EQ(target.persisted_gauge, true) << status;
    EXPECT_EQ(!status["warnings"].empty(), c.warns_at_start) << status;
    if (c.source == ModeSource::kFlag) {
      EXPECT_EQ(status["modeFlag"], c.mode_flag[0]) << status;
    }
    if (c.warns_at_start) {
      EXPECT_THAT(status["warnings"][0].get<std::string>(), HasSubstr(c.mode_flag[0]));
      EXPECT_THAT(status["warnings"][0].get<std::string>(), HasSubstr("overrides the file"));
    }

    // The next mode, persisted: refused when a restart would undo it, the mode untouched.
    const Mode running = config->mode;
    const Mode next = running == Mode::kRequireTls
                          ? Mode::kPreferTls
                          : static_cast<Mode>(static_cast<int>(running) + 1);
    const std::string before = file.Read();
    Json persisted = ask(Concat("{\"cmd\":\"setMode\",\"mode\":\"", ModeName(next),
                                "\",\"force\":true,\"persist\":true}"));
    if (c.persist_refused) {
      EXPECT_EQ(persisted["ok"], false) << persisted;
      EXPECT_THAT(persisted.value("error", ""), HasSubstr(c.persist_error)) << persisted;
      EXPECT_EQ(target.mode_, running);
      EXPECT_EQ(file.Read(), before);
      // Changing the mode without persist works, and status says a restart goes back.
      Json changed =
          ask(Concat("{\"cmd\":\"setMode\",\"mode\":\"", ModeName(next), "\",\"force\":true}"));
      EXPECT_EQ(changed["ok"], true) << changed;
      ASSERT_FALSE(changed["warnings"].empty()) << changed;
      EXPECT_EQ(target.persisted_gauge, false);
    } else {
      EXPECT_EQ(persisted["ok"], true) << persisted;
      EXPECT_EQ(persisted["persisted"], true) << persisted;
      EXPECT_FALSE(persisted.contains("warnings")) << persisted;
      EXPECT_EQ(target.persisted_gauge, true);
    }
    EXPECT_EQ(target.mode_, next);
    status = ask("{\"cmd\":\"status\"}");
    EXPECT_EQ(!status["warnings"].empty(), c.persist_refused) << status;
    EXPECT_EQ(target.persisted_gauge, !c.persist_refused) << status;

    // The restart, with the same command line and the file as it is now.
    absl::StatusOr<Config> restarted = StartWith(c, file.path());
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    EXPECT_EQ(status["configuredMode"], ModeName(restarted->mode)) << status;
    EXPECT_EQ(restarted->mode == next, !c.persist_refused) << status;
  }
}

TEST(ModeSourceTest, PersistRefusalNamesTheFlagAndWhatToChange) {
  StartupMode startup{Mode::kAllowTls, ModeSource::kFlag, "--sslMode", "/etc/tls-sidecar.toml"};
  std::optional<std::string> refusal = PersistRefusal(startup, Mode::kRequireTls);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_THAT(*refusal, HasSubstr("--sslMode sets the mode (allowTLS)"));
  EXPECT_THAT(*refusal, HasSubstr("overrides the configuration file /etc/tls-sidecar.toml"));
  EXPECT_THAT(*refusal, HasSubstr("remove --sslMode from the command line"));
  EXPECT_THAT(*refusal, HasSubstr("mode = \"requireTLS\" in /etc/tls-sidecar.toml"));
  EXPECT_THAT(*refusal, HasSubstr("change the flag to --sslMode requireTLS"));

  startup.source = ModeSource::kFile;
  startup.flag.clear();
  EXPECT_FALSE(PersistRefusal(startup, Mode::kRequireTls).has_value());
  startup.config_file.clear();
  EXPECT_THAT(PersistRefusal(startup, Mode::kRequireTls).value_or(""),
              HasSubstr("without --config"));
}

TEST(ModeSourceTest, AFlagThatAgreesWithTheFileStillWinsWhenTheFileChanges) {
  StartupMode startup{Mode::kAllowTls, ModeSource::kFlag, "--sslMode", "/etc/s.toml"};
  // Someone edited the file to requireTLS: the restart still runs allowTLS, and says so.
  RestartOutlook outlook = PredictRestart(startup, Mode::kRequireTls, Mode::kRequireTls);
  ASSERT_TRUE(outlook.restart_mode.ok());
  EXPECT_EQ(*outlook.restart_mode, Mode::kAllowTls);
  EXPECT_FALSE(outlook.persisted);
  ASSERT_EQ(outlook.warnings.size(), 2u);
  EXPECT_THAT(outlook.warnings[0], HasSubstr("overrides the file at every start"));
  EXPECT_THAT(outlook.warnings[1], HasSubstr("goes back to allowTLS"));
  EXPECT_THAT(outlook.warnings[1], HasSubstr("--sslMode requireTLS"));

  // A file that cannot be read makes the restart's mode unknown, and not persisted.
  outlook = PredictRestart(startup, Mode::kAllowTls,
                           absl::InvalidArgumentError("/etc/s.toml: cannot open"));
  EXPECT_FALSE(outlook.restart_mode.ok());
  EXPECT_FALSE(outlook.persisted);
  ASSERT_EQ(outlook.warnings.size(), 1u);
  EXPECT_THAT(outlook.warnings[0], HasSubstr("cannot open"));
}


// --- readiness: the same decision as setMode --------------------------------------------

// AskAsync sends `line`, completes a pending request for the open plaintext connections
// with `open` (as the worker loops would), and returns the answer.
Json AskAsync(ControlCommands& commands, FakeTarget& target, std::string_view line,
              const std::vector<OpenPlaintextClient>& open) {
  std::optional<std::string> answer;
  commands.Handle(line, 1000, [&](std::string text) { answer = std::move(text); });
  if (target.pending_list) {
    auto list = std::move(target.pending_list);
    target.pending_list = nullptr;
    list(open);
  }
  EXPECT_TRUE(answer.has_value()) << line;
  return answer ? Json::parse(*answer, nullptr, false) : Json();
}

struct GateCase {
  Mode from;
  Mode to;
  bool certificate;
  bool plaintext_open;
  int peers;
  std::optional<PreflightFacts> preflight;
};

std::string Describe(const GateCase& c) {
  return Concat(ModeName(c.from), "->", ModeName(c.to), " cert=", c.certificate,
                " plaintext=", c.plaintext_open, " peers=", c.peers, " preflight=",
                c.preflight ? (c.preflight->ok ? "ok" : "failed") : "none");
}

// Every combination of the facts the gates read: whenever readiness says ready, setMode
// without force succeeds, and whenever setMode refuses, readiness says not ready with the
// same codes and each of its reasons is a sentence of setMode's error.
TEST(ReadinessCommandTest, AgreesWithSetModeInEveryGateCase) {
  const std::vector<OpenPlaintextClient> open = {{"10.0.0.7", "billing", "PyMongo 4.6", false, 3}};
  const std::optional<PreflightFacts> preflights[] = {
      std::nullopt, PreflightFacts{true, 5}, PreflightFacts{false, 5},
      PreflightFacts{true, kPreflightMaxAgeSeconds + 1}};
  int ready_cases = 0;
  int refused_cases = 0;
  for (Mode from : kAllModes) {
    for (Mode to : kAllModes) {
      for (bool certificate : {true, false}) {
        for (bool plaintext_open : {false, true}) {
          for (int peers : {0, 2}) {
            for (const auto& preflight : preflights) {
              GateCase c{from, to, certificate, plaintext_open, peers, preflight};
              auto configure = [&](FakeTarget& t) {
                t.mode_ = c.from;
                t.certificate_loaded_ = c.certificate;
                t.egress_peers_ = c.peers;
                t.last_preflight_ = c.preflight;
              };
              const auto& listed = c.plaintext_open ? open : std::vector<OpenPlaintextClient>{};
              std::string mode = std::string(ModeName(c.to));

              FakeTarget readiness_target;
              configure(readiness_target);
              ControlCommands readiness_commands(readiness_target);
              Json readiness = AskAsync(readiness_commands, readiness_target,
                                        Concat("{\"cmd\":\"readiness\",\"mode\":\"", mode, "\"}"),
                                        listed);
              ASSERT_EQ(readiness["ok"], true) << Describe(c) << readiness;
              EXPECT_EQ(readiness_target.mode_, c.from) << "readiness never changes the mode";

              FakeTarget set_target;
              configure(set_target);
              ControlCommands set_commands(set_target);
              Json set = AskAsync(set_commands, set_target,
                                  Concat("{\"cmd\":\"setMode\",\"mode\":\"", mode, "\"}"), listed);

              ASSERT_EQ(readiness["ready"].get<bool>(), set["ok"].get<bool>())
                  << Describe(c) << "\nreadiness: " << readiness << "\nsetMode: " << set;
              if (set["ok"] == true) {
                ++ready_cases;
                EXPECT_TRUE(readiness["reasons"].empty()) << Describe(c);
                continue;
              }
              ++refused_cases;
              EXPECT_EQ(readiness["verdict"], "not ready") << Describe(c);
              EXPECT_EQ(readiness["reasonCodes"], set["reasonCodes"]) << Describe(c);
              for (const Json& reason : readiness["reasons"]) {
                EXPECT_THAT(set["error"].get<std::string>(),
                            HasSubstr(reason.get<std::string>()))
                    << Describe(c);
              }
              EXPECT_EQ(readiness.contains("plaintextClients"), set.contains("plaintextClients"))
                  << Describe(c);
            }
          }
        }
      }
    }
  }
  // The table covers both sides of every gate, not only one.
  EXPECT_GT(ready_cases, 50);
  EXPECT_GT(refused_cases, 50);
}

TEST(ReadinessCommandTest, WithoutAModeAsksAboutTheNextStep) {
  FakeTarget target;
  target.mode_ = Mode::kPreferTls;
  ControlCommands commands(target);
  Json answer = AskAsync(commands, target, "{\"cmd\":\"readiness\"}",
                         {{"10.0.0.7", "billing", "PyMongo 4.6", false, 3}});
  EXPECT_EQ(answer["mode"], "preferTLS");
  EXPECT_EQ(answer["nextMode"], "requireTLS");
  EXPECT_EQ(answer["ready"], false);
  EXPECT_EQ(answer["reasonCodes"], Json::array({"plaintext_clients"}));
  EXPECT_EQ(answer["plaintextClients"][0]["application"], "billing");
  EXPECT_EQ(answer["plaintextClients"][0]["connections"], 3);

  target.mode_ = Mode::kRequireTls;
  Json last = AskAsync(commands, target, "{\"cmd\":\"readiness\"}", {});
  EXPECT_EQ(last["ready"], true);
  EXPECT_EQ(last["nextMode"], "requireTLS");
  EXPECT_THAT(last.value("note", ""), HasSubstr("last step"));
}

TEST(ReadinessCommandTest, AdvisoryChecksWarnWithoutRefusing) {
  FakeTarget target;
  target.mode_ = Mode::kAllowTls;
  target.egress_peers_ = 1;
  target.last_preflight_ = PreflightFacts{true, 10};
  target.topology = {"The replica set advertises 10.0.0.5:27018, which bypasses the sidecar."};
  target.facts.now_unix = 1'700'000'000;
  certs::CertificateInfo soon;
  soon.role = "server";
  soon.subject = "CN=node1";
  soon.not_after = target.facts.now_unix + 9 * 86400;
  target.facts.certificates = {soon};
  ClientRow connected;
  connected.address = "10.0.0.7";
  connected.application = "billing";
  connected.driver = "PyMongo 4.6";
  connected.active = 3;
  ClientRow refused = connected;
  refused.application = "reports";
  refused.state = ClientState::kRefused;
  refused.active = 0;
  refused.total = 4;
  target.clients = {connected, refused};
  ControlCommands commands(target);

  Json answer = AskAsync(commands, target, "{\"cmd\":\"readiness\"}", {});
  EXPECT_EQ(answer["ready"], true) << answer;
  EXPECT_EQ(answer["verdict"], "ready with warnings");
  EXPECT_EQ(answer["nextMode"], "preferTLS");
  EXPECT_EQ(answer["warningCodes"],
            Json::array({"certificate_expiry", "topology", "plaintext_connected",
                         "plaintext_refused"}))
      << answer;
  std::string all = answer["warnings"].dump();
  EXPECT_THAT(all, HasSubstr("3 plaintext connections from application billing (10.0.0.7, "
                             "PyMongo 4.6)"));
  EXPECT_THAT(all, HasSubstr("drainPlaintext"));
  EXPECT_THAT(all, HasSubstr("reports"));
  EXPECT_THAT(all, HasSubstr("bypasses the sidecar"));

  // No preflight since start: advisory for a step that keeps egress TLS as it is.
  target.mode_ = Mode::kPreferTls;
  target.last_preflight_ = std::nullopt;
  target.clients.clear();
  Json prefer = AskAsync(commands, target, "{\"cmd\":\"readiness\"}", {});
  EXPECT_EQ(prefer["ready"], true) << prefer;
  EXPECT_THAT(prefer["warnings"].dump(), HasSubstr("No preflight since start"));
  EXPECT_THAT(prefer["warnings"].dump(), HasSubstr("tls-sidecar ctl preflight requireTLS"));
}

TEST(ReadinessCommandTest, BadRequestsAreRefused) {
  FakeTarget target;
  ControlCommands commands(target);
  Json wrong = AskAsync(commands, target, "{\"cmd\":\"readiness\",\"mode\":\"requireSsl\"}", {});
  EXPECT_EQ(wrong["ok"], false);
  EXPECT_THAT(wrong["error"].get<std::string>(), HasSubstr("valid modes are"));
  Json extra = AskAsync(commands, target, "{\"cmd\":\"readiness\",\"force\":true}", {});
  EXPECT_EQ(extra["ok"], false);
  EXPECT_THAT(extra["error"].get<std::string>(), HasSubstr("does not take \"force\""));
}

// Mode changes and preflights are remembered for the status page.
TEST(ReadinessCommandTest, MemoryKeepsModeChangesAndTheLastPreflight) {
  FakeTarget target;
  target.mode_ = Mode::kAllowTls;
  PeerPreflight peer;
  peer.target = "mongo-b:27017";
  peer.connected = true;
  peer.handshake = true;
  peer.verification = "ok";
  peer.version = "TLSv1.3";
  target.preflight_rows = std::vector<PeerPreflight>{peer};
  ControlCommands commands(target);
  AskAsync(commands, target, "{\"cmd\":\"preflight\",\"mode\":\"preferTLS\"}", {});
  AskAsync(commands, target, "{\"cmd\":\"setMode\",\"mode\":\"preferTLS\"}", {});
  AskAsync(commands, target, "{\"cmd\":\"setMode\",\"mode\":\"allowTLS\",\"force\":true}", {});
  const ControlMemory& memory = commands.memory();
  ASSERT_EQ(memory.changes.size(), 2u);
  EXPECT_EQ(memory.changes[0].from, "allowTLS");
  EXPECT_EQ(memory.changes[0].to, "preferTLS");
  EXPECT_FALSE(memory.changes[0].forced);
  EXPECT_EQ(memory.changes[0].uid, 1000);
  EXPECT_TRUE(memory.changes[1].forced);
  ASSERT_TRUE(memory.preflight.has_value());
  EXPECT_TRUE(memory.preflight->ok);
  ASSERT_EQ(memory.preflight->peers.size(), 1u);
  EXPECT_EQ(memory.preflight->peers[0].detail, "TLSv1.3, verified");
}

}  // namespace
}  // namespace sidecar::proxy
