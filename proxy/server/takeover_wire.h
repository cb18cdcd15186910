// The takeover's messages (takeover.h), as text, one per packet: pure encode and decode, no
// sockets. A message is a verb on the first line and "key value" lines after it:
//
//   new -> old   "hello"                        ask for the sockets and the state
//   old -> new   "state" mode/modeSource/modeFlag/restarts/pid/version lines
//   old -> new   "sockets" one line per descriptor carried in the same packet, in order:
//                "ingress ADDRESS", "egress ADDRESS" (listeners) or "lock ADDRESS"
//   old -> new   "end"                          everything has been sent
//   new -> old   "stop"                         serving now: stop accepting and drain
//   old -> new   "stopped"                      the old one no longer accepts
//   old -> new   "error" with a "message" line  refused; nothing was handed over
//
// Decoding checks everything (unknown verbs and keys, counts, modes) and never trusts a
// count it was given: the descriptors that arrived are what the lines are matched against.
#ifndef SIDECAR_PROXY_SERVER_TAKEOVER_WIRE_H_
#define SIDECAR_PROXY_SERVER_TAKEOVER_WIRE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/base/mode.h"

namespace sidecar::proxy {

// What a takeover carries over besides sockets.
struct HandoverState {
  Mode mode = Mode::kDisabled;  // the mode in force, set at run time or at start
  ModeSource mode_source = ModeSource::kDefault;
  std::string mode_flag;  // "--tlsMode" when the source is a flag
  int64_t restarts = 0;   // takeovers the old process already continued
  int64_t pid = 0;
  std::string version;
};

enum class SocketKind { kIngress, kEgress, kLock };
std::string_view SocketKindName(SocketKind kind);

// SocketLabel names one descriptor of a "sockets" message.
struct SocketLabel {
  SocketKind kind = SocketKind::kIngress;
  std::string address;  // as the old process formatted it: for logs and errors only
};

// Message is a decoded packet: its verb and its lines in order.
struct Message {
  std::string verb;
  std::vector<std::pair<std::string, std::string>> lines;
};

std::string EncodeMessage(const Message& message);
// DecodeMessage splits a packet into verb and lines; the error names what is malformed.
absl::StatusOr<Message> DecodeMessage(std::string_view packet);

std::string EncodeState(const HandoverState& state);
absl::StatusOr<HandoverState> DecodeState(const Message& message);

std::string EncodeSockets(const std::vector<SocketLabel>& labels);
// DecodeSockets reads a "sockets" message that arrived with `descriptors` descriptors: one
// line per descriptor, or an error.
absl::StatusOr<std::vector<SocketLabel>> DecodeSockets(const Message& message,
                                                       size_t descriptors);

// EncodeError and ErrorText: the "error" message and its sentence.
std::string EncodeError(std::string_view sentence);
std::string ErrorText(const Message& message);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_TAKEOVER_WIRE_H_
