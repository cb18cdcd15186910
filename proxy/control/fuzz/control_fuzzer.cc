// Fuzzes the control socket's requests (ControlCommands::Handle) against a stand-in for the
// running sidecar, so that sequences of requests reach the transition rules, persist and the
// drain with state carried from one request to the next.
//
// Input: one byte choosing the stand-in's state (bits 0-1 running mode, 2 a certificate is
// loaded, 3 a configuration file exists, 4 plaintext clients are open, 5 the mode came from
// a flag, 6 reload fails, 7 egress peers with a good preflight), then request lines as the
// control socket frames them ('\n' ends a request, a '\r' before it is dropped, blank lines
// are skipped).
//
// Beyond "no crash, no sanitizer report", a mismatch aborts when:
// - a request is not answered exactly once, or the answer is not one JSON object with a
//   boolean "ok" (and, when false, a non-empty "error" sentence);
// - the mode changes to one that needs a certificate while none is loaded, enters
//   requireTLS past open plaintext clients, or skips or steps down, without "force";
// - an accepted change does not leave the sidecar in the mode it reports as "to";
// - a persisted change leaves the configuration file with another mode.
#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/base/mode.h"
#include "proxy/config/config.h"
#include "proxy/config/config_file_edit.h"
#include "proxy/control/control_commands.h"
#include "proxy/control/mode_transition.h"
#include "proxy/observe/log.h"

namespace {

using namespace sidecar::proxy;  // the fuzzer speaks only of the control plane's types
using Json = nlohmann::json;

void Check(bool condition) {
  if (!condition) {
    std::abort();
  }
}

// StandIn completes every asynchronous call at once, as the worker loops would later.
class StandIn : public ControlTarget {
 public:
  explicit StandIn(uint8_t state) {
    mode_ = kAllModes[state & 3];
    startup_mode_ = mode_;
    certificate_loaded_ = state & 4;
    if (state & 8) {
      config_file_ = "/etc/tls-sidecar/tls-sidecar.toml";
      file_text_ = "# operator's comment\n[net]\nport = 27017\n[net.tls]\nmode = \"" +
                   std::string(ModeName(mode_)) + "\"\ncertificateKeyFile = \"s.pem\"\n";
    }
    if (state & 16) {
      open_plaintext_.push_back({"10.0.0.7", "app\xff\xfe", "pymongo", false, 3});
      open_plaintext_.push_back({"10.0.0.8", "", "", true, 1});
    }
    if (state & 32) {
      mode_source_ = ModeSource::kFlag;
      mode_flag_ = "--sslMode";
    } else if (state & 8) {
      mode_source_ = ModeSource::kFile;
    }
    reload_fails_ = state & 64;
    if (state & 128) {
      egress_peers_ = 2;
    }
  }

  Mode mode() const override { return mode_; }
  Mode startup_mode() const override { return startup_mode_; }
  ModeSource mode_source() const override { return mode_source_; }
  const std::string& mode_flag() const override { return mode_flag_; }
  bool certificate_loaded() const override { return certificate_loaded_; }
  const std::string& config_file() const override { return config_file_; }
  int egress_peer_count() const override { return egress_peers_; }
  absl::StatusOr<Mode> ReadConfiguredMode() override {
    return ReadConfiguredModeFromString(file_text_, config_file_);
  }
  absl::Status PersistMode(Mode mode) override {
    Check(!config_file_.empty());
    absl::StatusOr<std::string> edited = SetModeInTomlText(file_text_, mode);
    if (!edited.ok()) {
      return edited.status();
    }
    file_text_ = *std::move(edited);
    return absl::OkStatus();
  }
  void ApplyMode(Mode from, Mode to) override {
    Check(from == mode_);
    transitions.push_back({from, to});
    mode_ = to;
  }
  void SetModePersisted(bool) override {}
  absl::Status Reload() override {
    return reload_fails_ ? absl::InvalidArgumentError("net.tls.certificateKeyFile: s.pem: gone")
                         : absl::OkStatus();
  }
  StatusFacts Facts() override {
    StatusFacts facts;
    facts.version = "0.1.0";
    facts.active = {3, 4};
    facts.rejected = {{"max_connections", 2}, {"sniff_timeout", 1}};
    facts.certificates.push_back({"server", "CN=db\xc3", "CN=ca", "01", 0, 4102444800, "ab", "s.pem"});
    facts.file_permission_warnings = {"s.pem is readable by others"};
    return facts;
  }
  std::vector<ClientRow> Clients(std::optional<Transport> only) override {
    std::vector<ClientRow> rows(2);
    rows[0].address = "10.0.0.7";
    rows[0].application = "app\xff";
    rows[1].transport = Transport::kTls;
    rows[1].subject = "CN=x";
    std::erase_if(rows, [&](const ClientRow& row) { return only && row.transport != *only; });
    return rows;
  }
  void ListOpenPlaintext(absl::AnyInvocable<void(std::vector<OpenPlaintextClient>)> done) override {
    done(open_plaintext_);
  }
  void DrainPlaintext(uint64_t over_ms, absl::AnyInvocable<void(DrainStarted)> done) override {
    Check(over_ms <= static_cast<uint64_t>(ControlCommands::kMaxDrainSeconds * 1000));
    done(DrainStarted{static_cast<int64_t>(open_plaintext_.size()), 0, 0});
  }
  void Preflight(Mode mode,
                 absl::AnyInvocable<void(absl::StatusOr<std::vector<PeerPreflight>>)> done) override {
    std::vector<PeerPreflight> rows(egress_peers_);
    for (PeerPreflight& row : rows) {
      row = {"db2:27017", true, EgressUsesTls(mode), "ok", "TLSv1.3", ""};
    }
    done(rows);
  }
  void RecordPreflight(bool ok) override { last_preflight_ = PreflightFacts{ok, 0}; }
  std::optional<PreflightFacts> last_preflight() const override { return last_preflight_; }
  std::vector<std::string> topology_warnings() const override {
    if (egress_peers_ == 0) {
      return {};
    }
    return {"the replica set advertises db2:27017, which bypasses the sidecar"};
  }

  const std::vector<OpenPlaintextClient>& open_plaintext() const { return open_plaintext_; }
  const std::string& file_text() const { return file_text_; }

  struct Transition {
    Mode from;
    Mode to;
  };
  std::vector<Transition> transitions;

 private:
  Mode mode_;
  Mode startup_mode_;
  ModeSource mode_source_ = ModeSource::kDefault;
  std::string mode_flag_;
  bool certificate_loaded_;
  std::string config_file_;
  std::string file_text_;
  std::vector<OpenPlaintextClient> open_plaintext_;
  bool reload_fails_;
  int egress_peers_ = 0;
  std::optional<PreflightFacts> last_preflight_;
};

bool AsksForce(std::string_view line) {
  Json request = Json::parse(line, nullptr, false);
  return request.is_object() && request.value("cmd", Json()) == "setMode" &&
         request.value("force", Json()) == true;
}

void CheckAnswer(std::string_view line, const std::string& answer, StandIn& target,
                 size_t transitions_before) {
  Json parsed = Json::parse(answer, nullptr, false);
  Check(parsed.is_object());
  Check(parsed.contains("ok") && parsed["ok"].is_boolean());
  if (parsed["ok"] == false) {
    Check(parsed.contains("error") && parsed["error"].is_string() &&
          !parsed["error"].get_ref<const std::string&>().empty());
  }
  Check(target.transitions.size() <= transitions_before + 1);
  if (target.transitions.size() == transitions_before + 1) {
    Check(parsed["ok"] == true);
    const StandIn::Transition& t = target.transitions.back();
    Check(t.to == Mode::kDisabled || target.certificate_loaded());
    if (!AsksForce(line)) {
      Check(IsOneStepUp(t.from, t.to));
      Check(t.to != Mode::kRequireTls || target.open_plaintext().empty());
    }
  }
  if (parsed["ok"] == true && parsed.contains("to") && parsed["to"].is_string()) {
    Check(parsed["to"] == ModeName(target.mode()));
    if (parsed.value("persisted", false)) {
      absl::StatusOr<Mode> in_file = target.ReadConfiguredMode();
      Check(in_file.ok() && *in_file == target.mode());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {
    SetLogFd(open("/dev/null", O_WRONLY | O_CLOEXEC));
    return true;
  }();
  (void)quiet;
  if (size == 0) {
    return 0;
  }
  StandIn target(data[0]);
  ControlCommands commands(target);
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      continue;
    }
    size_t before = target.transitions.size();
    int answers = 0;
    std::string answer;
    commands.Handle(line, 0, [&](std::string text) {
      ++answers;
      answer = std::move(text);
    });
    Check(answers == 1);
    CheckAnswer(line, answer, target, before);
  }
  return 0;
}
