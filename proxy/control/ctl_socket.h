// AskControlSocket is `tls-sidecar ctl`'s side of the control socket (SPEC §6): one request
// line out, one answer line back, from a sidecar that may be trusted with it. Blocking; called
// once per `ctl` run.
#ifndef SIDECAR_PROXY_CONTROL_CTL_SOCKET_H_
#define SIDECAR_PROXY_CONTROL_CTL_SOCKET_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace sidecar::proxy::ctl {

using Json = nlohmann::ordered_json;

// CtlAnswer is the answer line as received and parsed; json["ok"] is known to be a boolean.
struct CtlAnswer {
  std::string line;
  Json json;
};

// AskControlSocket sends `request` on the socket at `path` and returns the answer. Without
// an answer, *error says why in a sentence to print: the socket cannot be reached, is served
// by a user not to be trusted, timed out, or answered something that is not a control answer.
std::optional<CtlAnswer> AskControlSocket(const std::string& path, const Json& request,
                                          std::string* error);

}  // namespace sidecar::proxy::ctl

#endif  // SIDECAR_PROXY_CONTROL_CTL_SOCKET_H_
