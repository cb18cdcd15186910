#include "proxy/close_reason.h"

namespace sidecar::proxy {

std::string_view CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kFinished:
      return "finished";
    case CloseReason::kDownstreamError:
      return "downstream_error";
    case CloseReason::kUpstreamError:
      return "upstream_error";
    case CloseReason::kTlsError:
      return "tls_error";
    case CloseReason::kPlaintextInRequireTls:
      return "plaintext_in_requireTLS";
    case CloseReason::kTlsInDisabled:
      return "tls_in_disabled";
    case CloseReason::kHandshakeFailed:
      return "handshake_failed";
    case CloseReason::kHandshakeTimeout:
      return "handshake_timeout";
    case CloseReason::kSniffTimeout:
      return "sniff_timeout";
    case CloseReason::kSniffEof:
      return "sniff_eof";
    case CloseReason::kInvalidFirstBytes:
      return "invalid_first_bytes";
    case CloseReason::kUnsupportedTls:
      return "unsupported_tls";
    case CloseReason::kMaxConnections:
      return "max_connections";
    case CloseReason::kUpstreamUnavailable:
      return "upstream_unavailable";
    case CloseReason::kHttpOnNativePort:
      return "http_on_native_port";
    case CloseReason::kDrainedPlaintext:
      return "drained_plaintext";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kNoCertificate:
      return "no_certificate";
    case CloseReason::kEgressHandshakeFailed:
      return "egress_handshake_failed";
    case CloseReason::kEgressPeerUnavailable:
      return "egress_peer_unavailable";
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

}  // namespace sidecar::proxy
