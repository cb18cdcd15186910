// Runtime directory: where the sidecar keeps files that live as long as it runs (the control
// socket) (SPEC §5). The same functions serve the sidecar, which creates the directory, and
// `tls-sidecar ctl`, which must find the socket the same way.
#ifndef SIDECAR_PROXY_CONFIG_RUNTIME_DIR_H_
#define SIDECAR_PROXY_CONFIG_RUNTIME_DIR_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace sidecar::proxy {

// RuntimeEnvironment is what the choice of directory depends on, read from the process by
// CurrentRuntimeEnvironment(); a plain struct so the choice can be tested without a process.
struct RuntimeEnvironment {
  std::optional<std::string> runtime_directory;  // $RUNTIME_DIRECTORY (systemd)
  std::optional<std::string> xdg_runtime_dir;    // $XDG_RUNTIME_DIR
  std::optional<std::string> home;               // $HOME, else the passwd entry
  uid_t euid = 0;
};

RuntimeEnvironment CurrentRuntimeEnvironment();

// RuntimeDirectoryFor picks, in order: $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=; the
// first entry when it lists several), /run/tls-sidecar for root, $XDG_RUNTIME_DIR/tls-sidecar,
// else $HOME/.tls-sidecar. Never a fixed name in a world-writable directory such as /tmp,
// where another user could create it first.
std::string RuntimeDirectoryFor(const RuntimeEnvironment& env);

// DefaultControlSocketPath is "<runtime directory>/<port>.sock" for this process.
std::string DefaultControlSocketPath(uint16_t port);

// PrepareRuntimeDirectory makes sure `dir` is a directory (not a symbolic link) owned by this
// process's user and closed to other users (at most 0750): it creates a missing one with mode
// 0700 (its parent must exist), removes group-write and other users' bits from ours, and
// refuses one owned by another user. The error names the directory and what to do.
absl::Status PrepareRuntimeDirectory(const std::string& dir);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONFIG_RUNTIME_DIR_H_
