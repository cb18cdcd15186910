// CloseReason says why a connection ended. The values are stable (logs and dashboards key
// on the names): append new ones at the end, never reorder, never reuse (HAProxy's CO_ER_*).
// Every property of a reason is a column of kCloseReasons, one row per reason, so a reason
// appended later says for itself whether it is a rejection. The rejection reasons feed
// tls_sidecar_connections_rejected_total{reason}.
#ifndef SIDECAR_PROXY_BASE_CLOSE_REASON_H_
#define SIDECAR_PROXY_BASE_CLOSE_REASON_H_

#include <array>
#include <cstdint>
#include <string_view>

namespace sidecar::proxy {

enum class CloseReason : uint8_t {
  kFinished = 0,
  kDownstreamError,
  kUpstreamError,
  kTlsError,
  kPlaintextInRequireTls,
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
  kShutdown,
  kNoCertificate,
  kEgressHandshakeFailed,
  kEgressPeerUnavailable,
  kSniffError,
  kMaxEgressConnections,
  kCertificateRevoked,
  kOcspUnavailable,
  kCount  // not a reason: the number of reasons
};

inline constexpr int kCloseReasonCount = static_cast<int>(CloseReason::kCount);

// CloseReasonInfo is one row of kCloseReasons.
struct CloseReasonInfo {
  CloseReason reason;
  std::string_view name;  // the metric label and log value
  // is_rejection: the sidecar refused or cut the connection (counted as rejected), as
  // opposed to the peers ending it or a socket failing once both sides were connected.
  bool is_rejection;
};

// kCloseReasons describes every reason, in the enum's order (checked below).
inline constexpr std::array<CloseReasonInfo, kCloseReasonCount> kCloseReasons = {{
    // both sides finished sending
    {CloseReason::kFinished, "finished", false},
    // the client's socket failed (reset, timeout) once the connection was admitted
    {CloseReason::kDownstreamError, "downstream_error", false},
    // the server's socket failed after it was connected
    {CloseReason::kUpstreamError, "upstream_error", false},
    // a TLS record or alert error after the handshake
    {CloseReason::kTlsError, "tls_error", false},
    {CloseReason::kPlaintextInRequireTls, "plaintext_in_requireTLS", true},
    {CloseReason::kTlsInDisabled, "tls_in_disabled", true},
    {CloseReason::kHandshakeFailed, "handshake_failed", true},
    {CloseReason::kHandshakeTimeout, "handshake_timeout", true},
    {CloseReason::kSniffTimeout, "sniff_timeout", true},
    // the client closed before sending the 16 bytes the sniff needs (SPEC §3)
    {CloseReason::kSniffEof, "sniff_eof", true},
    {CloseReason::kInvalidFirstBytes, "invalid_first_bytes", true},
    {CloseReason::kUnsupportedTls, "unsupported_tls", true},
    {CloseReason::kMaxConnections, "max_connections", true},
    {CloseReason::kUpstreamUnavailable, "upstream_unavailable", true},
    {CloseReason::kHttpOnNativePort, "http_on_native_port", true},
    {CloseReason::kDrainedPlaintext, "drained_plaintext", true},
    // still open when the SIGTERM drain window ended
    {CloseReason::kShutdown, "shutdown", true},
    // TLS arrived but no certificate is loaded
    {CloseReason::kNoCertificate, "no_certificate", true},
    // the peer refused or failed our TLS (no plaintext fallback)
    {CloseReason::kEgressHandshakeFailed, "egress_handshake_failed", true},
    // the peer could not be reached
    {CloseReason::kEgressPeerUnavailable, "egress_peer_unavailable", true},
    // the client's socket failed (e.g. a reset) before the sniff decided; a clean close
    // there is sniff_eof
    {CloseReason::kSniffError, "sniff_error", true},
    // an egress connection over limits.maxEgressConnections (max_connections is clients')
    {CloseReason::kMaxEgressConnections, "max_egress_connections", true},
    // OCSP says the peer's certificate (a client's, or a peer's on egress) is revoked
    {CloseReason::kCertificateRevoked, "certificate_revoked", true},
    // ocspHardFail: no usable OCSP answer for the peer's certificate
    {CloseReason::kOcspUnavailable, "ocsp_unavailable", true},
}};

// RowsFollowTheEnum: row i describes reason i, so a lookup is an index.
constexpr bool RowsFollowTheEnum() {
  for (int i = 0; i < kCloseReasonCount; ++i) {
    if (static_cast<int>(kCloseReasons[i].reason) != i || kCloseReasons[i].name.empty()) {
      return false;
    }
  }
  return true;
}
static_assert(RowsFollowTheEnum(), "kCloseReasons must have one row per reason, in order");

// CloseReasonName is the metric label and log value, e.g. "plaintext_in_requireTLS";
// "unknown" for a value out of range.
constexpr std::string_view CloseReasonName(CloseReason reason) {
  int i = static_cast<int>(reason);
  return i < kCloseReasonCount ? kCloseReasons[i].name : "unknown";
}

// IsRejection: whether the sidecar refused or cut the connection (counted as rejected),
// as opposed to the peers ending it.
constexpr bool IsRejection(CloseReason reason) {
  int i = static_cast<int>(reason);
  return i < kCloseReasonCount && kCloseReasons[i].is_rejection;
}

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_CLOSE_REASON_H_
