#include "proxy/control/control_commands.h"

// JSON_NOEXCEPTION is set for every user of nlohmann::json in the project (see
// proxy/CMakeLists.txt); on top of that every access below checks the type first and parses
// with allow_exceptions=false, so no exception can be raised here.
#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "absl/strings/str_join.h"
#include "proxy/base/concat.h"
#include "proxy/control/control_json.h"
#include "proxy/control/control_requests.h"
#include "proxy/control/readiness_command.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

namespace {

using Json = ControlJson;
using Reply = absl::AnyInvocable<void(std::string)>;

std::string Dump(const Json& answer) { return DumpAnswer(answer); }

Json Refusal(std::string_view sentence) { return RefusalJson(sentence); }

void Refuse(Reply& reply, std::string_view sentence) { reply(Dump(Refusal(sentence))); }

Json Counts(const TransportCounts& counts) {
  return Json{{"tls", counts.tls}, {"plaintext", counts.plaintext}};
}

// UnknownFields returns a sentence naming fields of `request` outside `allowed`, or "".
std::string UnknownFields(const Json& request, std::string_view command,
                          std::initializer_list<std::string_view> allowed) {
  std::vector<std::string> unknown;
  for (auto it = request.begin(); it != request.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      unknown.push_back(Concat("\"", it.key(), "\""));
    }
  }
  if (unknown.empty()) {
    return "";
  }
  std::vector<std::string> valid;
  for (std::string_view field : allowed) {
    valid.push_back(Concat("\"", field, "\""));
  }
  return Concat(command, " does not take ", absl::StrJoin(unknown, ", "), "; its fields are ",
                absl::StrJoin(valid, ", "), ".");
}

// OptionalBool reads `field` when present: it must be true or false.
absl::StatusOr<bool> OptionalBool(const Json& request, std::string_view command,
                                  const char* field) {
  auto it = request.find(field);
  if (it == request.end()) {
    return false;
  }
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(Concat(command, ": \"", field, "\" must be true or false."));
  }
  return it->get<bool>();
}

absl::StatusOr<Mode> RequiredMode(const Json& request, std::string_view command,
                                  const char* field) {
  auto it = request.find(field);
  if (it == request.end()) {
    return absl::InvalidArgumentError(Concat(
        command, " needs \"", field, "\": one of disabled, allowTLS, preferTLS, requireTLS."));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        Concat(command, ": \"", field,
               "\" must be a string: one of disabled, allowTLS, preferTLS, requireTLS."));
  }
  auto mode = ParseMode(it->get_ref<const std::string&>());
  if (!mode.ok()) {
    return absl::InvalidArgumentError(Concat(command, ": ", mode.status().message(), "."));
  }
  return *mode;
}

StartupMode Startup(const ControlTarget& target) {
  return StartupMode{target.startup_mode(), target.mode_source(), target.mode_flag(),
                     target.config_file()};
}

// FileMode rereads the configuration file's mode; nullopt without a configuration file.
std::optional<absl::StatusOr<Mode>> FileMode(ControlTarget& target) {
  if (target.config_file().empty()) {
    return std::nullopt;
  }
  return target.ReadConfiguredMode();
}

// RefreshPersisted says what a restart would run now (the file as it is now, the flags the
// sidecar was started with) and sets tls_sidecar_mode_persisted from it.
RestartOutlook RefreshPersisted(ControlTarget& target,
                                const std::optional<absl::StatusOr<Mode>>& file_mode) {
  RestartOutlook outlook = PredictRestart(
      Startup(target), target.mode(), file_mode.value_or(absl::StatusOr<Mode>(Mode::kDisabled)));
  target.SetModePersisted(outlook.persisted);
  return outlook;
}

// A setMode or setParameter request, parsed.
struct SetModeRequest {
  std::string_view command;  // "setMode" or "setParameter"
  Mode to = Mode::kDisabled;
  bool force = false;
  bool persist = false;
};

void Remember(ControlMemory& memory, ModeChangeRecord change) {
  memory.changes.push_back(std::move(change));
  while (memory.changes.size() > ControlMemory::kMaxChanges) {
    memory.changes.pop_front();
  }
}

void LogRefusal(Mode from, Mode to, uid_t uid, std::string_view error) {
  Log(Severity::kInfo, Component::kControl, "mode change refused",
      {{"from", ModeName(from)},
       {"to", ModeName(to)},
       {"uid", static_cast<int64_t>(uid)},
       {"error", std::string(error)}});
}

// RefusalAnswer is the answer to a change refused by `decision` (a gate or the transition
// table): the sentence, both modes, a code per obstacle and, for a gate, who holds it open.
Json RefusalAnswer(const TransitionDecision& decision, Mode from, Mode to) {
  Json answer = Refusal(decision.error);
  answer["from"] = ModeName(from);
  answer["to"] = ModeName(to);
  Json codes = Json::array();
  for (const TransitionReason& reason : decision.reasons) {
    codes.push_back(ObstacleCode(reason.obstacle));
  }
  answer["reasonCodes"] = std::move(codes);
  if (decision.refused_by_gate()) {
    answer["plaintextClients"] = PlaintextClientsJson(decision.plaintext_clients);
  }
  return answer;
}

// Persist writes the requested mode to the configuration file. It returns the answer to send
// instead of changing the mode when the write must not happen or failed, else nullopt.
std::optional<Json> Persist(ControlTarget& target, const SetModeRequest& request, Mode from,
                            uid_t uid) {
  // Never claim a persist that the next start would undo (a mode flag wins over the file).
  if (std::optional<std::string> refusal = PersistRefusal(Startup(target), request.to)) {
    LogRefusal(from, request.to, uid, *refusal);
    Json answer = Refusal(*refusal);
    answer["from"] = ModeName(from);
    answer["to"] = ModeName(request.to);
    return answer;
  }
  if (absl::Status status = target.PersistMode(request.to); !status.ok()) {
    Log(Severity::kWarning, Component::kControl, "persisting the mode failed",
        {{"to", ModeName(request.to)}, {"error", std::string(status.message())}});
    return Refusal(Concat("Could not write the mode to the configuration file (", status.message(),
                          "); the mode was not changed."));
  }
  return std::nullopt;
}

// ApplyChange switches the running mode, logs and remembers the change, and adds "forced"
// (and what was overridden) to `answer`.
void ApplyChange(ControlTarget& target, ControlMemory& memory, const SetModeRequest& request,
                 uid_t uid, Mode from, const TransitionDecision& decision, bool persisted,
                 Json& answer) {
  target.ApplyMode(from, request.to);
  bool forced = !decision.overridden.empty();
  Log(Severity::kInfo, Component::kControl, "mode changed",
      {{"from", ModeName(from)},
       {"to", ModeName(request.to)},
       {"forced", forced},
       {"uid", static_cast<int64_t>(uid)},
       {"persisted", persisted},
       {"overridden", decision.overridden}});
  Remember(memory, {NowUnix(), std::string(ModeName(from)), std::string(ModeName(request.to)),
                    static_cast<int64_t>(uid), forced, std::string(request.command)});
  answer["forced"] = forced;
  if (forced) {
    answer["overridden"] = decision.overridden;
  }
}

void FinishSetMode(ControlTarget& target, ControlMemory& memory, const SetModeRequest& request,
                   uid_t uid, const TransitionRequest& facts, Reply reply) {
  const Mode from = facts.from;
  TransitionDecision decision = DecideTransition(facts);
  if (decision.verdict == TransitionVerdict::kRefused) {
    LogRefusal(from, request.to, uid, decision.error);
    reply(Dump(RefusalAnswer(decision, from, request.to)));
    return;
  }
  if (request.persist) {
    if (std::optional<Json> refusal = Persist(target, request, from, uid)) {
      reply(Dump(*refusal));
      return;
    }
  }

  Json answer = Json::object();
  answer["ok"] = true;
  answer["from"] = ModeName(from);
  answer["to"] = ModeName(request.to);
  if (request.command == "setParameter") {
    answer["was"] = ModeName(from);
  }
  if (decision.verdict == TransitionVerdict::kUnchanged) {
    answer["unchanged"] = true;
  } else {
    ApplyChange(target, memory, request, uid, from, decision, request.persist, answer);
  }
  answer["persisted"] = request.persist;
  RestartOutlook outlook = RefreshPersisted(target, FileMode(target));
  if (!outlook.warnings.empty()) {
    answer["warnings"] = outlook.warnings;
  }
  reply(Dump(answer));
}

void SetMode(ControlTarget& target, ControlMemory& memory, SetModeRequest request, uid_t uid,
             Reply reply) {
  GatherTransitionFacts(
      target, request.to, request.force,
      [&target, &memory, request, uid, reply = std::move(reply)](TransitionRequest facts) mutable {
        FinishSetMode(target, memory, request, uid, facts, std::move(reply));
      });
}

void Readiness(ControlTarget& target, const Json& request, Reply reply) {
  std::optional<Mode> to;
  if (request.contains("mode")) {
    auto mode = RequiredMode(request, "readiness", "mode");
    if (!mode.ok()) {
      Refuse(reply, std::string(mode.status().message()));
      return;
    }
    to = *mode;
  }
  GatherReadiness(target, to, [reply = std::move(reply)](ReadinessReport report) mutable {
    reply(Dump(ReadinessJson(report)));
  });
}

void Status(ControlTarget& target, Reply reply) {
  StatusFacts facts = target.Facts();
  std::optional<absl::StatusOr<Mode>> file_mode = FileMode(target);
  RestartOutlook outlook = RefreshPersisted(target, file_mode);
  Json answer = Json::object();
  answer["ok"] = true;
  answer["mode"] = ModeName(target.mode());
  // configuredMode is what a restart with the same command line would run: the flag's mode
  // when a flag set it, else the file's as it is now.
  if (outlook.restart_mode.ok()) {
    answer["configuredMode"] = ModeName(*outlook.restart_mode);
  } else {
    answer["configuredMode"] = nullptr;
  }
  answer["modeSource"] = ModeSourceName(target.mode_source());
  if (target.mode_source() == ModeSource::kFlag) {
    answer["modeFlag"] = target.mode_flag();
  }
  answer["configFile"] = target.config_file();
  if (file_mode.has_value() && file_mode->ok()) {
    answer["fileMode"] = ModeName(**file_mode);
  } else {
    answer["fileMode"] = nullptr;
  }
  answer["version"] = facts.version;
  answer["uptimeSeconds"] = facts.uptime_seconds;
  answer["active"] = Counts(facts.active);
  answer["accepted"] = Counts(facts.accepted);
  Json rejected = Json::object();
  for (const auto& [reason, count] : facts.rejected) {
    rejected[reason] = count;
  }
  answer["rejected"] = rejected;
  answer["certificates"] = CertificatesJson(facts.certificates);
  answer["ocsp"] = OcspJson(facts.ocsp);
  answer["warnings"] = StatusWarnings(target.mode(), target.certificate_loaded(), outlook, facts);
  reply(Dump(answer));
}

void Reload(ControlTarget& target, uid_t uid, Reply reply) {
  Log(Severity::kInfo, Component::kControl, "reload requested",
      {{"uid", static_cast<int64_t>(uid)}});
  if (absl::Status status = target.Reload(); !status.ok()) {
    Refuse(
        reply,
        Concat("Reload failed, so the previous certificates stay in use: ", status.message(), "."));
    return;
  }
  Json answer = Json::object();
  answer["ok"] = true;
  answer["certificates"] = CertificatesJson(target.Facts().certificates);
  reply(Dump(answer));
}

constexpr char kCommands[] =
    "status, setMode, reload, drainPlaintext, preflight, clients, readiness (or mongod's "
    "{\"setParameter\":1,\"tlsMode\":...})";

// ParseRequest reads one request line; the error's message is the sentence to answer with.
absl::StatusOr<Json> ParseRequest(std::string_view line) {
  Json request = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    return absl::InvalidArgumentError(
        "The request is not valid JSON; send one JSON object per line, e.g. "
        "{\"cmd\":\"status\"}.");
  }
  if (!request.is_object()) {
    return absl::InvalidArgumentError(
        "The request must be a JSON object, e.g. {\"cmd\":\"status\"}.");
  }
  return request;
}

// CommandName reads "cmd"; the error's message is the sentence to answer with.
absl::StatusOr<std::string> CommandName(const Json& request) {
  auto cmd_it = request.find("cmd");
  if (cmd_it == request.end()) {
    return absl::InvalidArgumentError(
        Concat("The request has no \"cmd\"; commands are ", kCommands, "."));
  }
  if (!cmd_it->is_string()) {
    return absl::InvalidArgumentError(
        Concat("\"cmd\" must be a string; commands are ", kCommands, "."));
  }
  return cmd_it->get<std::string>();
}

// OnlyFields answers with a refusal and returns false when `request` has a field outside
// `allowed`; `reply` is left untouched when it returns true.
bool OnlyFields(const Json& request, std::string_view cmd,
                std::initializer_list<std::string_view> allowed, Reply& reply) {
  if (std::string unknown = UnknownFields(request, cmd, allowed); !unknown.empty()) {
    Refuse(reply, unknown);
    return false;
  }
  return true;
}

// SetParameter serves mongod's {"setParameter":1,"tlsMode":...} (or sslMode) as a setMode
// without force or persist.
void SetParameter(ControlTarget& target, ControlMemory& memory, const Json& request, uid_t uid,
                  Reply reply) {
  if (std::string unknown =
          UnknownFields(request, "setParameter", {"setParameter", "tlsMode", "sslMode"});
      !unknown.empty()) {
    Refuse(reply, Concat(unknown, " Only tlsMode (or sslMode) can be set here."));
    return;
  }
  bool tls_mode = request.contains("tlsMode");
  bool ssl_mode = request.contains("sslMode");
  if (tls_mode == ssl_mode) {
    Refuse(reply, tls_mode ? "setParameter: give tlsMode or sslMode, not both."
                           : "setParameter: give the mode as tlsMode (or sslMode), e.g. "
                             "{\"setParameter\":1,\"tlsMode\":\"preferTLS\"}.");
    return;
  }
  auto mode = RequiredMode(request, "setParameter", tls_mode ? "tlsMode" : "sslMode");
  if (!mode.ok()) {
    Refuse(reply, std::string(mode.status().message()));
    return;
  }
  SetMode(target, memory, SetModeRequest{"setParameter", *mode, false, false}, uid,
          std::move(reply));
}

void SetModeCommand(ControlTarget& target, ControlMemory& memory, const Json& request, uid_t uid,
                    Reply reply) {
  auto mode = RequiredMode(request, "setMode", "mode");
  auto force = OptionalBool(request, "setMode", "force");
  auto persist = OptionalBool(request, "setMode", "persist");
  for (const absl::Status& status : {mode.status(), force.status(), persist.status()}) {
    if (!status.ok()) {
      Refuse(reply, std::string(status.message()));
      return;
    }
  }
  SetMode(target, memory, SetModeRequest{"setMode", *mode, *force, *persist}, uid,
          std::move(reply));
}

// Dispatch runs command `cmd` once its fields are known to be the command's own.
void Dispatch(ControlTarget& target, ControlMemory& memory, const std::string& cmd,
              const Json& request, uid_t uid, Reply reply) {
  if (cmd == "status") {
    if (OnlyFields(request, cmd, {"cmd"}, reply)) {
      Status(target, std::move(reply));
    }
  } else if (cmd == "setMode") {
    if (OnlyFields(request, cmd, {"cmd", "mode", "force", "persist"}, reply)) {
      SetModeCommand(target, memory, request, uid, std::move(reply));
    }
  } else if (cmd == "reload") {
    if (OnlyFields(request, cmd, {"cmd"}, reply)) {
      Reload(target, uid, std::move(reply));
    }
  } else if (cmd == "drainPlaintext") {
    if (OnlyFields(request, cmd, {"cmd", "overSeconds"}, reply)) {
      DrainRequest(target, request, uid, std::move(reply));
    }
  } else if (cmd == "clients") {
    if (OnlyFields(request, cmd, {"cmd", "transport"}, reply)) {
      ClientsRequest(target, request, std::move(reply));
    }
  } else if (cmd == "preflight") {
    if (!OnlyFields(request, cmd, {"cmd", "mode"}, reply)) {
      return;
    }
    auto mode = RequiredMode(request, cmd, "mode");
    if (!mode.ok()) {
      Refuse(reply, std::string(mode.status().message()));
      return;
    }
    PreflightRequest(target, memory, *mode, uid, std::move(reply));
  } else if (cmd == "readiness") {
    if (OnlyFields(request, cmd, {"cmd", "mode"}, reply)) {
      Readiness(target, request, std::move(reply));
    }
  } else {
    Refuse(reply, Concat("Unknown command \"", cmd, "\"; commands are ", kCommands, "."));
  }
}

}  // namespace

std::string ControlCommands::ErrorAnswer(std::string_view sentence) {
  return Dump(Refusal(sentence));
}

void ControlCommands::Handle(std::string_view line, uid_t peer_uid, Reply reply) {
  absl::StatusOr<Json> request = ParseRequest(line);
  if (!request.ok()) {
    reply(ErrorAnswer(std::string(request.status().message())));
    return;
  }
  if (request->contains("setParameter")) {
    SetParameter(target_, memory_, *request, peer_uid, std::move(reply));
    return;
  }
  absl::StatusOr<std::string> cmd = CommandName(*request);
  if (!cmd.ok()) {
    reply(ErrorAnswer(std::string(cmd.status().message())));
    return;
  }
  Dispatch(target_, memory_, *cmd, *request, peer_uid, std::move(reply));
}

std::vector<std::string> StatusWarnings(Mode running, bool certificate_loaded,
                                        const RestartOutlook& outlook, const StatusFacts& facts) {
  std::vector<std::string> warnings;
  if (!CanServeAnyClient(running, certificate_loaded)) {
    warnings.push_back(Concat(
        "No client can be served: ", ModeName(running),
        " refuses plaintext and no server certificate is loaded, so every TLS handshake fails "
        "(/ready answers 503). Configure net.tls.certificateKeyFile (or "
        "net.tls.certificateSelector) and restart, or set a mode that accepts plaintext with "
        "`force`."));
  } else if (IngressAcceptsTls(running) && !certificate_loaded) {
    warnings.push_back(Concat(ModeName(running),
                              " accepts TLS but no server certificate is loaded, so every TLS "
                              "client fails its handshake. Configure net.tls.certificateKeyFile "
                              "(or net.tls.certificateSelector) and restart."));
  }
  warnings.insert(warnings.end(), outlook.warnings.begin(), outlook.warnings.end());
  warnings.insert(warnings.end(), facts.file_permission_warnings.begin(),
                  facts.file_permission_warnings.end());
  for (std::string& warning :
       certs::ExpiryWarnings(facts.certificates, kCertificateExpiryWarningDays, facts.now_unix)) {
    warnings.push_back(std::move(warning));
  }
  if (facts.ocsp.status == "revoked") {
    warnings.push_back(
        "The OCSP responder says the server certificate is revoked, and that is what is "
        "stapled: clients that check will refuse it. Replace the certificate and reload.");
  } else if (facts.ocsp.enabled && facts.ocsp.must_staple && facts.ocsp.status == "none") {
    warnings.push_back(
        Concat("The server certificate demands OCSP stapling (must-staple) but no response is "
               "stapled, so clients that honour must-staple refuse it: ",
               facts.ocsp.last_error.empty() ? "no response yet" : facts.ocsp.last_error, "."));
  }
  return warnings;
}

}  // namespace sidecar::proxy
