// Editing the configuration file in place, for `setMode` with `persist` (SPEC §6): only the
// value of net.tls.mode changes; every other byte of the operator's file (comments, spacing,
// key order, line endings) stays as it was.
#ifndef SIDECAR_PROXY_CONFIG_CONFIG_FILE_EDIT_H_
#define SIDECAR_PROXY_CONFIG_CONFIG_FILE_EDIT_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy/base/mode.h"

namespace sidecar::proxy {

// SetModeInTomlText returns `text` with net.tls.mode set to `mode` (TLS spelling), changing
// only that value. When the key is absent it adds `mode = "..."` to the net.tls table: on the
// line after a `[net.tls]` header, at the start of an inline `tls = {...}` table, next to
// dotted `net.tls.X` / `tls.X` keys, or in a new `[net.tls]` table at the end. The result is
// checked by parsing it: it must read back as `mode` and hold exactly the original document's
// other values; otherwise the error says to edit the file by hand. Pure function; any thread.
absl::StatusOr<std::string> SetModeInTomlText(std::string_view text, Mode mode);

// PersistMode rewrites `config_file` with SetModeInTomlText, atomically: a temporary file in
// the same directory (the symlink's target directory when the file is a symlink) with the
// file's permission bits and owner, fsync, rename over the file, fsync of the directory. On any
// failure the original file is untouched and the message says why ("FILE: ..."). Blocking
// file I/O: call it off the data path (the control socket's handler is fine, it is rare).
absl::Status PersistMode(const std::string& config_file, Mode mode);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONFIG_CONFIG_FILE_EDIT_H_
