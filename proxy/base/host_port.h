// HostPort and its one parser: "host:port", "[v6]:port", and where the caller allows it a bare
// "host" with a default port. Configuration (net.upstream, listen addresses, egress peers),
// the upstream probe (the hosts a replica set advertises) and the client registry (a peer's
// address without its port) all split addresses here. Pure text; nothing is resolved.
#ifndef SIDECAR_PROXY_BASE_HOST_PORT_H_
#define SIDECAR_PROXY_BASE_HOST_PORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sidecar::proxy {

// HostPort is "host:port" or "[v6]:port", split. The host is not resolved here.
struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const;  // "host:port", brackets around IPv6 literals
};

// HostPortRules says what a caller accepts beyond a strict "host:port".
struct HostPortRules {
  bool allow_port_zero = false;  // "host:0", for listen addresses (the kernel picks)
  // When set, "host" alone means this port, and an IPv6 literal may come without brackets
  // (then it has no port): mongod's advertised hosts, as drivers read them.
  std::optional<uint16_t> default_port;
};

// ParseHostPortBare splits `text` under `rules`. Error messages have no prefix, ready for
// "WHAT: " in front ("invalid port \"x\" in \"h:x\"; expected 1 to 65535").
absl::StatusOr<HostPort> ParseHostPortBare(std::string_view text, HostPortRules rules);

// ParseHostPortBare with only allow_port_zero, as configuration uses it.
inline absl::StatusOr<HostPort> ParseHostPortBare(std::string_view text, bool allow_port_zero) {
  return ParseHostPortBare(text, HostPortRules{.allow_port_zero = allow_port_zero});
}

// IsHostChar: `c` may appear in a host name or IP literal (with a scope id after '%').
bool IsHostChar(char c);

// ParseHostPort splits "host:port" / "[::1]:port"; `what` names the key or flag for errors.
absl::StatusOr<HostPort> ParseHostPort(std::string_view text, std::string_view what);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_HOST_PORT_H_
