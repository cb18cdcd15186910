// The facts behind a mode change, gathered once for setMode and for readiness, so that
// both decide on the same TransitionRequest (SPEC §6), and the `readiness` answer.
//
// Control loop only: `done` runs on that loop, before the call returns or later (when the
// worker loops are asked for their open plaintext connections).
#ifndef SIDECAR_PROXY_CONTROL_READINESS_COMMAND_H_
#define SIDECAR_PROXY_CONTROL_READINESS_COMMAND_H_

#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "proxy/base/mode.h"
#include "proxy/control/control_commands.h"
#include "proxy/control/control_json.h"
#include "proxy/control/readiness_check.h"

namespace sidecar::proxy {

// GatherTransitionFacts fills the TransitionRequest for target.mode() -> `to`: the
// certificate, the egress peers and the last preflight, and, when `to` is requireTLS and
// the sidecar is not there yet, the open plaintext client connections of every loop.
void GatherTransitionFacts(ControlTarget& target, Mode to, bool force,
                           absl::AnyInvocable<void(TransitionRequest)> done);

// GatherReadiness assesses target.mode() -> `to` (nullopt: the next step; at requireTLS,
// requireTLS itself) with every advisory fact the target knows.
void GatherReadiness(ControlTarget& target, std::optional<Mode> to,
                     absl::AnyInvocable<void(ReadinessReport)> done);

// ReadinessJson is the `readiness` answer: ok, mode, nextMode, ready, verdict, reasons and
// warnings (sentences), their codes, plaintextClients when the gate stands in the way.
ControlJson ReadinessJson(const ReadinessReport& report);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_READINESS_COMMAND_H_
