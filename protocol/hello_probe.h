// The sidecar's own hello to mongod (SPEC §8), as bytes: the request the upstream probe sends
// and what it reads from the reply. Pure bytes in, bytes out; the probe's sockets, timers and
// retries are in proxy/upstream_probe.
#ifndef SIDECAR_PROTOCOL_HELLO_PROBE_H_
#define SIDECAR_PROTOCOL_HELLO_PROBE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sidecar::protocol {

// HelloSummary is what the sidecar uses of mongod's hello reply.
struct HelloSummary {
  std::string set_name;            // "" for a standalone
  std::string me;                  // this member's advertised host:port, "" if absent
  std::vector<std::string> hosts;  // hosts, passives and arbiters, in that order
  bool writable_primary = false;
  int32_t max_wire_version = 0;
};

// BuildHelloProbe is the OP_MSG {hello: 1, $db: "admin"} the probe sends.
std::vector<uint8_t> BuildHelloProbe(int32_t request_id);

// ParseHelloReply reads one whole reply message (OP_MSG, or OP_REPLY for very old servers).
// An `ok` other than 1 is an error carrying mongod's errmsg. Any bytes are safe input: a
// message that is truncated, oversized or not a reply is an error, never a crash.
absl::StatusOr<HelloSummary> ParseHelloReply(absl::Span<const uint8_t> message);

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_HELLO_PROBE_H_
