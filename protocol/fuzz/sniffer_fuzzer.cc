// Fuzzes Sniff: it must never read past its input, must decide once it has kSniffBytes, and
// a verdict given on a prefix must be the verdict of the longer input (callers stop reading
// as soon as they have one).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "protocol/sniffer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sidecar::protocol::Sniff;
  using sidecar::protocol::SniffVerdict;
  absl::Span<const uint8_t> input(data, size);
  SniffVerdict full = Sniff(input);
  if (size >= sidecar::protocol::kSniffBytes && full == SniffVerdict::kNeedMore) {
    std::abort();
  }
  for (size_t n = 0; n <= size && n <= sidecar::protocol::kSniffBytes; ++n) {
    SniffVerdict partial = Sniff(input.first(n));
    if (partial != SniffVerdict::kNeedMore && partial != full) {
      std::abort();
    }
  }
  return 0;
}
