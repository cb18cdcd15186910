// The control requests that reach past the control loop, split from control_commands.cc
// (which parses requests and dispatches): drainPlaintext (the worker loops), clients (the
// client table) and preflight (the peers). Each answers through `reply` exactly once, on
// the control loop, as ControlCommands::Handle promises.
#ifndef SIDECAR_PROXY_CONTROL_CONTROL_REQUESTS_H_
#define SIDECAR_PROXY_CONTROL_CONTROL_REQUESTS_H_

#include <sys/types.h>

#include <string>

#include "absl/functional/any_invocable.h"
#include "proxy/base/mode.h"
#include "proxy/control/control_commands.h"
#include "proxy/control/control_json.h"

namespace sidecar::proxy {

using ControlReply = absl::AnyInvocable<void(std::string)>;

// DrainRequest: {"cmd":"drainPlaintext","overSeconds":N}.
void DrainRequest(ControlTarget& target, const ControlJson& request, uid_t uid,
                  ControlReply reply);
// ClientsRequest: {"cmd":"clients","transport":...}.
void ClientsRequest(ControlTarget& target, const ControlJson& request, ControlReply reply);
// PreflightRequest: {"cmd":"preflight","mode":...}; the outcome is remembered in `memory`.
void PreflightRequest(ControlTarget& target, ControlMemory& memory, Mode mode, uid_t uid,
                      ControlReply reply);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_CONTROL_REQUESTS_H_
