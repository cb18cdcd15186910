#include "protocol/sniffer.h"

#include <openssl/bytestring.h>

#include <algorithm>
#include <array>

#include "protocol/byte_reader.h"
#include "protocol/wire.h"

namespace sidecar::protocol {
namespace {

// Match is how a pattern relates to the bytes seen so far.
enum class Match { kNo, kMaybe, kYes };

bool IsRequestOpCode(int32_t op_code) {
  switch (static_cast<OpCode>(op_code)) {
    case OpCode::kMsg:
    case OpCode::kQuery:
    case OpCode::kCompressed:
    case OpCode::kUpdate:
    case OpCode::kInsert:
    case OpCode::kGetMore:
    case OpCode::kDelete:
    case OpCode::kKillCursors:
      return true;
    case OpCode::kReply:  // a server's answer, never a client's first message
      return false;
  }
  return false;
}

// MatchMongo checks each header field once all its bytes are present; a partial field can
// still become anything, so it keeps the answer at kMaybe.
Match MatchMongo(absl::Span<const uint8_t> bytes) {
  ByteReader reader(bytes);
  int32_t message_length;
  if (!reader.ReadI32(&message_length)) {
    return Match::kMaybe;
  }
  if (message_length < static_cast<int32_t>(kHeaderSize) || message_length > kMaxMessageSize) {
    return Match::kNo;
  }
  int32_t request_id;
  int32_t response_to;
  if (!reader.ReadI32(&request_id)) {
    return Match::kMaybe;
  }
  if (!reader.ReadI32(&response_to)) {
    // responseTo must end up 0 or -1: every byte seen so far must be all 0x00 or all 0xFF.
    absl::Span<const uint8_t> partial = reader.Rest();
    bool zeros = std::all_of(partial.begin(), partial.end(), [](uint8_t b) { return b == 0; });
    bool ones = std::all_of(partial.begin(), partial.end(), [](uint8_t b) { return b == 0xFF; });
    return (zeros || ones) ? Match::kMaybe : Match::kNo;
  }
  if (response_to != 0 && response_to != -1) {
    return Match::kNo;
  }
  int32_t op_code;
  if (!reader.ReadI32(&op_code)) {
    return Match::kMaybe;
  }
  return IsRequestOpCode(op_code) ? Match::kYes : Match::kNo;
}

// MatchTlsClientHello reads the TLS record header (RFC 8446 §5.1) and the handshake type
// through a CBS, so a short prefix is simply "not yet".
Match MatchTlsClientHello(absl::Span<const uint8_t> bytes) {
  // The largest TLSPlaintext/TLSCiphertext fragment a peer may send: 2^14 + 2048.
  constexpr uint16_t kMaxRecordLength = 16384 + 2048;
  CBS cbs;
  CBS_init(&cbs, bytes.data(), bytes.size());
  uint8_t content_type;
  if (!CBS_get_u8(&cbs, &content_type)) {
    return Match::kMaybe;
  }
  if (content_type != 0x16) {  // handshake
    return Match::kNo;
  }
  uint8_t major;
  if (!CBS_get_u8(&cbs, &major)) {
    return Match::kMaybe;
  }
  if (major != 0x03) {
    return Match::kNo;
  }
  uint8_t minor;
  if (!CBS_get_u8(&cbs, &minor)) {
    return Match::kMaybe;
  }
  if (minor > 0x04) {
    return Match::kNo;
  }
  uint16_t record_length;
  if (!CBS_get_u16(&cbs, &record_length)) {
    return Match::kMaybe;
  }
  if (record_length < 4 || record_length > kMaxRecordLength) {
    return Match::kNo;
  }
  uint8_t handshake_type;
  if (!CBS_get_u8(&cbs, &handshake_type)) {
    return Match::kMaybe;
  }
  return handshake_type == 0x01 ? Match::kYes : Match::kNo;  // client_hello
}

// MatchSslV2ClientHello recognises an SSLv2-format CLIENT-HELLO (RFC 6101 appendix E.2;
// also what old clients send to offer SSLv3/TLS "v2-compatibly"): a two-byte record header
// with the high bit set, message type 1 (CLIENT-HELLO), then the version, 0x0002 for SSLv2
// or 0x03XX. Other bytes with the high bit set are not TLS of any age: invalid_first_bytes.
Match MatchSslV2ClientHello(absl::Span<const uint8_t> bytes) {
  if (bytes.empty()) {
    return Match::kMaybe;
  }
  if ((bytes[0] & 0x80) == 0) {
    return Match::kNo;
  }
  if (bytes.size() < 3) {
    return Match::kMaybe;
  }
  if (bytes[2] != 0x01) {  // MSG-CLIENT-HELLO
    return Match::kNo;
  }
  if (bytes.size() < 5) {
    return bytes.size() == 4 && bytes[3] != 0x00 && bytes[3] != 0x03 ? Match::kNo : Match::kMaybe;
  }
  bool sslv2 = bytes[3] == 0x00 && bytes[4] == 0x02;
  bool v3_in_v2_format = bytes[3] == 0x03;
  return sslv2 || v3_in_v2_format ? Match::kYes : Match::kNo;
}

Match MatchHttp(absl::Span<const uint8_t> bytes) {
  static constexpr std::array<std::string_view, 9> kMethods = {
      "GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "};
  std::string_view seen(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  Match best = Match::kNo;
  for (std::string_view method : kMethods) {
    if (seen.size() >= method.size()) {
      if (seen.substr(0, method.size()) == method) {
        return Match::kYes;
      }
    } else if (method.substr(0, seen.size()) == seen) {
      best = Match::kMaybe;
    }
  }
  return best;
}

}  // namespace

SniffVerdict Sniff(absl::Span<const uint8_t> first_bytes) {
  absl::Span<const uint8_t> bytes = first_bytes.first(std::min(first_bytes.size(), kSniffBytes));
  // Precedence: a pattern that may still match holds the decision until it is settled, so
  // the verdict given on a prefix is the verdict the full 16 bytes would give.
  switch (MatchMongo(bytes)) {
    case Match::kYes:
      return SniffVerdict::kMongo;
    case Match::kMaybe:
      return SniffVerdict::kNeedMore;
    case Match::kNo:
      break;
  }
  switch (MatchTlsClientHello(bytes)) {
    case Match::kYes:
      return SniffVerdict::kTls;
    case Match::kMaybe:
      return SniffVerdict::kNeedMore;
    case Match::kNo:
      break;
  }
  switch (MatchHttp(bytes)) {
    case Match::kYes:
      return SniffVerdict::kHttp;
    case Match::kMaybe:
      // "OPTIONS " and "CONNECT " are 8 bytes: within kSniffBytes, so this always settles.
      return SniffVerdict::kNeedMore;
    case Match::kNo:
      break;
  }
  // Checked last because a MongoDB length byte may have the high bit too (a 200-byte
  // message starts 0xC8).
  switch (MatchSslV2ClientHello(bytes)) {
    case Match::kYes:
      return SniffVerdict::kUnsupportedTls;
    case Match::kMaybe:
      return SniffVerdict::kNeedMore;
    case Match::kNo:
      break;
  }
  return SniffVerdict::kInvalid;
}

std::string_view SniffVerdictName(SniffVerdict verdict) {
  switch (verdict) {
    case SniffVerdict::kNeedMore:
      return "need_more";
    case SniffVerdict::kTls:
      return "tls";
    case SniffVerdict::kMongo:
      return "mongo";
    case SniffVerdict::kHttp:
      return "http";
    case SniffVerdict::kUnsupportedTls:
      return "unsupported_tls";
    case SniffVerdict::kInvalid:
      return "invalid_first_bytes";
  }
  return "unknown";
}

}  // namespace sidecar::protocol
