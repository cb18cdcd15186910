#include "proxy/base/mode.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {

absl::StatusOr<Mode> ParseMode(std::string_view name) {
  if (name == "disabled") {
    return Mode::kDisabled;
  }
  if (name == "allowTLS" || name == "allowSSL") {
    return Mode::kAllowTls;
  }
  if (name == "preferTLS" || name == "preferSSL") {
    return Mode::kPreferTls;
  }
  if (name == "requireTLS" || name == "requireSSL") {
    return Mode::kRequireTls;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown mode \"", std::string(name),
                   "\"; valid modes are disabled, allowTLS, preferTLS, requireTLS "
                   "(or allowSSL, preferSSL, requireSSL)"));
}

std::string_view ModeName(Mode mode) {
  switch (mode) {
    case Mode::kDisabled:
      return "disabled";
    case Mode::kAllowTls:
      return "allowTLS";
    case Mode::kPreferTls:
      return "preferTLS";
    case Mode::kRequireTls:
      return "requireTLS";
  }
  return "disabled";
}

std::string_view ModeSourceName(ModeSource source) {
  switch (source) {
    case ModeSource::kDefault:
      return "default";
    case ModeSource::kFile:
      return "file";
    case ModeSource::kFlag:
      return "flag";
  }
  return "default";
}

}  // namespace sidecar::proxy
