// Fuzzes InspectFirstRequest (the sidecar's only look into a client's plaintext) and the
// error replies built from what it found; also SanitizeLabel on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "protocol/error_reply.h"
#include "protocol/hello.h"
#include "protocol/wire.h"

namespace {

bool IsCleanLabel(std::string_view label, size_t max_bytes) {
  if (label.size() > max_bytes) {
    return false;
  }
  for (char c : label) {
    uint8_t byte = static_cast<uint8_t>(c);
    if (byte < 0x20 || byte == 0x7F) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecar::protocol;
  absl::Span<const uint8_t> input(data, size);
  size_t max_bytes = size > 0 ? data[0] : 128;
  if (!IsCleanLabel(
          SanitizeLabel(std::string_view(reinterpret_cast<const char*>(data), size), max_bytes),
          max_bytes)) {
    std::abort();
  }
  InspectResult result = InspectFirstRequest(input);
  if (result.status != ParseStatus::kDone) {
    return 0;
  }
  if (result.consumed > size || !IsCleanLabel(result.request.metadata.application, 128) ||
      !IsCleanLabel(result.request.metadata.driver, 128)) {
    std::abort();
  }
  std::vector<uint8_t> reply = BuildUpstreamUnavailableReply(result.request, "connection refused");
  bool decoded =
      result.request.op_code == OpCode::kQuery ? ParseOpReply(reply).ok() : ParseOpMsg(reply).ok();
  if (!decoded) {
    std::abort();
  }
  return 0;
}
