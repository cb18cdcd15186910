// Fuzzes FrameMessage and the whole-message parsers. A framed message goes through every
// parser; an OP_MSG that parses (without checksum, body section first, as the builder
// writes it) must be rebuilt byte for byte.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "protocol/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecar::protocol;
  absl::Span<const uint8_t> input(data, size);
  Frame frame = FrameMessage(input);
  if (frame.status == ParseStatus::kError) {
    return 0;
  }
  if (frame.status == ParseStatus::kNeedMore) {
    // Still need more: then the whole input cannot be a message either.
    (void)ParseOpMsg(input);
    return 0;
  }
  if (frame.size > size || frame.size < kHeaderSize) {
    std::abort();
  }
  absl::Span<const uint8_t> message = input.first(frame.size);
  (void)ParseOpQuery(message);
  (void)ParseOpReply(message);
  (void)ParseOpCompressed(message);
  absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
  // Sections may come in any order on the wire; the builder always writes the body first.
  bool body_first = message.size() > 20 && message[20] == 0;
  if (msg.ok() && (msg->flag_bits & kMsgChecksumPresent) == 0 && body_first) {
    std::vector<uint8_t> rebuilt = BuildOpMsgWithSequences(
        msg->header.request_id, msg->header.response_to, msg->body, msg->sequences, msg->flag_bits);
    if (rebuilt != std::vector<uint8_t>(message.begin(), message.end())) {
      std::abort();
    }
  }
  return 0;
}
