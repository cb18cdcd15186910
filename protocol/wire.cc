#include "protocol/wire.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "protocol/bson.h"
#include "protocol/byte_reader.h"

namespace sidecar::protocol {
namespace {

// kMsgRequiredBitsMask: OP_MSG's bits 0-15 must be understood by the receiver.
constexpr uint32_t kMsgRequiredBitsMask = 0xFFFF;
constexpr uint32_t kMsgKnownRequiredBits = kMsgChecksumPresent | kMsgMoreToCome;

absl::Status Invalid(absl::string_view op, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", op, ": ", what));
}

void ReadHeader(ByteReader& reader, MsgHeader* header) {
  reader.ReadI32(&header->message_length);
  reader.ReadI32(&header->request_id);
  reader.ReadI32(&header->response_to);
  reader.ReadI32(&header->op_code);
}

// CheckWhole checks the header of a whole message and leaves the reader after it.
absl::Status CheckWhole(ByteReader& reader, OpCode expected, absl::string_view op,
                        MsgHeader* header) {
  if (reader.remaining() < kHeaderSize) {
    return Invalid(op, "shorter than a header");
  }
  size_t size = reader.remaining();
  ReadHeader(reader, header);
  if (header->message_length < 0 || static_cast<size_t>(header->message_length) != size) {
    return Invalid(
        op, absl::StrCat("messageLength ", header->message_length, " but ", size, " bytes given"));
  }
  if (header->message_length > kMaxMessageSize) {
    return Invalid(op, "larger than maxMessageSizeBytes");
  }
  if (header->op_code != static_cast<int32_t>(expected)) {
    return Invalid(op, absl::StrCat("opCode is ", header->op_code));
  }
  return absl::OkStatus();
}

// ReadDocument reads one validated BSON document.
absl::Status ReadDocument(ByteReader& reader, absl::string_view op, absl::string_view what,
                          absl::Span<const uint8_t>* out) {
  absl::StatusOr<BsonView> view = BsonView::ParsePrefix(reader.Rest());
  if (!view.ok()) {
    return Invalid(op, absl::StrCat(what, ": ", view.status().message()));
  }
  reader.ReadBytes(view->bytes().size(), out);
  return absl::OkStatus();
}

void AppendHeader(std::vector<uint8_t>& out, int32_t request_id, int32_t response_to,
                  OpCode op_code) {
  AppendLittleEndian<int32_t>(out, 0);  // messageLength, set by FinishMessage
  AppendLittleEndian(out, request_id);
  AppendLittleEndian(out, response_to);
  AppendLittleEndian(out, static_cast<int32_t>(op_code));
}

void FinishMessage(std::vector<uint8_t>& out) {
  StoreLittleEndianI32(out, 0, static_cast<int32_t>(out.size()));
}

}  // namespace

bool IsKnownOpCode(int32_t op_code) { return OpCodeName(op_code) != "unknown"; }

std::string_view OpCodeName(int32_t op_code) {
  switch (static_cast<OpCode>(op_code)) {
    case OpCode::kReply:
      return "OP_REPLY";
    case OpCode::kUpdate:
      return "OP_UPDATE";
    case OpCode::kInsert:
      return "OP_INSERT";
    case OpCode::kQuery:
      return "OP_QUERY";
    case OpCode::kGetMore:
      return "OP_GET_MORE";
    case OpCode::kDelete:
      return "OP_DELETE";
    case OpCode::kKillCursors:
      return "OP_KILL_CURSORS";
    case OpCode::kCompressed:
      return "OP_COMPRESSED";
    case OpCode::kMsg:
      return "OP_MSG";
  }
  return "unknown";
}

Frame FrameMessage(absl::Span<const uint8_t> stream) {
  Frame frame;
  ByteReader reader(stream);
  int32_t message_length;
  if (!reader.ReadI32(&message_length)) {
    return frame;  // kNeedMore
  }
  if (message_length < static_cast<int32_t>(kHeaderSize)) {
    frame.status = ParseStatus::kError;
    frame.error = "messageLength smaller than a message header";
    return frame;
  }
  if (message_length > kMaxMessageSize) {
    frame.status = ParseStatus::kError;
    frame.error = "messageLength larger than maxMessageSizeBytes";
    return frame;
  }
  if (stream.size() < static_cast<size_t>(message_length)) {
    return frame;  // kNeedMore
  }
  ByteReader header_reader(stream);
  ReadHeader(header_reader, &frame.header);
  frame.status = ParseStatus::kDone;
  frame.size = static_cast<size_t>(message_length);
  return frame;
}

absl::StatusOr<OpMsg> ParseOpMsg(absl::Span<const uint8_t> message) {
  constexpr char kOp[] = "OP_MSG";
  ByteReader reader(message);
  OpMsg msg;
  if (absl::Status status = CheckWhole(reader, OpCode::kMsg, kOp, &msg.header); !status.ok()) {
    return status;
  }
  if (!reader.ReadU32(&msg.flag_bits)) {
    return Invalid(kOp, "no flagBits");
  }
  if ((msg.flag_bits & kMsgRequiredBitsMask & ~kMsgKnownRequiredBits) != 0) {
    return Invalid(kOp, absl::StrCat("unknown required flag bits in ", msg.flag_bits));
  }
  absl::Span<const uint8_t> sections = reader.Rest();
  if ((msg.flag_bits & kMsgChecksumPresent) != 0) {
    if (sections.size() < 4) {
      return Invalid(kOp, "no room for the checksum");
    }
    sections = sections.first(sections.size() - 4);
  }
  ByteReader sections_reader(sections);
  bool have_body = false;
  while (!sections_reader.empty()) {
    uint8_t kind;
    sections_reader.ReadU8(&kind);
    if (kind == 0) {
      if (have_body) {
        return Invalid(kOp, "more than one body section");
      }
      if (absl::Status status = ReadDocument(sections_reader, kOp, "body", &msg.body);
          !status.ok()) {
        return status;
      }
      have_body = true;
    } else if (kind == 1) {
      // int32 size (counting itself), C-string identifier, then documents to the end.
      int32_t size;
      absl::Span<const uint8_t> payload;
      if (!sections_reader.ReadI32(&size) || size < 5 ||
          !sections_reader.ReadBytes(static_cast<size_t>(size) - 4, &payload)) {
        return Invalid(kOp, "bad document sequence size");
      }
      ByteReader sequence_reader(payload);
      DocumentSequence sequence;
      if (!sequence_reader.ReadCString(&sequence.identifier)) {
        return Invalid(kOp, "bad document sequence identifier");
      }
      while (!sequence_reader.empty()) {
        absl::Span<const uint8_t> document;
        if (absl::Status status =
                ReadDocument(sequence_reader, kOp, "document sequence", &document);
            !status.ok()) {
          return status;
        }
        sequence.documents.push_back(document);
      }
      msg.sequences.push_back(std::move(sequence));
    } else {
      return Invalid(kOp, absl::StrCat("unknown section kind ", kind));
    }
  }
  if (!have_body) {
    return Invalid(kOp, "no body section");
  }
  return msg;
}

absl::StatusOr<OpQuery> ParseOpQuery(absl::Span<const uint8_t> message) {
  constexpr char kOp[] = "OP_QUERY";
  ByteReader reader(message);
  OpQuery query;
  if (absl::Status status = CheckWhole(reader, OpCode::kQuery, kOp, &query.header); !status.ok()) {
    return status;
  }
  if (!reader.ReadI32(&query.flags) || !reader.ReadCString(&query.full_collection_name) ||
      !reader.ReadI32(&query.number_to_skip) || !reader.ReadI32(&query.number_to_return)) {
    return Invalid(kOp, "truncated fields");
  }
  if (absl::Status status = ReadDocument(reader, kOp, "query", &query.query); !status.ok()) {
    return status;
  }
  if (!reader.empty()) {
    if (absl::Status status =
            ReadDocument(reader, kOp, "returnFieldsSelector", &query.return_fields_selector);
        !status.ok()) {
      return status;
    }
  }
  if (!reader.empty()) {
    return Invalid(kOp, "bytes after returnFieldsSelector");
  }
  return query;
}

absl::StatusOr<OpReply> ParseOpReply(absl::Span<const uint8_t> message) {
  constexpr char kOp[] = "OP_REPLY";
  ByteReader reader(message);
  OpReply reply;
  if (absl::Status status = CheckWhole(reader, OpCode::kReply, kOp, &reply.header); !status.ok()) {
    return status;
  }
  if (!reader.ReadI32(&reply.response_flags) || !reader.ReadI64(&reply.cursor_id) ||
      !reader.ReadI32(&reply.starting_from) || !reader.ReadI32(&reply.number_returned)) {
    return Invalid(kOp, "truncated fields");
  }
  if (reply.number_returned < 0) {
    return Invalid(kOp, "negative numberReturned");
  }
  while (!reader.empty()) {
    absl::Span<const uint8_t> document;
    if (absl::Status status = ReadDocument(reader, kOp, "document", &document); !status.ok()) {
      return status;
    }
    reply.documents.push_back(document);
  }
  if (reply.documents.size() != static_cast<size_t>(reply.number_returned)) {
    return Invalid(kOp, absl::StrCat("numberReturned ", reply.number_returned, " but ",
                                     reply.documents.size(), " documents"));
  }
  return reply;
}

absl::StatusOr<OpCompressed> ParseOpCompressed(absl::Span<const uint8_t> message) {
  constexpr char kOp[] = "OP_COMPRESSED";
  ByteReader reader(message);
  OpCompressed compressed;
  if (absl::Status status = CheckWhole(reader, OpCode::kCompressed, kOp, &compressed.header);
      !status.ok()) {
    return status;
  }
  if (!reader.ReadI32(&compressed.original_op_code) ||
      !reader.ReadI32(&compressed.uncompressed_size) || !reader.ReadU8(&compressed.compressor_id)) {
    return Invalid(kOp, "truncated fields");
  }
  if (compressed.uncompressed_size < 0 ||
      compressed.uncompressed_size > kMaxMessageSize - static_cast<int32_t>(kHeaderSize)) {
    return Invalid(kOp, "impossible uncompressedSize");
  }
  compressed.compressed = reader.Rest();
  return compressed;
}

std::vector<uint8_t> BuildOpMsg(int32_t request_id, int32_t response_to,
                                absl::Span<const uint8_t> body, uint32_t flag_bits) {
  return BuildOpMsgWithSequences(request_id, response_to, body, {}, flag_bits);
}

std::vector<uint8_t> BuildOpMsgWithSequences(int32_t request_id, int32_t response_to,
                                             absl::Span<const uint8_t> body,
                                             const std::vector<DocumentSequence>& sequences,
                                             uint32_t flag_bits) {
  // A checksum is never written: the flag would promise bytes we do not compute.
  flag_bits &= ~kMsgChecksumPresent;
  std::vector<uint8_t> out;
  AppendHeader(out, request_id, response_to, OpCode::kMsg);
  AppendLittleEndian(out, flag_bits);
  out.push_back(0);
  out.insert(out.end(), body.begin(), body.end());
  for (const DocumentSequence& sequence : sequences) {
    out.push_back(1);
    size_t size_at = out.size();
    AppendLittleEndian<int32_t>(out, 0);
    out.insert(out.end(), sequence.identifier.begin(), sequence.identifier.end());
    out.push_back(0);
    for (absl::Span<const uint8_t> document : sequence.documents) {
      out.insert(out.end(), document.begin(), document.end());
    }
    StoreLittleEndianI32(out, size_at, static_cast<int32_t>(out.size() - size_at));
  }
  FinishMessage(out);
  return out;
}

std::vector<uint8_t> BuildOpReply(int32_t request_id, int32_t response_to,
                                  absl::Span<const uint8_t> document, int32_t response_flags,
                                  int64_t cursor_id) {
  std::vector<uint8_t> out;
  AppendHeader(out, request_id, response_to, OpCode::kReply);
  AppendLittleEndian(out, response_flags);
  AppendLittleEndian(out, cursor_id);
  AppendLittleEndian<int32_t>(out, 0);  // startingFrom
  AppendLittleEndian<int32_t>(out, 1);  // numberReturned
  out.insert(out.end(), document.begin(), document.end());
  FinishMessage(out);
  return out;
}

std::vector<uint8_t> BuildOpQuery(int32_t request_id, std::string_view full_collection_name,
                                  absl::Span<const uint8_t> query, int32_t number_to_return) {
  std::vector<uint8_t> out;
  AppendHeader(out, request_id, 0, OpCode::kQuery);
  AppendLittleEndian<int32_t>(out, 0);  // flags
  out.insert(out.end(), full_collection_name.begin(), full_collection_name.end());
  out.push_back(0);
  AppendLittleEndian<int32_t>(out, 0);  // numberToSkip
  AppendLittleEndian(out, number_to_return);
  out.insert(out.end(), query.begin(), query.end());
  FinishMessage(out);
  return out;
}

}  // namespace sidecar::protocol
