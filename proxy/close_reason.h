// CloseReason says why a connection ended. The values are stable (logs and dashboards key
// on the names): append new ones at the end, never reorder. The rejection reasons feed
// tls_sidecar_connections_rejected_total{reason}.
#ifndef SIDECAR_PROXY_CLOSE_REASON_H_
#define SIDECAR_PROXY_CLOSE_REASON_H_

#include <cstdint>
#include <string_view>

namespace sidecar::proxy {

enum class CloseReason : uint8_t {
  kFinished = 0,            // both sides finished sending; not a rejection
  kDownstreamError,         // the client's socket failed (reset, timeout)
  kUpstreamError,           // the server's socket failed after it was connected
  kTlsError,                // a TLS record or alert error after the handshake
  kPlaintextInRequireTls,   // rejections from here on
  kTlsInDisabled,
  kHandshakeFailed,
  kHandshakeTimeout,
  kSniffTimeout,
  kSniffEof,
  kInvalidFirstBytes,
  kUnsupportedTls,
  kMaxConnections,
  kUpstreamUnavailable,
  kHttpOnNativePort,
  kDrainedPlaintext,
  kShutdown,                // still open when the SIGTERM drain window ended
  kNoCertificate,           // TLS arrived but no certificate is loaded
  kEgressHandshakeFailed,   // the peer refused or failed our TLS (no plaintext fallback)
  kEgressPeerUnavailable,   // the peer could not be reached
  kCount                    // not a reason: the number of reasons
};

inline constexpr int kCloseReasonCount = static_cast<int>(CloseReason::kCount);

// CloseReasonName is the metric label and log value, e.g. "plaintext_in_requireTLS".
std::string_view CloseReasonName(CloseReason reason);

// IsRejection: whether the sidecar refused or cut the connection (counted as rejected),
// as opposed to the peers ending it.
inline bool IsRejection(CloseReason reason) {
  return reason >= CloseReason::kPlaintextInRequireTls && reason < CloseReason::kCount;
}

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CLOSE_REASON_H_
