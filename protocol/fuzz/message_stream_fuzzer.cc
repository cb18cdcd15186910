// Fuzzes InFlightTracker and MessageFramer. The first byte of the input says how the rest is
// split between the two directions and into reads; the checks: the framer consumes whole
// reads, and feeding a stream in one read or one byte at a time ends in the same state.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "protocol/message_stream.h"

namespace {

struct Outcome {
  int messages = 0;
  bool at_boundary = false;
  bool lost = false;
  int32_t op_code = 0;
  uint32_t flag_bits = 0;
};

Outcome FrameAll(absl::Span<const uint8_t> stream, size_t read_size) {
  sidecar::protocol::MessageFramer framer;
  Outcome outcome;
  while (!stream.empty()) {
    absl::Span<const uint8_t> read = stream.first(std::min(read_size, stream.size()));
    stream.remove_prefix(read.size());
    while (framer.Next(&read)) {
      ++outcome.messages;
      outcome.op_code = framer.op_code();
      outcome.flag_bits = framer.flag_bits();
    }
    if (!read.empty() && !framer.lost()) {
      std::abort();  // a read is consumed whole unless the framing is lost
    }
  }
  outcome.at_boundary = framer.at_boundary();
  outcome.lost = framer.lost();
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  absl::Span<const uint8_t> input(data + 1, size - 1);
  size_t split = size > 1 ? data[0] % size : 0;
  Outcome whole = FrameAll(input, input.size() + 1);
  Outcome bytewise = FrameAll(input, 1);
  if (whole.messages != bytewise.messages || whole.at_boundary != bytewise.at_boundary ||
      whole.lost != bytewise.lost || whole.op_code != bytewise.op_code ||
      whole.flag_bits != bytewise.flag_bits) {
    std::abort();
  }
  sidecar::protocol::InFlightTracker tracker;
  tracker.OnRequestBytes(input.first(std::min(split, input.size())));
  tracker.OnReplyBytes(input.subspan(std::min(split, input.size())));
  if (tracker.idle() && (tracker.lost() || !tracker.at_boundary())) {
    std::abort();
  }
  return 0;
}
