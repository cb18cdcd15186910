// ParseProxyHeader reads a PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1
// and 2) the way a receiving server does. The sidecar only writes these headers; this parser
// exists for the tests, so that what BuildProxyHeader writes is read back by code written
// from the specification rather than from the writer, and for the fuzz target's round trip.
// Pure: bytes in, no I/O.
#ifndef SIDECAR_TESTS_PROTOCOL_PROXY_HEADER_PARSER_H_
#define SIDECAR_TESTS_PROTOCOL_PROXY_HEADER_PARSER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/types/span.h"

namespace sidecar::testing {

enum class ProxyParseStatus { kNeedMore, kDone, kError };

struct ParsedSslTlv {
  uint8_t client = 0;                  // PP2_CLIENT_* bits
  uint32_t verify = 0;                 // 0: the client presented a certificate and it was verified
  std::optional<std::string> version;  // PP2_SUBTYPE_SSL_VERSION
  std::optional<std::string> cipher;   // PP2_SUBTYPE_SSL_CIPHER
};

struct ParsedProxyHeader {
  int version = 0;     // 1 or 2
  bool local = false;  // v2 LOCAL command, or v1 "UNKNOWN": no addresses
  bool v6 = false;
  std::array<uint8_t, 16> source_address{};  // IPv4 in the first 4 bytes
  std::array<uint8_t, 16> destination_address{};
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  std::optional<std::string> authority;  // PP2_TYPE_AUTHORITY
  std::optional<ParsedSslTlv> ssl;       // PP2_TYPE_SSL
  size_t size = 0;                       // bytes of the header, when kDone
};

// Parses the header at the start of `input`. kNeedMore while `input` is a proper prefix of a
// header that could still be valid; kError (with `error` set) when it cannot be one.
ProxyParseStatus ParseProxyHeader(absl::Span<const uint8_t> input, ParsedProxyHeader* out,
                                  std::string* error);

}  // namespace sidecar::testing

#endif  // SIDECAR_TESTS_PROTOCOL_PROXY_HEADER_PARSER_H_
