// Hello inspection: what the sidecar needs from a client's FIRST message, to answer it with
// a readable rejection (SPEC §4) and to label the connection in metrics and logs (SPEC §6,
// §7). Reads only; never modifies the stream. Pure functions, callable from any thread.
#ifndef SIDECAR_PROTOCOL_HELLO_H_
#define SIDECAR_PROTOCOL_HELLO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/types/span.h"
#include "protocol/wire.h"

namespace sidecar::protocol {

// HelloMetadata is the client's self-description from the hello's `client` document.
struct HelloMetadata {
  std::string application;       // client.application.name, sanitised; "" when absent
  std::string driver;            // "name version" from client.driver, sanitised; "" when absent
  bool internal_client = false;  // the hello carries internalClient (a cluster member)
};

// RequestInfo: the first message's opcode and requestID (to answer it), whether it is a
// hello (hello / isMaster / ismaster, via OP_MSG or OP_QUERY on "<db>.$cmd"), and metadata.
struct RequestInfo {
  OpCode op_code = OpCode::kMsg;
  int32_t request_id = 0;
  bool is_hello = false;
  HelloMetadata metadata;
  std::string command;  // the command name (first key of the command document), sanitised
};

struct InspectResult {
  ParseStatus status = ParseStatus::kNeedMore;
  size_t consumed = 0;  // with kDone: the size of the first message (bytes are not removed)
  RequestInfo request;
  std::string_view error;  // with kError: a static reason for logs
};

// InspectFirstRequest reads (never modifies) the start of a client stream: kNeedMore until
// the first whole message is there; kDone with the request; kError when it does not decode
// (the caller then forwards untouched and counts it: fail-open). A well-formed message that
// is not a command (an OP_INSERT, say) is kDone with is_hello false; OP_COMPRESSED is kDone
// with is_hello false too (compression is only negotiated by a hello, so it cannot be one).
InspectResult InspectFirstRequest(absl::Span<const uint8_t> stream);

// SanitizeLabel makes network text fit for a metric label or log field: invalid UTF-8
// bytes and control characters (C0, DEL, C1) become '?', and the result is cut to at most
// max_bytes on a UTF-8 character boundary.
std::string SanitizeLabel(std::string_view text, size_t max_bytes = 128);

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_HELLO_H_
