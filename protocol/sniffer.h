// Sniffer: classifies the first bytes a client sends on the shared port (SPEC §3) as TLS,
// MongoDB wire protocol, HTTP, an SSLv2-style hello, or something else. Pure function over
// bytes; callable from any thread.
#ifndef SIDECAR_PROTOCOL_SNIFFER_H_
#define SIDECAR_PROTOCOL_SNIFFER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/types/span.h"

namespace sidecar::protocol {

// kSniffBytes is how many bytes the sniffer needs at most to decide (one MongoDB header).
inline constexpr size_t kSniffBytes = 16;

// SniffVerdict is what the first bytes are. Never reorder: values feed logs and metrics.
enum class SniffVerdict {
  kNeedMore,        // fewer than kSniffBytes and more than one class is still possible
  kTls,             // a TLS handshake record carrying a ClientHello
  kMongo,           // a MongoDB message header with a request opcode
  kHttp,            // an HTTP/1.x request line ("GET ", "POST", ...)
  kUnsupportedTls,  // an SSLv2-format (or SSLv2-compatible) CLIENT-HELLO
  kInvalid,         // none of the above
};

// Sniff classifies the first bytes of a connection per SPEC §3. Only the first kSniffBytes
// of first_bytes are looked at. It returns kNeedMore while fewer than kSniffBytes are
// present and no decision is possible yet; with kSniffBytes or more it never returns
// kNeedMore. A verdict given on a prefix never changes as more bytes arrive, so a caller
// may stop reading as soon as it has one.
//
// Rules, in order (MongoDB wins over TLS when both match, as SPEC §3 asks):
//   kMongo  bytes 0-3 a little-endian length in [kHeaderSize, kMaxMessageSize], bytes 8-11
//           (responseTo) 0 or -1, bytes 12-15 a request opcode (OP_MSG, OP_QUERY,
//           OP_COMPRESSED, OP_UPDATE, OP_INSERT, OP_GET_MORE, OP_DELETE, OP_KILL_CURSORS);
//   kTls    byte 0 = 0x16, byte 1 = 0x03, byte 2 in 0x00-0x04, bytes 3-4 (big-endian record
//           length) in [4, 16384 + 2048], byte 5 = 0x01 (ClientHello);
//   kHttp   an HTTP method followed by a space;
//   kUnsupportedTls  an SSLv2 record header (byte 0 has its high bit set), byte 2 = 0x01
//           (CLIENT-HELLO), bytes 3-4 = 0x0002 or 0x03XX; other bytes with the high bit
//           set are kInvalid;
//   kInvalid otherwise.
SniffVerdict Sniff(absl::Span<const uint8_t> first_bytes);

// SniffVerdictName is a stable lower_snake name ("need_more", "tls", "mongo", "http",
// "unsupported_tls", "invalid_first_bytes") for logs and metric labels.
std::string_view SniffVerdictName(SniffVerdict verdict);

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_SNIFFER_H_
