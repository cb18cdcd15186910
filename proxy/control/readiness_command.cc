#include "proxy/control/readiness_command.h"

#include <utility>
#include <vector>

namespace sidecar::proxy {

void GatherTransitionFacts(ControlTarget& target, Mode to, bool force,
                           absl::AnyInvocable<void(TransitionRequest)> done) {
  auto finish = [&target, to, force, done = std::move(done)](
                    std::vector<OpenPlaintextClient> open) mutable {
    // The running mode is read when the answers are in: it is the one the change starts from.
    done(TransitionRequest{target.mode(), to, force, target.certificate_loaded(),
                           std::move(open), target.egress_peer_count(),
                           target.last_preflight()});
  };
  if (to == Mode::kRequireTls && target.mode() != Mode::kRequireTls) {
    // The gate needs the open plaintext connections of every loop: ask them, answer later.
    target.ListOpenPlaintext(std::move(finish));
    return;
  }
  finish({});
}

void GatherReadiness(ControlTarget& target, std::optional<Mode> to,
                     absl::AnyInvocable<void(ReadinessReport)> done) {
  Mode wanted = to.value_or(NextMode(target.mode()).value_or(target.mode()));
  GatherTransitionFacts(
      target, wanted, /*force=*/false,
      [&target, done = std::move(done)](TransitionRequest request) mutable {
        StatusFacts status = target.Facts();
        ReadinessFacts facts;
        facts.transition = std::move(request);
        facts.certificates = std::move(status.certificates);
        facts.now_unix = status.now_unix;
        facts.topology_warnings = target.topology_warnings();
        facts.clients = target.Clients(Transport::kPlaintext);
        done(AssessReadiness(facts));
      });
}

namespace {

ControlJson Items(const std::vector<ReadinessItem>& items, bool codes) {
  ControlJson out = ControlJson::array();
  for (const ReadinessItem& item : items) {
    out.push_back(codes ? item.code : item.sentence);
  }
  return out;
}

}  // namespace

ControlJson ReadinessJson(const ReadinessReport& report) {
  ControlJson answer = ControlJson::object();
  answer["ok"] = true;
  answer["mode"] = ModeName(report.from);
  answer["nextMode"] = ModeName(report.to);
  answer["ready"] = report.ready;
  answer["verdict"] = report.Verdict();
  answer["reasons"] = Items(report.reasons, false);
  answer["reasonCodes"] = Items(report.reasons, true);
  answer["warnings"] = Items(report.warnings, false);
  answer["warningCodes"] = Items(report.warnings, true);
  if (!report.note.empty()) {
    answer["note"] = report.note;
  }
  if (!report.plaintext_clients.empty()) {
    answer["plaintextClients"] = PlaintextClientsJson(report.plaintext_clients);
  }
  return answer;
}

}  // namespace sidecar::proxy
