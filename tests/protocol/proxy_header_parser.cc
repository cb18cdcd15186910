#include "tests/protocol/proxy_header_parser.h"

#include <arpa/inet.h>
#include <openssl/bytestring.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

namespace sidecar::testing {

namespace {

// proxy-protocol.txt §2.1: "PROXY" ... CRLF, at most 107 bytes with the CRLF.
constexpr std::string_view kV1Prefix = "PROXY ";
constexpr size_t kV1MaxSize = 107;
// §2.2: the 12-byte signature, then version/command, family/protocol and a 16-bit length.
constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr size_t kV2FixedSize = 16;
// §2.2.7 type registry.
constexpr uint8_t kPp2TypeAuthority = 0x02;
constexpr uint8_t kPp2TypeSsl = 0x20;
constexpr uint8_t kPp2SubtypeSslVersion = 0x21;
constexpr uint8_t kPp2SubtypeSslCipher = 0x23;

ProxyParseStatus Fail(std::string* error, std::string message) {
  *error = std::move(message);
  return ProxyParseStatus::kError;
}

// Whether `input` could still grow into `whole` (it is a prefix of it, or empty).
bool IsPrefixOf(absl::Span<const uint8_t> input, absl::Span<const uint8_t> whole) {
  size_t n = std::min(input.size(), whole.size());
  return std::memcmp(input.data(), whole.data(), n) == 0;
}

std::vector<std::string_view> Split(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t space = line.find(' ', start);
    fields.push_back(line.substr(start, space - start));
    if (space == std::string_view::npos) {
      return fields;
    }
    start = space + 1;
  }
}

// A port as §2.1 writes it: decimal digits, 0..65535, no sign and no leading zero.
bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) {
    return false;
  }
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) {
    return false;
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

bool ParseAddress(std::string_view text, bool v6, std::array<uint8_t, 16>* address) {
  std::string copy(text);  // inet_pton wants a NUL-terminated string
  return inet_pton(v6 ? AF_INET6 : AF_INET, copy.c_str(), address->data()) == 1;
}

ProxyParseStatus ParseV1(absl::Span<const uint8_t> input, ParsedProxyHeader* out,
                         std::string* error) {
  std::string_view text(reinterpret_cast<const char*>(input.data()),
                        std::min(input.size(), kV1MaxSize));
  size_t crlf = text.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (input.size() >= kV1MaxSize) {
      return Fail(error, "v1: no CRLF within 107 bytes");
    }
    return ProxyParseStatus::kNeedMore;
  }
  std::string_view line = text.substr(0, crlf);
  std::vector<std::string_view> fields = Split(line);
  out->version = 1;
  out->size = crlf + 2;
  if (fields.size() >= 2 && fields[1] == "UNKNOWN") {
    out->local = true;  // the receiver ignores the rest of the line
    return ProxyParseStatus::kDone;
  }
  if (fields.size() != 6) {
    return Fail(error, "v1: not six space-separated fields");
  }
  if (fields[1] != "TCP4" && fields[1] != "TCP6") {
    return Fail(error, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
  }
  out->v6 = fields[1] == "TCP6";
  if (!ParseAddress(fields[2], out->v6, &out->source_address) ||
      !ParseAddress(fields[3], out->v6, &out->destination_address)) {
    return Fail(error, "v1: an address is not of the protocol's family");
  }
  if (!ParsePort(fields[4], &out->source_port) || !ParsePort(fields[5], &out->destination_port)) {
    return Fail(error, "v1: a port is not a decimal number in 0..65535");
  }
  return ProxyParseStatus::kDone;
}

// Reads type-length-value records until `tlvs` is empty, handing each to `each`; false when a
// record does not fit or `each` refuses it.
template <typename Each>
bool ForEachTlv(CBS tlvs, Each each) {
  while (CBS_len(&tlvs) > 0) {
    uint8_t type = 0;
    CBS value;
    if (!CBS_get_u8(&tlvs, &type) || !CBS_get_u16_length_prefixed(&tlvs, &value)) {
      return false;
    }
    if (!each(type, value)) {
      return false;
    }
  }
  return true;
}

std::string Text(const CBS& value) {
  return std::string(reinterpret_cast<const char*>(CBS_data(&value)), CBS_len(&value));
}

ProxyParseStatus ParseV2(absl::Span<const uint8_t> input, ParsedProxyHeader* out,
                         std::string* error) {
  if (input.size() < kV2FixedSize) {
    return ProxyParseStatus::kNeedMore;
  }
  uint8_t version_command = input[12];
  uint8_t family = input[13];
  size_t length = (static_cast<size_t>(input[14]) << 8) | input[15];
  if ((version_command >> 4) != 2) {
    return Fail(error, "v2: version nibble is not 2");
  }
  uint8_t command = version_command & 0x0F;
  if (command > 1) {
    return Fail(error, "v2: command is neither LOCAL nor PROXY");
  }
  if (input.size() < kV2FixedSize + length) {
    return ProxyParseStatus::kNeedMore;
  }
  out->version = 2;
  out->size = kV2FixedSize + length;
  if (command == 0 || family == 0x00) {
    // LOCAL, or PROXY with AF_UNSPEC: the receiver uses the real endpoints and skips the block.
    out->local = true;
    return ProxyParseStatus::kDone;
  }
  size_t address_size = 0;
  if (family == 0x11) {
    address_size = 4;
  } else if (family == 0x21) {
    address_size = 16;
    out->v6 = true;
  } else {
    return Fail(error, "v2: family/protocol is not TCP over IPv4 or IPv6");
  }
  CBS block;
  CBS_init(&block, input.data() + kV2FixedSize, length);
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  if (!CBS_copy_bytes(&block, out->source_address.data(), address_size) ||
      !CBS_copy_bytes(&block, out->destination_address.data(), address_size) ||
      !CBS_get_u16(&block, &source_port) || !CBS_get_u16(&block, &destination_port)) {
    return Fail(error, "v2: length too short for the family's addresses");
  }
  out->source_port = source_port;
  out->destination_port = destination_port;
  std::string tlv_error;
  bool tlvs_ok = ForEachTlv(block, [&](uint8_t type, CBS value) {
    if (type == kPp2TypeAuthority) {
      if (out->authority.has_value()) {
        tlv_error = "v2: two PP2_TYPE_AUTHORITY";
        return false;
      }
      out->authority = Text(value);
    } else if (type == kPp2TypeSsl) {
      if (out->ssl.has_value()) {
        tlv_error = "v2: two PP2_TYPE_SSL";
        return false;
      }
      ParsedSslTlv ssl;
      if (!CBS_get_u8(&value, &ssl.client) || !CBS_get_u32(&value, &ssl.verify)) {
        tlv_error = "v2: PP2_TYPE_SSL shorter than client and verify";
        return false;
      }
      bool sub_ok = ForEachTlv(value, [&](uint8_t subtype, CBS sub) {
        std::optional<std::string>* field = subtype == kPp2SubtypeSslVersion  ? &ssl.version
                                            : subtype == kPp2SubtypeSslCipher ? &ssl.cipher
                                                                              : nullptr;
        if (field != nullptr) {
          if (field->has_value()) {
            return false;
          }
          *field = Text(sub);
        }
        return true;
      });
      if (!sub_ok) {
        tlv_error = "v2: PP2_TYPE_SSL sub-TLVs malformed or repeated";
        return false;
      }
      out->ssl = std::move(ssl);
    }
    return true;  // other types are skipped, as the specification asks of receivers
  });
  if (!tlvs_ok) {
    return Fail(error, tlv_error.empty() ? "v2: a TLV overruns the header" : tlv_error);
  }
  return ProxyParseStatus::kDone;
}

}  // namespace

ProxyParseStatus ParseProxyHeader(absl::Span<const uint8_t> input, ParsedProxyHeader* out,
                                  std::string* error) {
  *out = ParsedProxyHeader();
  absl::Span<const uint8_t> v1_prefix(reinterpret_cast<const uint8_t*>(kV1Prefix.data()),
                                      kV1Prefix.size());
  absl::Span<const uint8_t> v2_signature(kV2Signature, sizeof(kV2Signature));
  if (input.size() >= v2_signature.size() && IsPrefixOf(input, v2_signature)) {
    return ParseV2(input, out, error);
  }
  if (input.size() >= v1_prefix.size() && IsPrefixOf(input, v1_prefix)) {
    return ParseV1(input, out, error);
  }
  if (IsPrefixOf(input, v1_prefix) || IsPrefixOf(input, v2_signature)) {
    return ProxyParseStatus::kNeedMore;
  }
  return Fail(error, "neither the v1 prefix nor the v2 signature");
}

}  // namespace sidecar::testing
