// Fuzzes ParseHelloReply, the sidecar's read of mongod's answer to its hello probe: any bytes
// mongod (or whatever listens on net.upstream) sends back. Beyond "no crash": what a parsed
// summary holds comes from the input, so it is never larger than the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "protocol/hello_probe.h"
#include "protocol/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecar::protocol;
  absl::Span<const uint8_t> input(data, size);
  if (size >= 4) {
    // The probe itself, for any request id, is a well-formed OP_MSG.
    int32_t request_id;
    std::memcpy(&request_id, data, sizeof(request_id));
    if (!ParseOpMsg(BuildHelloProbe(request_id)).ok()) {
      std::abort();
    }
  }
  absl::StatusOr<HelloSummary> summary = ParseHelloReply(input);
  if (!summary.ok()) {
    return 0;
  }
  size_t held = summary->set_name.size() + summary->me.size();
  for (const auto& host : summary->hosts) {
    held += host.size();
  }
  if (held > size) {
    std::abort();
  }
  return 0;
}
