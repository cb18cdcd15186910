#include "proxy/socket_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

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
