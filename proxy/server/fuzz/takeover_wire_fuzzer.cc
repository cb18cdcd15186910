// Fuzzes the takeover's message decoding (takeover_wire.h), which reads what another process
// sent: any packet decodes or is refused with an error; a decoded message encodes back to a
// packet that decodes to the same message; a decoded state survives its own round trip; a
// "sockets" message is accepted only with as many descriptors as it names.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/server/takeover_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecar::proxy;
  std::string_view packet(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Message> message = DecodeMessage(packet);
  if (!message.ok()) {
    return 0;
  }
  absl::StatusOr<Message> again = DecodeMessage(EncodeMessage(*message));
  if (!again.ok() || again->verb != message->verb || again->lines != message->lines) {
    std::abort();
  }
  if (absl::StatusOr<HandoverState> state = DecodeState(*message); state.ok()) {
    absl::StatusOr<Message> encoded = DecodeMessage(EncodeState(*state));
    absl::StatusOr<HandoverState> back =
        encoded.ok() ? DecodeState(*encoded) : absl::StatusOr<HandoverState>(encoded.status());
    if (!back.ok() || back->mode != state->mode || back->mode_source != state->mode_source ||
        back->restarts != state->restarts || back->pid != state->pid ||
        back->mode_flag != state->mode_flag || back->version != state->version) {
      std::abort();
    }
  }
  size_t named = message->lines.size();
  if (DecodeSockets(*message, named + 1).ok()) {
    std::abort();
  }
  if (absl::StatusOr<std::vector<SocketLabel>> labels = DecodeSockets(*message, named);
      labels.ok() && labels->size() != named) {
    std::abort();
  }
  return 0;
}
