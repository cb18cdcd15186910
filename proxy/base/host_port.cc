#include "proxy/base/host_port.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "proxy/base/concat.h"

namespace sidecar::proxy {

bool IsHostChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
         c == ':' || c == '%';
}

absl::StatusOr<HostPort> ParseHostPortBare(std::string_view text, HostPortRules rules) {
  const std::string example = "e.g. 127.0.0.1:27018 or [::1]:27018";
  if (text.empty()) {
    return absl::InvalidArgumentError(Concat("expected host:port (", example, "), got \"\""));
  }
  std::string_view host;
  std::optional<std::string_view> port_text;  // none: no port given
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(
          Concat("missing ']' after the IPv6 address in \"", text, "\""));
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.starts_with(":")) {
      port_text = rest.substr(1);
    } else if (!rest.empty() || !rules.default_port.has_value()) {
      return absl::InvalidArgumentError(
          Concat("expected host:port (", example, "), got \"", text, "\""));
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos ||
        (rules.default_port.has_value() && text.find(':') != colon)) {
      // No port, or (where a bare host is allowed) an IPv6 literal without brackets.
      if (!rules.default_port.has_value()) {
        return absl::InvalidArgumentError(
            Concat("expected host:port (", example, "), got \"", text, "\""));
      }
      host = text;
    } else {
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
      if ((host.find(':') != std::string::npos)) {
        return absl::InvalidArgumentError(
            Concat("IPv6 addresses need brackets (", example, "), got \"", text, "\""));
      }
    }
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(Concat("missing host in \"", text, "\""));
  }
  if (!std::all_of(host.begin(), host.end(), IsHostChar)) {
    return absl::InvalidArgumentError(Concat("invalid host \"", host, "\""));
  }
  if (!port_text.has_value()) {
    return HostPort{std::string(host), *rules.default_port};
  }
  uint32_t port = 0;
  if (port_text->empty() ||
      !std::all_of(port_text->begin(), port_text->end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      !absl::SimpleAtoi(absl::string_view(port_text->data(), port_text->size()), &port) ||
      port > 65535 || (port == 0 && !rules.allow_port_zero)) {
    return absl::InvalidArgumentError(
        Concat("invalid port \"", *port_text, "\" in \"", text, "\"; expected 1 to 65535"));
  }
  return HostPort{std::string(host), static_cast<uint16_t>(port)};
}

std::string HostPort::ToString() const {
  if ((host.find(':') != std::string::npos)) {
    return Concat("[", host, "]:", port);
  }
  return Concat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text, std::string_view what) {
  absl::StatusOr<HostPort> hp = ParseHostPortBare(text, /*allow_port_zero=*/false);
  if (!hp.ok() && !what.empty()) {
    return absl::InvalidArgumentError(Concat(what, ": ", hp.status().message()));
  }
  return hp;
}

}  // namespace sidecar::proxy
