// CtlMain is `tls-sidecar ctl ...`: the operator's front end to the control socket (SPEC §6).
// It sends one request, prints the answer (a table for people, the raw JSON with --json),
// and returns the exit status: 0 when the answer is ok, 1 when the sidecar refused, 2 when
// the socket cannot be reached or the command line is wrong.
#ifndef SIDECAR_PROXY_CONTROL_CTL_MAIN_H_
#define SIDECAR_PROXY_CONTROL_CTL_MAIN_H_

#include <string>
#include <string_view>

namespace sidecar::proxy {

// CliWording rewrites a sentence of the control protocol (an `error` or a warning) into the
// words of `tls-sidecar ctl`. The sidecar writes the protocol's field and command names in
// backquotes (`force`, `persist`, `drainPlaintext`, `plaintextClients`, `peers`), so they
// are replaced exactly: "set `force`" becomes "add `--force`", `drainPlaintext` becomes
// `tls-sidecar ctl drain-plaintext SECONDS`. The --json output keeps the sentence as sent.
std::string CliWording(std::string_view sentence);

// CtlMain takes the arguments after "ctl" (argv[0] is "ctl"). Writes to stdout and stderr.
int CtlMain(int argc, char** argv);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_CTL_MAIN_H_
