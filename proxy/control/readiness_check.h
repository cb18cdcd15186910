// AssessReadiness answers the rolling upgrade's question before each step (SPEC §6
// `readiness`): may this node go to `to` now? Its reasons are the very rules setMode
// applies, from DecideTransition on the same TransitionRequest (force off), so whenever a
// gate would refuse, readiness says not ready with the same sentence, and whenever
// readiness says ready, setMode without force succeeds. On top come advisory checks that
// never refuse a change but deserve a look first: certificates close to expiry, a stale or
// missing preflight, topology warnings (advertised hosts that bypass the sidecar, mongod on
// a public address), plaintext clients still connected, and plaintext clients refused.
//
// Pure functions; any thread.
#ifndef SIDECAR_PROXY_CONTROL_READINESS_CHECK_H_
#define SIDECAR_PROXY_CONTROL_READINESS_CHECK_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "certs/certificate_info.h"
#include "proxy/base/mode.h"
#include "proxy/control/mode_transition.h"
#include "proxy/observe/client_registry.h"

namespace sidecar::proxy {

// Certificates that expire within this many days are warned about; as the start-up log,
// `status` and the alert rule: three weeks ahead.
inline constexpr int kCertificateExpiryWarningDays = 21;

// ReadinessFacts is everything the verdict depends on, gathered by the control plane.
struct ReadinessFacts {
  // The change in question as setMode would see it (`force` is ignored: readiness asks
  // whether the change goes through without it).
  TransitionRequest transition;
  std::vector<certs::CertificateInfo> certificates;
  int64_t now_unix = 0;
  // The upstream checks' findings (sentences), as logged at start.
  std::vector<std::string> topology_warnings;
  // Rows of the client table (any transport, any state): the plaintext ones are read.
  std::vector<ClientRow> clients;
};

// ReadinessItem is one reason or warning: a code from a fixed set (the obstacle codes of
// ObstacleCode, and "certificate_expiry", "preflight", "topology", "plaintext_connected",
// "plaintext_refused", "last_step") and a sentence that says what to do.
struct ReadinessItem {
  std::string code;
  std::string sentence;
};

struct ReadinessReport {
  Mode from = Mode::kDisabled;
  Mode to = Mode::kDisabled;
  bool ready = false;
  std::vector<ReadinessItem> reasons;   // why not ready; empty when ready
  std::vector<ReadinessItem> warnings;  // advisory
  // When kPlaintextClients stands in the way: the open plaintext connections, grouped.
  std::vector<OpenPlaintextClient> plaintext_clients;
  // When `to` is the running mode: a sentence saying so ("" otherwise).
  std::string note;

  // "ready", "ready with warnings" or "not ready".
  std::string_view Verdict() const;
};

// NextMode is the next step of the rolling upgrade after `mode`; nullopt after requireTLS.
std::optional<Mode> NextMode(Mode mode);

// AssessReadiness returns the verdict for facts.transition.from -> facts.transition.to.
ReadinessReport AssessReadiness(const ReadinessFacts& facts);

// MetricReason is the one reason label tls_sidecar_next_mode_ready carries for `report`:
// "none" when ready, else the code of the first reason.
std::string_view MetricReason(const ReadinessReport& report);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_READINESS_CHECK_H_
