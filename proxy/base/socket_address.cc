#include "proxy/base/socket_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {

absl::StatusOr<std::vector<sockaddr_storage>> Resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::NotFoundError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::vector<sockaddr_storage> addresses;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage address{};
    std::memcpy(&address, ai->ai_addr, ai->ai_addrlen);
    addresses.push_back(address);
  }
  freeaddrinfo(found);
  if (addresses.empty()) {
    return absl::NotFoundError(absl::StrCat("no address for ", host));
  }
  return addresses;
}

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

std::string FormatAddress(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    return absl::StrCat(text, ":", ntohs(v4->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    return absl::StrCat("[", text, "]:", ntohs(v6->sin6_port));
  }
  return "";
}

sockaddr_storage PeerSockaddr(const uv_tcp_t* socket) {
  sockaddr_storage address{};
  int length = sizeof(address);
  if (uv_tcp_getpeername(socket, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return sockaddr_storage{};
  }
  return address;
}

sockaddr_storage LocalSockaddr(const uv_tcp_t* socket) {
  sockaddr_storage address{};
  int length = sizeof(address);
  if (uv_tcp_getsockname(socket, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return sockaddr_storage{};
  }
  return address;
}

std::string PeerAddress(const uv_tcp_t* socket) { return FormatAddress(PeerSockaddr(socket)); }

protocol::IpEndpoint ToIpEndpoint(const sockaddr_storage& address) {
  protocol::IpEndpoint endpoint;
  if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    endpoint.v6 = true;
    std::memcpy(endpoint.address.data(), &v6->sin6_addr, 16);
  } else if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    std::memcpy(endpoint.address.data(), &v4->sin_addr, 4);
  }
  endpoint.port = AddressPort(address);
  return endpoint;
}

absl::StatusOr<sockaddr_storage> OriginalDestination(const uv_tcp_t* socket) {
  uv_os_fd_t fd;
  if (int rc = uv_fileno(reinterpret_cast<const uv_handle_t*>(socket), &fd); rc != 0) {
    return absl::InternalError(absl::StrCat("uv_fileno: ", uv_strerror(rc)));
  }
  sockaddr_storage local = LocalSockaddr(socket);
  sockaddr_storage original{};
  socklen_t length = sizeof(original);
  int rc = local.ss_family == AF_INET6
               ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &original, &length)
               : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &original, &length);
  if (rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SO_ORIGINAL_DST: ", std::strerror(errno),
        " (was the connection redirected here by iptables REDIRECT?)"));
  }
  return original;
}

absl::Status SetSocketMark(uv_tcp_t* socket, int family, uint32_t mark) {
  // libuv creates a TCP socket lazily at connect; make it now so the mark is on it first.
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(socket), &fd) != 0) {
    int created = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (created < 0) {
      return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
    }
    if (int rc = uv_tcp_open(socket, created); rc != 0) {
      ::close(created);
      return absl::UnavailableError(absl::StrCat("uv_tcp_open: ", uv_strerror(rc)));
    }
    fd = created;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("SO_MARK ", mark, ": ", std::strerror(errno), " (needs CAP_NET_ADMIN)"));
  }
  return absl::OkStatus();
}

uint16_t AddressPort(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

void SetAddressPort(sockaddr_storage& address, uint16_t port) {
  if (address.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&address)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in*>(&address)->sin_port = htons(port);
  }
}

}  // namespace sidecar::proxy
