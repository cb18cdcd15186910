#include "protocol/proxy_header.h"

#include <arpa/inet.h>

#include <cstring>

namespace sidecar::protocol {

namespace {

// The 12-byte signature that starts every version 2 header.
constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kV2ProxyCommand = 0x21;  // version 2, PROXY
constexpr uint8_t kFamilyTcp4 = 0x11;
constexpr uint8_t kFamilyTcp6 = 0x21;
constexpr uint8_t kTypeAuthority = 0x02;
constexpr uint8_t kTypeSsl = 0x20;
constexpr uint8_t kSubtypeSslVersion = 0x21;
constexpr uint8_t kSubtypeSslCipher = 0x23;
constexpr uint8_t kClientSsl = 0x01;
constexpr uint8_t kClientCertConn = 0x02;  // a certificate presented on this connection
constexpr uint8_t kClientCertSess = 0x04;  // ... or at least once in this TLS session

IpEndpoint AsV6(const IpEndpoint& endpoint) {
  if (endpoint.v6) {
    return endpoint;
  }
  IpEndpoint mapped;
  mapped.v6 = true;
  mapped.port = endpoint.port;
  mapped.address[10] = 0xFF;
  mapped.address[11] = 0xFF;
  std::memcpy(&mapped.address[12], endpoint.address.data(), 4);
  return mapped;
}

std::string Text(const IpEndpoint& endpoint) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(endpoint.v6 ? AF_INET6 : AF_INET, endpoint.address.data(), text, sizeof(text));
  return text;
}

void PutU16(std::vector<uint8_t>& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

void PutTlv(std::vector<uint8_t>& out, uint8_t type, const std::vector<uint8_t>& value) {
  out.push_back(type);
  PutU16(out, static_cast<uint16_t>(value.size()));
  out.insert(out.end(), value.begin(), value.end());
}

std::vector<uint8_t> Bytes(const std::string& text) {
  return std::vector<uint8_t>(text.begin(), text.end());
}

}  // namespace

std::vector<uint8_t> BuildProxyHeader(int version, const ProxyHeaderInfo& info) {
  IpEndpoint source = info.source;
  IpEndpoint destination = info.destination;
  if (source.v6 != destination.v6) {
    source = AsV6(source);
    destination = AsV6(destination);
  }
  if (version == 1) {
    std::string line = "PROXY ";
    line += source.v6 ? "TCP6 " : "TCP4 ";
    line += Text(source) + " " + Text(destination) + " " + std::to_string(source.port) + " " +
            std::to_string(destination.port) + "\r\n";
    return Bytes(line);
  }
  std::vector<uint8_t> body;
  size_t address_size = source.v6 ? 16 : 4;
  body.insert(body.end(), source.address.begin(), source.address.begin() + address_size);
  body.insert(body.end(), destination.address.begin(),
              destination.address.begin() + address_size);
  PutU16(body, source.port);
  PutU16(body, destination.port);
  if (!info.sni.empty()) {
    PutTlv(body, kTypeAuthority, Bytes(info.sni));
  }
  if (info.tls) {
    std::vector<uint8_t> ssl;
    uint8_t client = kClientSsl;
    if (info.client_certificate) {
      // A resumed session carries the certificate of the handshake it came from.
      client |= kClientCertSess | (info.resumed ? 0 : kClientCertConn);
    }
    ssl.push_back(client);
    // verify (32 bits): "zero if the client presented a certificate and it was successfully
    // verified, and non-zero otherwise" (proxy-protocol.txt §2.2.5).
    uint8_t verify = info.client_certificate && info.client_certificate_verified ? 0 : 1;
    ssl.insert(ssl.end(), {0, 0, 0, verify});
    if (!info.tls_version.empty()) {
      PutTlv(ssl, kSubtypeSslVersion, Bytes(info.tls_version));
    }
    if (!info.cipher.empty()) {
      PutTlv(ssl, kSubtypeSslCipher, Bytes(info.cipher));
    }
    PutTlv(body, kTypeSsl, ssl);
  }
  std::vector<uint8_t> header(std::begin(kV2Signature), std::end(kV2Signature));
  header.push_back(kV2ProxyCommand);
  header.push_back(source.v6 ? kFamilyTcp6 : kFamilyTcp4);
  PutU16(header, static_cast<uint16_t>(body.size()));
  header.insert(header.end(), body.begin(), body.end());
  return header;
}

}  // namespace sidecar::protocol
