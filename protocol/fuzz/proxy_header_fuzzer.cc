// Fuzzes BuildProxyHeader through a round trip, since the sidecar writes PROXY headers and
// parses none: the input chooses the header's fields (version, families, addresses, ports,
// TLS version, cipher, SNI, certificate bits), the header is built, and the test parser
// (tests/protocol/proxy_header_parser.h, written from proxy-protocol.txt) must read back
// exactly those fields from exactly the header's bytes. The raw input also goes through the
// parser, which must not read past it. A mismatch aborts.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "protocol/proxy_header.h"
#include "tests/protocol/proxy_header_parser.h"

namespace {

using sidecar::protocol::BuildProxyHeader;
using sidecar::protocol::IpEndpoint;
using sidecar::protocol::ProxyHeaderInfo;
using sidecar::testing::ParsedProxyHeader;
using sidecar::testing::ParseProxyHeader;
using sidecar::testing::ProxyParseStatus;

// Takes bytes from the front of the input; zeros once it runs out.
class Consumer {
 public:
  Consumer(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t Byte() {
    if (size_ == 0) {
      return 0;
    }
    --size_;
    return *data_++;
  }
  uint16_t U16() { return static_cast<uint16_t>(Byte() << 8 | Byte()); }
  // A string of up to `max` printable bytes, as TLS names and SNI host names are.
  std::string Text(size_t max) {
    size_t n = Byte() % (max + 1);
    std::string text;
    for (size_t i = 0; i < n; ++i) {
      text.push_back(static_cast<char>(0x21 + Byte() % 0x5E));
    }
    return text;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

IpEndpoint Endpoint(Consumer& in, bool v6) {
  IpEndpoint endpoint;
  endpoint.v6 = v6;
  for (size_t i = 0; i < (v6 ? 16u : 4u); ++i) {
    endpoint.address[i] = in.Byte();
  }
  endpoint.port = in.U16();
  return endpoint;
}

// The 16 bytes the header carries for `endpoint` once the families are made one.
std::array<uint8_t, 16> Written(const IpEndpoint& endpoint, bool as_v6) {
  if (endpoint.v6 || !as_v6) {
    return endpoint.address;
  }
  std::array<uint8_t, 16> mapped{};
  mapped[10] = 0xFF;
  mapped[11] = 0xFF;
  std::memcpy(&mapped[12], endpoint.address.data(), 4);
  return mapped;
}

void Check(bool condition) {
  if (!condition) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    ParsedProxyHeader parsed;
    std::string error;
    std::vector<uint8_t> copy(data, data + size);  // exact size: ASan sees an over-read
    if (ParseProxyHeader(copy, &parsed, &error) == ProxyParseStatus::kDone) {
      Check(parsed.size <= size);
    }
  }

  Consumer in(data, size);
  uint8_t flags = in.Byte();
  int version = (flags & 1) ? 2 : 1;
  ProxyHeaderInfo info;
  info.source = Endpoint(in, flags & 2);
  info.destination = Endpoint(in, flags & 4);
  info.tls = flags & 8;
  info.client_certificate = flags & 16;
  info.client_certificate_verified = flags & 32;
  info.resumed = flags & 64;
  if (info.tls) {
    info.tls_version = in.Text(16);
    info.cipher = in.Text(64);
    info.sni = in.Text(255);
  }
  std::vector<uint8_t> header = BuildProxyHeader(version, info);

  ParsedProxyHeader parsed;
  std::string error;
  Check(ParseProxyHeader(header, &parsed, &error) == ProxyParseStatus::kDone);
  Check(parsed.size == header.size());
  Check(parsed.version == version);
  Check(!parsed.local);
  bool v6 = info.source.v6 || info.destination.v6;
  Check(parsed.v6 == v6);
  size_t address_size = v6 ? 16 : 4;
  std::array<uint8_t, 16> source = Written(info.source, v6);
  std::array<uint8_t, 16> destination = Written(info.destination, v6);
  Check(std::memcmp(parsed.source_address.data(), source.data(), address_size) == 0);
  Check(std::memcmp(parsed.destination_address.data(), destination.data(), address_size) == 0);
  Check(parsed.source_port == info.source.port);
  Check(parsed.destination_port == info.destination.port);
  if (version == 1) {
    Check(header.size() <= 107);
    Check(!parsed.ssl.has_value() && !parsed.authority.has_value());
    return 0;
  }
  Check(parsed.authority.has_value() == !info.sni.empty());
  if (!info.sni.empty()) {
    Check(*parsed.authority == info.sni);
  }
  Check(parsed.ssl.has_value() == info.tls);
  if (info.tls) {
    Check(parsed.ssl->client & 0x01);
    Check(((parsed.ssl->client & 0x04) != 0) == info.client_certificate);
    Check(((parsed.ssl->client & 0x02) != 0) == (info.client_certificate && !info.resumed));
    Check((parsed.ssl->verify == 0) ==
          (info.client_certificate && info.client_certificate_verified));
    Check(parsed.ssl->version.value_or("") == info.tls_version);
    Check(parsed.ssl->cipher.value_or("") == info.cipher);
  }
  return 0;
}
