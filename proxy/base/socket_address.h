// Socket address helpers: resolving "host:port" once at start, and printing addresses for
// logs and the clients table.
#ifndef SIDECAR_PROXY_BASE_SOCKET_ADDRESS_H_
#define SIDECAR_PROXY_BASE_SOCKET_ADDRESS_H_

#include <sys/socket.h>
#include <uv.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/proxy_header.h"

namespace sidecar::proxy {

// Resolve turns a host (name or literal) and port into addresses, IPv4 and IPv6; blocking,
// so only for start-up and the control plane.
absl::StatusOr<std::vector<sockaddr_storage>> Resolve(const std::string& host, uint16_t port);

// IsIpLiteral: whether `host` is an IPv4 or IPv6 address rather than a name.
bool IsIpLiteral(const std::string& host);

// FormatAddress prints "1.2.3.4:5" or "[::1]:5".
std::string FormatAddress(const sockaddr_storage& address);

// PeerAddress is the remote address of a connected TCP handle, "" when unknown.
std::string PeerAddress(const uv_tcp_t* socket);

// PeerSockaddr / LocalSockaddr of a connected TCP handle (zeroed when unknown).
sockaddr_storage PeerSockaddr(const uv_tcp_t* socket);
sockaddr_storage LocalSockaddr(const uv_tcp_t* socket);

// ToIpEndpoint converts an address for the PROXY protocol header.
protocol::IpEndpoint ToIpEndpoint(const sockaddr_storage& address);

// OriginalDestination reads where a connection redirected by iptables (REDIRECT) was going,
// with SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6).
absl::StatusOr<sockaddr_storage> OriginalDestination(const uv_tcp_t* socket);

// SetSocketMark creates the socket of an unconnected TCP handle for `family` now and sets
// SO_MARK on it (needs CAP_NET_ADMIN).
absl::Status SetSocketMark(uv_tcp_t* socket, int family, uint32_t mark);

// AddressPort returns the port of an address.
uint16_t AddressPort(const sockaddr_storage& address);
void SetAddressPort(sockaddr_storage& address, uint16_t port);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_SOCKET_ADDRESS_H_
