#include "proxy/upstream/host_checks.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proxy/base/host_port.h"
#include "proxy/base/socket_address.h"

namespace sidecar::proxy {

namespace {

bool IsLoopback(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
      return true;
    }
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      return in6->sin6_addr.s6_addr[12] == 127;
    }
  }
  return false;
}

bool IsWildcard(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&address)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (address.ss_family == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr);
  }
  return false;
}

// SameIp compares the IP part only (ports and scope ids aside); a v4-mapped v6 address
// equals its v4 form.
bool SameIp(const sockaddr_storage& a, const sockaddr_storage& b) {
  auto v4 = [](const sockaddr_storage& s, in_addr* out) {
    if (s.ss_family == AF_INET) {
      *out = reinterpret_cast<const sockaddr_in*>(&s)->sin_addr;
      return true;
    }
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
    if (s.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      std::memcpy(&out->s_addr, &in6->sin6_addr.s6_addr[12], 4);
      return true;
    }
    return false;
  };
  in_addr a4{}, b4{};
  bool a_is_v4 = v4(a, &a4);
  bool b_is_v4 = v4(b, &b4);
  if (a_is_v4 || b_is_v4) {
    return a_is_v4 && b_is_v4 && a4.s_addr == b4.s_addr;
  }
  if (a.ss_family != AF_INET6 || b.ss_family != AF_INET6) {
    return false;
  }
  return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr,
                     &reinterpret_cast<const sockaddr_in6*>(&b)->sin6_addr, 16) == 0;
}

bool ContainsIp(const std::vector<sockaddr_storage>& addresses, const sockaddr_storage& a) {
  return std::any_of(addresses.begin(), addresses.end(),
                     [&](const sockaddr_storage& b) { return SameIp(a, b); });
}

// SidecarListensOn: the sidecar accepts on ip:port (its own port, on that address or on a
// wildcard of the address's family).
bool SidecarListensOn(const SidecarAddresses& sidecar, const sockaddr_storage& ip, uint16_t port) {
  if (port != sidecar.port) {
    return false;
  }
  for (const sockaddr_storage& listening : sidecar.listening) {
    if (SameIp(listening, ip)) {
      return true;
    }
    if (IsWildcard(listening) && (listening.ss_family == AF_INET6 || ip.ss_family == AF_INET)) {
      return true;  // "::" also takes IPv4 unless IPV6_V6ONLY; "0.0.0.0" only IPv4
    }
  }
  return false;
}

std::string ListeningText(const SidecarAddresses& sidecar) {
  std::vector<std::string> names;
  for (const sockaddr_storage& address : sidecar.listening) {
    names.push_back(FormatAddress(address));
  }
  return absl::StrJoin(names, ", ");
}

// ConnectsWithin: a TCP connect to `address` completes within `timeout_ms`.
bool ConnectsWithin(const sockaddr_storage& address, int timeout_ms) {
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  socklen_t length = address.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  bool connected = false;
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&address), length);
  if (rc == 0) {
    connected = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, timeout_ms) == 1) {
      int error = 0;
      socklen_t error_length = sizeof(error);
      connected = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length) == 0 && error == 0;
    }
  }
  close(fd);
  return connected;
}

}  // namespace

std::vector<sockaddr_storage> SystemResolver(const std::string& host) {
  std::vector<sockaddr_storage> result;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &list) != 0) {
    return result;
  }
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage address{};
    std::memcpy(&address, ai->ai_addr, std::min<size_t>(ai->ai_addrlen, sizeof(address)));
    result.push_back(address);
  }
  freeaddrinfo(list);
  return result;
}

std::vector<sockaddr_storage> LocalInterfaceAddresses() {
  std::vector<sockaddr_storage> result;
  uv_interface_address_t* interfaces = nullptr;
  int count = 0;
  if (uv_interface_addresses(&interfaces, &count) != 0) {
    return result;
  }
  for (int i = 0; i < count; ++i) {
    sockaddr_storage address{};
    if (interfaces[i].address.address4.sin_family == AF_INET) {
      std::memcpy(&address, &interfaces[i].address.address4, sizeof(sockaddr_in));
    } else {
      std::memcpy(&address, &interfaces[i].address.address6, sizeof(sockaddr_in6));
    }
    result.push_back(address);
  }
  uv_free_interface_addresses(interfaces, count);
  return result;
}

std::vector<std::string> AdvertisedHostWarnings(const HelloSummary& hello,
                                                const SidecarAddresses& sidecar,
                                                const Resolver& resolve) {
  std::vector<std::string> warnings;
  if (hello.hosts.empty()) {
    return warnings;  // a standalone advertises nothing: drivers use the address they have
  }
  bool some_host_is_sidecar = false;
  std::vector<std::string> resolved_hosts;
  for (const std::string& advertised : hello.hosts) {
    // "host" alone is port 27017, as drivers read it.
    absl::StatusOr<HostPort> split =
        ParseHostPortBare(advertised, HostPortRules{.default_port = 27017});
    if (!split.ok()) {
      continue;
    }
    uint16_t port = split->port;
    std::vector<sockaddr_storage> addresses = resolve(split->host);
    if (addresses.empty()) {
      continue;
    }
    resolved_hosts.push_back(advertised);
    bool on_this_host = false;
    bool is_sidecar = false;
    for (const sockaddr_storage& address : addresses) {
      if (IsLoopback(address) || ContainsIp(sidecar.local, address)) {
        on_this_host = true;
        if (SidecarListensOn(sidecar, address, port)) {
          is_sidecar = true;
        }
      }
    }
    some_host_is_sidecar = some_host_is_sidecar || is_sidecar;
    if (on_this_host && !is_sidecar) {
      warnings.push_back(absl::StrCat(
          "the replica set advertises ", advertised,
          ", which is this host but not the sidecar (listening on ", ListeningText(sidecar),
          "): drivers that discover it connect around the sidecar; advertise the sidecar's "
          "address in the replica set configuration"));
    }
  }
  if (!some_host_is_sidecar && warnings.empty() && !resolved_hosts.empty()) {
    warnings.push_back(absl::StrCat(
        "none of the hosts the replica set advertises (", absl::StrJoin(hello.hosts, ", "),
        ") is this sidecar (listening on ", ListeningText(sidecar),
        "): drivers connect to the advertised hosts and would not come through it"));
  }
  return warnings;
}

std::vector<std::string> ExposedUpstreamWarnings(const SidecarAddresses& sidecar, int timeout_ms) {
  std::vector<std::string> warnings;
  uint16_t upstream_port = AddressPort(sidecar.upstream);
  if (!IsLoopback(sidecar.upstream)) {
    warnings.push_back(absl::StrCat(
        "mongod is reached on a non-loopback address (net.upstream ",
        FormatAddress(sidecar.upstream),
        "): clients can connect to it directly, without TLS; bind mongod to 127.0.0.1"));
    return warnings;
  }
  std::vector<std::string> exposed;
  for (sockaddr_storage address : sidecar.local) {
    if (IsLoopback(address) || IsWildcard(address)) {
      continue;
    }
    if (address.ss_family == AF_INET6 &&
        IN6_IS_ADDR_LINKLOCAL(&reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr)) {
      continue;  // needs a scope id to dial; mongod bound to all addresses shows elsewhere
    }
    if (SidecarListensOn(sidecar, address, upstream_port)) {
      continue;  // that would be the sidecar answering, not mongod
    }
    SetAddressPort(address, upstream_port);
    if (ConnectsWithin(address, timeout_ms)) {
      exposed.push_back(FormatAddress(address));
    }
  }
  if (!exposed.empty()) {
    warnings.push_back(absl::StrCat(
        "mongod (upstream port ", upstream_port, ") is reachable on non-loopback address",
        exposed.size() > 1 ? "es " : " ", absl::StrJoin(exposed, ", "),
        ": clients can connect to it directly, without TLS; bind mongod to 127.0.0.1"));
  }
  return warnings;
}

}  // namespace sidecar::proxy
