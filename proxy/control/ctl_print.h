// How `tls-sidecar ctl` shows the control plane's answers to people: tables and sentences
// in the command line's words (CliWording, ctl_main.h). Writes to stdout.
#ifndef SIDECAR_PROXY_CONTROL_CTL_PRINT_H_
#define SIDECAR_PROXY_CONTROL_CTL_PRINT_H_

#include <string>

#include "proxy/control/ctl_socket.h"

namespace sidecar::proxy::ctl {

// Field is `object[key]` as text: strings as they are, null as "-", "" when absent.
std::string Field(const Json& object, const char* key);

// PrintAnswer prints an ok answer to `command` ("status", "set-mode", ...).
void PrintAnswer(const std::string& command, const Json& answer);

// PrintRefusalDetails prints what a refusal carries besides its error: the peers of a failed
// preflight, the plaintext clients that keep requireTLS from being set.
void PrintRefusalDetails(const std::string& command, const Json& answer);

}  // namespace sidecar::proxy::ctl

#endif  // SIDECAR_PROXY_CONTROL_CTL_PRINT_H_
