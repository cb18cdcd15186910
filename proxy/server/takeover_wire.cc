#include "proxy/server/takeover_wire.h"

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {
namespace {

constexpr std::string_view kVerbs[] = {"hello", "state", "sockets", "end",
                                       "stop",  "stopped", "error"};

// Values are single lines the old process wrote itself; anything else would split a line.
bool IsSafeValue(std::string_view value) {
  return value.find_first_of("\n\r") == std::string_view::npos;
}

absl::StatusOr<ModeSource> ParseModeSource(std::string_view name) {
  for (ModeSource source : {ModeSource::kDefault, ModeSource::kFile, ModeSource::kFlag}) {
    if (ModeSourceName(source) == name) {
      return source;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("takeover: unknown modeSource \"", std::string(name.substr(0, 40)), "\""));
}

}  // namespace

std::string_view SocketKindName(SocketKind kind) {
  switch (kind) {
    case SocketKind::kIngress:
      return "ingress";
    case SocketKind::kEgress:
      return "egress";
    case SocketKind::kLock:
      return "lock";
  }
  return "ingress";
}

std::string EncodeMessage(const Message& message) {
  std::string text = message.verb;
  for (const auto& [key, value] : message.lines) {
    absl::StrAppend(&text, "\n", key, " ", IsSafeValue(value) ? value : "?");
  }
  return text;
}

absl::StatusOr<Message> DecodeMessage(std::string_view packet) {
  std::vector<std::string_view> lines;
  for (size_t start = 0;;) {
    size_t end = packet.find('\n', start);
    lines.push_back(packet.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  Message message;
  message.verb = std::string(lines.front());
  bool known = false;
  for (std::string_view verb : kVerbs) {
    known = known || verb == message.verb;
  }
  if (!known) {
    return absl::InvalidArgumentError(
        absl::StrCat("takeover: unexpected message \"", message.verb.substr(0, 40), "\""));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t space = lines[i].find(' ');
    // A value EncodeMessage could not write back (a carriage return) is no sidecar's.
    if (space == std::string_view::npos || space == 0 || !IsSafeValue(lines[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("takeover: malformed line ", i, " of ", message.verb));
    }
    message.lines.emplace_back(std::string(lines[i].substr(0, space)),
                               std::string(lines[i].substr(space + 1)));
  }
  return message;
}

std::string EncodeState(const HandoverState& state) {
  Message message{"state",
                  {{"mode", std::string(ModeName(state.mode))},
                   {"modeSource", std::string(ModeSourceName(state.mode_source))},
                   {"restarts", absl::StrCat(state.restarts)},
                   {"pid", absl::StrCat(state.pid)},
                   {"version", state.version}}};
  if (!state.mode_flag.empty()) {
    message.lines.emplace_back("modeFlag", state.mode_flag);
  }
  return EncodeMessage(message);
}

absl::StatusOr<HandoverState> DecodeState(const Message& message) {
  if (message.verb != "state") {
    return absl::InvalidArgumentError(
        absl::StrCat("takeover: expected the state, got \"", message.verb, "\""));
  }
  HandoverState state;
  bool has_mode = false;
  for (const auto& [key, value] : message.lines) {
    if (key == "mode") {
      absl::StatusOr<Mode> mode = ParseMode(value);
      if (!mode.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("takeover: mode: ", mode.status().message()));
      }
      state.mode = *mode;
      has_mode = true;
    } else if (key == "modeSource") {
      absl::StatusOr<ModeSource> source = ParseModeSource(value);
      if (!source.ok()) {
        return source.status();
      }
      state.mode_source = *source;
    } else if (key == "modeFlag") {
      state.mode_flag = value;
    } else if (key == "restarts" || key == "pid") {
      int64_t number = 0;
      if (!absl::SimpleAtoi(value, &number) || number < 0) {
        return absl::InvalidArgumentError(absl::StrCat("takeover: ", key, ": not a count"));
      }
      (key == "pid" ? state.pid : state.restarts) = number;
    } else if (key == "version") {
      state.version = value;
    }
    // Other keys are from a newer sidecar: what this one does not know it does not carry.
  }
  if (!has_mode) {
    return absl::InvalidArgumentError("takeover: the state names no mode");
  }
  return state;
}

std::string EncodeSockets(const std::vector<SocketLabel>& labels) {
  Message message{"sockets", {}};
  for (const SocketLabel& label : labels) {
    message.lines.emplace_back(std::string(SocketKindName(label.kind)), label.address);
  }
  return EncodeMessage(message);
}

absl::StatusOr<std::vector<SocketLabel>> DecodeSockets(const Message& message,
                                                       size_t descriptors) {
  if (message.verb != "sockets") {
    return absl::InvalidArgumentError(
        absl::StrCat("takeover: expected sockets, got \"", message.verb, "\""));
  }
  if (message.lines.size() != descriptors) {
    return absl::InvalidArgumentError(absl::StrCat("takeover: ", message.lines.size(),
                                                   " sockets named but ", descriptors,
                                                   " descriptors received"));
  }
  std::vector<SocketLabel> labels;
  for (const auto& [kind, address] : message.lines) {
    SocketLabel label{SocketKind::kIngress, address};
    if (kind == "egress") {
      label.kind = SocketKind::kEgress;
    } else if (kind == "lock") {
      label.kind = SocketKind::kLock;
    } else if (kind != "ingress") {
      return absl::InvalidArgumentError(
          absl::StrCat("takeover: unknown socket kind \"", kind.substr(0, 40), "\""));
    }
    labels.push_back(std::move(label));
  }
  return labels;
}

std::string EncodeError(std::string_view sentence) {
  return EncodeMessage(Message{"error", {{"message", std::string(sentence)}}});
}

std::string ErrorText(const Message& message) {
  for (const auto& [key, value] : message.lines) {
    if (key == "message") {
      return value;
    }
  }
  return "refused without a reason";
}

}  // namespace sidecar::proxy
