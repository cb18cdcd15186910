#include "protocol/message_stream.h"

#include <algorithm>
#include <cstring>

#include "protocol/wire.h"

namespace sidecar::protocol {
namespace {

int32_t LoadI32(const uint8_t* p) {
  return static_cast<int32_t>(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                              static_cast<uint32_t>(p[2]) << 16 |
                              static_cast<uint32_t>(p[3]) << 24);
}

}  // namespace

bool MessageFramer::Next(absl::Span<const uint8_t>* bytes) {
  while (!lost_ && !bytes->empty()) {
    if (header_size_ == 0) {
      header_needed_ = kHeaderSize;
    }
    if (header_size_ < header_needed_) {
      size_t take = std::min(header_needed_ - header_size_, bytes->size());
      std::memcpy(header_.data() + header_size_, bytes->data(), take);
      header_size_ += take;
      bytes->remove_prefix(take);
      if (header_size_ < header_needed_) {
        return false;
      }
      if (header_needed_ == kHeaderSize) {
        int32_t length = LoadI32(header_.data());
        // The same bounds as FrameMessage: a length outside them is not MongoDB framing.
        if (length < static_cast<int32_t>(kHeaderSize) || length > kMaxMessageSize) {
          lost_ = true;
          return false;
        }
        op_code_ = LoadI32(header_.data() + 12);
        flag_bits_ = 0;
        body_left_ = static_cast<size_t>(length) - kHeaderSize;
        if (op_code_ == static_cast<int32_t>(OpCode::kMsg) && body_left_ >= 4) {
          // The flag bits say whether a reply follows (moreToCome): read them too.
          header_needed_ = kMsgHeaderSize;
          body_left_ -= 4;
          continue;
        }
      } else {
        flag_bits_ = static_cast<uint32_t>(LoadI32(header_.data() + kHeaderSize));
      }
    }
    size_t skip = std::min(body_left_, bytes->size());
    body_left_ -= skip;
    bytes->remove_prefix(skip);
    if (body_left_ == 0) {
      header_size_ = 0;
      return true;
    }
  }
  return false;
}

bool ExpectsReply(int32_t op_code, uint32_t flag_bits) {
  switch (static_cast<OpCode>(op_code)) {
    case OpCode::kMsg:
      return (flag_bits & kMsgMoreToCome) == 0;
    case OpCode::kQuery:
    case OpCode::kGetMore:
    case OpCode::kCompressed:
      return true;
    case OpCode::kInsert:
    case OpCode::kUpdate:
    case OpCode::kDelete:
    case OpCode::kKillCursors:
    case OpCode::kReply:
      return false;
  }
  // An opcode mongod does not know: it closes the connection rather than answer.
  return false;
}

void InFlightTracker::OnRequestBytes(absl::Span<const uint8_t> bytes) {
  while (requests_.Next(&bytes)) {
    if (ExpectsReply(requests_.op_code(), requests_.flag_bits())) {
      ++awaiting_replies_;
      between_exhaust_replies_ = false;
    }
  }
}

void InFlightTracker::OnReplyBytes(absl::Span<const uint8_t> bytes) {
  while (replies_.Next(&bytes)) {
    bool more_to_come = replies_.op_code() == static_cast<int32_t>(OpCode::kMsg) &&
                        (replies_.flag_bits() & kMsgMoreToCome) != 0;
    if (more_to_come) {
      between_exhaust_replies_ = true;
    } else {
      between_exhaust_replies_ = false;
      if (awaiting_replies_ > 0) {
        --awaiting_replies_;
      }
    }
  }
}

}  // namespace sidecar::protocol
