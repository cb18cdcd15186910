// MongoDB wire protocol (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/):
// framing of a byte stream into messages, parsers of one whole message, and builders.
//
// Parsers borrow: every span and string_view in a result points into the input, which the
// caller keeps alive. All functions are pure and callable from any thread.
#ifndef SIDECAR_PROTOCOL_WIRE_H_
#define SIDECAR_PROTOCOL_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sidecar::protocol {

enum class OpCode : int32_t {
  kReply = 1,
  kUpdate = 2001,
  kInsert = 2002,
  kQuery = 2004,
  kGetMore = 2005,
  kDelete = 2006,
  kKillCursors = 2007,
  kCompressed = 2012,
  kMsg = 2013,
};

// IsKnownOpCode: op_code is one of OpCode's values.
bool IsKnownOpCode(int32_t op_code);
// OpCodeName: "OP_MSG", "OP_QUERY", ...; "unknown" otherwise.
std::string_view OpCodeName(int32_t op_code);

inline constexpr size_t kHeaderSize = 16;
inline constexpr int32_t kMaxMessageSize = 48 * 1000 * 1000;  // as mongod's maxMessageSizeBytes

struct MsgHeader {
  int32_t message_length;
  int32_t request_id;
  int32_t response_to;
  int32_t op_code;
};

enum class ParseStatus { kNeedMore, kDone, kError };

// FrameMessage looks at the start of a byte stream: kNeedMore until the whole message is
// present; kDone with its header and size (= message_length, the bytes to consume); kError
// with a reason (a static string) when the length is below kHeaderSize or above
// kMaxMessageSize, which is known from the first 4 bytes. The opcode is not checked.
struct Frame {
  ParseStatus status = ParseStatus::kNeedMore;
  MsgHeader header = {};
  size_t size = 0;
  std::string_view error;
};
Frame FrameMessage(absl::Span<const uint8_t> stream);

// OP_MSG flag bits (the low 16 are "required": unknown ones there must fail the parse).
inline constexpr uint32_t kMsgChecksumPresent = 1u << 0;
inline constexpr uint32_t kMsgMoreToCome = 1u << 1;
inline constexpr uint32_t kMsgExhaustAllowed = 1u << 16;

// DocumentSequence is a kind-1 section of OP_MSG: an identifier such as "documents" and
// the documents that follow it, each a validated BSON document.
struct DocumentSequence {
  std::string_view identifier;
  std::vector<absl::Span<const uint8_t>> documents;
};

// OpMsg: body is the one kind-0 section (validated BSON). With kMsgChecksumPresent the
// trailing CRC-32C is excluded from the sections but not verified.
struct OpMsg {
  uint32_t flag_bits;
  absl::Span<const uint8_t> body;
  std::vector<DocumentSequence> sequences;
  MsgHeader header = {};  // the message header, as read
};

// The parsers take one whole message, header included (message_length must equal the span
// size and the opcode must be theirs), and return InvalidArgument for anything malformed.
absl::StatusOr<OpMsg> ParseOpMsg(absl::Span<const uint8_t> message);

struct OpQuery {
  int32_t flags;
  std::string_view full_collection_name;  // e.g. "admin.$cmd"
  int32_t number_to_skip;
  int32_t number_to_return;
  absl::Span<const uint8_t> query;                   // validated BSON
  absl::Span<const uint8_t> return_fields_selector;  // validated BSON, or empty when absent
  MsgHeader header = {};                             // the message header, as read
};
absl::StatusOr<OpQuery> ParseOpQuery(absl::Span<const uint8_t> message);

struct OpReply {
  int32_t response_flags;
  int64_t cursor_id;
  int32_t starting_from;
  int32_t number_returned;
  std::vector<absl::Span<const uint8_t>> documents;  // number_returned validated documents
  MsgHeader header = {};                             // the message header, as read
};
absl::StatusOr<OpReply> ParseOpReply(absl::Span<const uint8_t> message);

struct OpCompressed {
  int32_t original_op_code;
  int32_t uncompressed_size;
  uint8_t compressor_id;  // 0 noop, 1 snappy, 2 zlib, 3 zstd
  absl::Span<const uint8_t> compressed;
  MsgHeader header = {};  // the message header, as read
};
absl::StatusOr<OpCompressed> ParseOpCompressed(absl::Span<const uint8_t> message);

// Builders return a whole message with its header. body/document/query must be a complete
// BSON document (they are copied, not checked).
std::vector<uint8_t> BuildOpMsg(int32_t request_id, int32_t response_to,
                                absl::Span<const uint8_t> body, uint32_t flag_bits = 0);
// BuildOpMsgWithSequences adds kind-1 sections after the body.
std::vector<uint8_t> BuildOpMsgWithSequences(int32_t request_id, int32_t response_to,
                                             absl::Span<const uint8_t> body,
                                             const std::vector<DocumentSequence>& sequences,
                                             uint32_t flag_bits = 0);
std::vector<uint8_t> BuildOpReply(int32_t request_id, int32_t response_to,
                                  absl::Span<const uint8_t> document, int32_t response_flags = 0,
                                  int64_t cursor_id = 0);
std::vector<uint8_t> BuildOpQuery(int32_t request_id, std::string_view full_collection_name,
                                  absl::Span<const uint8_t> query, int32_t number_to_return = -1);

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_WIRE_H_
