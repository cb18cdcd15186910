// ApplyFileText reads the configuration file's TOML into a Config through the settings
// table (settings.h): every key checked, errors as "FILE: KEY: what is wrong", with a "did
// you mean" for a misspelt key. The public ReadConfiguredMode (config.h) lives beside it.
// Internal to proxy/config; the room's interface is config.h.
#ifndef SIDECAR_PROXY_CONFIG_TOML_LOADER_H_
#define SIDECAR_PROXY_CONFIG_TOML_LOADER_H_

#include <string_view>

#include "absl/status/status.h"
#include "proxy/config/config.h"

namespace sidecar::proxy::config_internal {

// ApplyFileText parses `text` (named `file` in messages) and applies every key to `config`,
// recording in config.origins where each came from. Defaults that depend on other settings
// and combinations are checked later, once the flags are in (config.cc).
absl::Status ApplyFileText(std::string_view text, std::string_view file, Config& config);

}  // namespace sidecar::proxy::config_internal

#endif  // SIDECAR_PROXY_CONFIG_TOML_LOADER_H_
