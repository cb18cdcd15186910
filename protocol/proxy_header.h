// BuildProxyHeader writes the PROXY protocol header (HAProxy's "PROXY protocol" spec,
// versions 1 and 2) that the sidecar sends first to mongod when net.upstreamProxyProtocol
// is on, so that mongod (net.proxyPort, 7.0.22+ / 8.0.10+) logs the real client. Version 2
// also carries what the client negotiated: PP2_TYPE_AUTHORITY (the SNI) and PP2_TYPE_SSL
// (client bits, verify, and the TLS version and cipher sub-TLVs). Pure: bytes out, no I/O.
#ifndef SIDECAR_PROTOCOL_PROXY_HEADER_H_
#define SIDECAR_PROTOCOL_PROXY_HEADER_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sidecar::protocol {

struct IpEndpoint {
  bool v6 = false;
  std::array<uint8_t, 16> address{};  // IPv4 in the first 4 bytes
  uint16_t port = 0;
};

struct ProxyHeaderInfo {
  IpEndpoint source;       // the client
  IpEndpoint destination;  // the address the client connected to
  bool tls = false;
  std::string tls_version;  // "TLSv1.3"
  std::string cipher;
  std::string sni;  // "" when the client sent none
  // The client's certificate: whether the TLS session has one (presented in this handshake,
  // or in the one a resumed session came from) and whether it verified.
  bool client_certificate = false;
  bool client_certificate_verified = false;
  bool resumed = false;
};

// version is 1 or 2. Mixed address families (a v4 client on a v6 listener) are written as
// v6 with the v4 address mapped (::ffff:a.b.c.d), as the spec requires one family.
std::vector<uint8_t> BuildProxyHeader(int version, const ProxyHeaderInfo& info);

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_PROXY_HEADER_H_
