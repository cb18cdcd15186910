// TlsHandshakeFailureAlert is the TLS record a server sends to refuse a ClientHello it will
// not answer (SPEC §2, mode disabled): a fatal handshake_failure alert (RFC 8446 §6), sent
// in plaintext because no keys exist yet.
#ifndef SIDECAR_PROTOCOL_TLS_ALERT_H_
#define SIDECAR_PROTOCOL_TLS_ALERT_H_

#include <array>
#include <cstdint>

namespace sidecar::protocol {

inline constexpr std::array<uint8_t, 7> TlsHandshakeFailureAlert() {
  // Record: type alert (21), legacy version TLS 1.2 (3,3), length 2; alert: fatal (2),
  // handshake_failure (40).
  return {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
}

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_TLS_ALERT_H_
