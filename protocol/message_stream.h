// Following a MongoDB conversation by its framing alone, to know whether a request is in
// flight (SPEC §10: at SIGTERM, connections idle between requests close at once; a request
// in flight gets up to limits.drainSeconds for its reply and its connection then closes at
// a message boundary).
//
// MessageFramer walks one direction of a byte stream from message to message by the length
// prefixes: it looks at the header of each message (16 bytes; 20 for OP_MSG, whose flag bits
// follow the header) and skips the rest arithmetically. At most those 20 bytes of a message
// are copied, into a fixed array, and nothing is allocated: it runs on every read of the data
// path. InFlightTracker pairs the two directions of one connection.
//
// Both are plain values, owned by one connection and called from its loop only.
#ifndef SIDECAR_PROTOCOL_MESSAGE_STREAM_H_
#define SIDECAR_PROTOCOL_MESSAGE_STREAM_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/types/span.h"

namespace sidecar::protocol {

// MessageFramer: one direction of a MongoDB byte stream.
class MessageFramer {
 public:
  // Next consumes bytes from the front of `*bytes` up to the end of the current message.
  // Returns true when a message completed (its opcode and OP_MSG flag bits are then in
  // op_code() and flag_bits(); `*bytes` holds what follows it); false when `*bytes` ran out
  // first (need more: not an error) or the framing is lost (lost()). Once lost, nothing more
  // is consumed.
  bool Next(absl::Span<const uint8_t>* bytes);

  // at_boundary: the stream is between two messages (no byte of a next one seen yet).
  // False once lost.
  bool at_boundary() const { return !lost_ && header_size_ == 0; }
  // lost: a length outside 16 bytes..48 MB (as FrameMessage rejects) was read; from then on
  // message boundaries are unknown.
  bool lost() const { return lost_; }
  // The last completed message: its opcode, and its OP_MSG flag bits (0 for other opcodes).
  int32_t op_code() const { return op_code_; }
  uint32_t flag_bits() const { return flag_bits_; }

 private:
  static constexpr size_t kMsgHeaderSize = 20;  // header + OP_MSG flagBits

  std::array<uint8_t, kMsgHeaderSize> header_{};
  size_t header_size_ = 0;    // header bytes of the current message seen so far
  size_t header_needed_ = 0;  // 16, or 20 once the opcode says OP_MSG
  size_t body_left_ = 0;      // bytes of the current message after its header still to come
  int32_t op_code_ = 0;
  uint32_t flag_bits_ = 0;
  bool lost_ = false;
};

// InFlightTracker follows both directions of a connection: requests, the bytes from the side
// that connected (the MongoDB client, or the local mongod for egress), and replies, the bytes
// from the side we dialled. Both are fed as they pass through, before being forwarded.
//
// A request is in flight from the first byte of a client message until the last byte of its
// reply. What needs no reply ends with its own last byte: an OP_MSG with moreToCome (a
// fire-and-forget write) and the legacy write opcodes (OP_INSERT, OP_UPDATE, OP_DELETE,
// OP_KILL_CURSORS). Every other request (OP_MSG, OP_QUERY, OP_GET_MORE, OP_COMPRESSED)
// expects one reply.
//
// Exhaust streams: a reply with moreToCome says that more replies to the same request will
// follow, unasked; the last one comes without the flag. Between two such replies the
// connection counts as idle. Each reply is a whole answer, and the wait for the next one is
// open-ended: the awaitable hello that drivers keep open on their monitoring connection
// (a reply every maxAwaitTimeMS, 10 s) is such a stream, and counting it as busy would
// hold every restart for the whole drain window, which is what this tracker exists to
// avoid. An exhaust cursor closed between two batches sees a network error at a message
// boundary, as when mongod itself shuts down.
//
// OP_COMPRESSED hides the flag bits of what it wraps (unless we decompressed, which this
// does not do): a compressed request is taken to expect a reply and a compressed reply to
// end the request. Drivers compress neither hello nor fire-and-forget writes in practice;
// when one does, the connection looks busy until the drain deadline, never past it.
class InFlightTracker {
 public:
  void OnRequestBytes(absl::Span<const uint8_t> bytes);
  void OnReplyBytes(absl::Span<const uint8_t> bytes);

  // idle: no request in flight (see above), both directions at a message boundary, and the
  // framing followed in both.
  bool idle() const {
    return at_boundary() && (awaiting_replies_ == 0 || between_exhaust_replies_);
  }
  // at_boundary: both directions are between messages (and framing is followed).
  bool at_boundary() const { return requests_.at_boundary() && replies_.at_boundary(); }
  // lost: the framing of either direction could not be followed; boundaries are unknown.
  bool lost() const { return requests_.lost() || replies_.lost(); }
  // awaiting_replies: requests forwarded whose last reply has not come back yet.
  uint64_t awaiting_replies() const { return awaiting_replies_; }

 private:
  MessageFramer requests_;
  MessageFramer replies_;
  uint64_t awaiting_replies_ = 0;
  bool between_exhaust_replies_ = false;
};

// ExpectsReply: whether a request with this opcode and OP_MSG flag bits is answered.
bool ExpectsReply(int32_t op_code, uint32_t flag_bits);

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_MESSAGE_STREAM_H_
