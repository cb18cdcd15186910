// DecideTransition applies the mode transition rules of SPEC §6 to one request, without
// touching any state: the control plane gathers the facts (running mode, whether a server
// certificate is loaded, the open plaintext client connections) and acts on the decision.
//
//   - asking for the running mode is answered `unchanged` (and nothing is refused);
//   - one step up (disabled → allowTLS → preferTLS → requireTLS) is allowed;
//   - any other change, a skip or a step down (rollback), needs `force`;
//   - entering a mode that accepts TLS needs a loaded server certificate;
//   - entering requireTLS is refused while plaintext client connections are open;
//   - turning egress TLS on (from disabled or allowTLS into preferTLS or requireTLS) with
//     egress peers configured needs a TLS preflight that succeeded within the last
//     kPreflightMaxAgeSeconds; preferTLS -> requireTLS does not change egress and needs none;
//   - one `force` lifts every refusal but one, and the decision then names what it overrode;
//     a mode that accepts TLS is refused while no server certificate is loaded, force or not
//     (force is the rollback tool: it must never leave a sidecar that serves no client).
//
// Pure functions; any thread.
#ifndef SIDECAR_PROXY_CONTROL_MODE_TRANSITION_H_
#define SIDECAR_PROXY_CONTROL_MODE_TRANSITION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/base/mode.h"

namespace sidecar::proxy {

// OpenPlaintextClient is one group of open plaintext client connections: same client
// address (without port), application and driver. `member` is true when the hello carried
// internalClient (a cluster member rather than an application).
struct OpenPlaintextClient {
  std::string address;
  std::string application;
  std::string driver;
  bool member = false;
  int64_t connections = 0;

  friend bool operator==(const OpenPlaintextClient&, const OpenPlaintextClient&) = default;
};

// PreflightFacts is the outcome of the last TLS preflight (`preflight` with a mode whose
// egress uses TLS) and how long ago it finished.
struct PreflightFacts {
  bool ok = false;
  int64_t age_seconds = 0;

  friend bool operator==(const PreflightFacts&, const PreflightFacts&) = default;
};

// A preflight older than this no longer vouches for the peers.
inline constexpr int64_t kPreflightMaxAgeSeconds = 600;

struct TransitionRequest {
  Mode from = Mode::kDisabled;  // the running mode
  Mode to = Mode::kDisabled;    // the requested mode
  bool force = false;
  bool certificate_loaded = false;  // a server certificate is in the current snapshot
  // Open plaintext client connections; consulted only when `to` is requireTLS.
  std::vector<OpenPlaintextClient> open_plaintext;
  // Configured [[egress.peers]] and the last TLS preflight (nullopt: none since start);
  // consulted only when the change turns egress TLS on.
  int egress_peers = 0;
  std::optional<PreflightFacts> last_preflight;
};

enum class TransitionVerdict {
  kUnchanged,  // `to` is the running mode: answer ok with unchanged:true
  kAllowed,    // apply it
  kRefused,    // answer ok:false with `error`
};

// Which rules stood in the way. With force they are overridden (and logged), except
// kNoCertificate; without, they are the reasons for the refusal.
enum TransitionObstacle : uint32_t {
  kNotOneStepUp = 1u << 0,      // a skip or a step down
  kNoCertificate = 1u << 1,     // the target accepts TLS and no server certificate is loaded;
                                // force does not lift it
  kPlaintextClients = 1u << 2,  // entering requireTLS with plaintext client connections open
  kNoPreflight = 1u << 3,       // egress TLS turns on without a recent successful preflight
};

// ObstacleCode names an obstacle in answers and in tls_sidecar_next_mode_ready{reason}:
// "not_one_step", "no_certificate", "plaintext_clients", "no_preflight".
std::string_view ObstacleCode(TransitionObstacle obstacle);

// TransitionReason is one rule that stood in the way, with the sentence that says why and
// what to do; the refusal's `error` joins these sentences, and `readiness` lists them.
struct TransitionReason {
  TransitionObstacle obstacle = kNotOneStepUp;
  std::string sentence;
};

struct TransitionDecision {
  TransitionVerdict verdict = TransitionVerdict::kRefused;
  uint32_t obstacles = 0;  // TransitionObstacle bits
  // Every rule that stood in the way, in the order they are checked (also under force).
  std::vector<TransitionReason> reasons;
  // When refused: one or more sentences saying why and what to do instead. Empty otherwise.
  std::string error;
  // When allowed with force: a sentence naming the rules force overrode ("" when none).
  std::string overridden;
  // The open plaintext clients, when kPlaintextClients is among the obstacles.
  std::vector<OpenPlaintextClient> plaintext_clients;

  bool refused_by_gate() const {
    return verdict == TransitionVerdict::kRefused && (obstacles & kPlaintextClients) != 0;
  }
};

// DecideTransition returns what to do with `request` (see the rules above).
TransitionDecision DecideTransition(const TransitionRequest& request);

// IsOneStepUp: `to` is the mode right after `from` in the rolling-upgrade order.
bool IsOneStepUp(Mode from, Mode to);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_MODE_TRANSITION_H_
