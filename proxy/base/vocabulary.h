// The words every room of the proxy uses about a connection: which way it runs, what it
// speaks, which way its bytes flow. Kept apart from metrics and the data path so that
// neither has to include the other to name them.
#ifndef SIDECAR_PROXY_BASE_VOCABULARY_H_
#define SIDECAR_PROXY_BASE_VOCABULARY_H_

#include <cstdint>
#include <string_view>

namespace sidecar::proxy {

// Ingress: a client dialed our public port. Egress: the local mongod dialed a peer through us.
enum class Direction : uint8_t { kIngress = 0, kEgress = 1 };
enum class Transport : uint8_t { kTls = 0, kPlaintext = 1 };
// Client to server is a request's way (downstream to upstream); server to client a reply's.
enum class FlowDirection : uint8_t { kClientToServer = 0, kServerToClient = 1 };

// The names metrics, logs and the control socket use ("ingress", "tls", ...).
constexpr std::string_view DirectionName(Direction direction) {
  return direction == Direction::kIngress ? "ingress" : "egress";
}
constexpr std::string_view TransportName(Transport transport) {
  return transport == Transport::kTls ? "tls" : "plaintext";
}

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_VOCABULARY_H_
