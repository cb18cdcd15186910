// What a restart would run (SPEC §5, §6). A restart with the same command line reads the
// configuration file again, but a mode flag on that command line (--tlsMode, --sslMode,
// --sslOnNormalPorts) overrides the file's mode at every start. So whether the running mode
// survives a restart, whether `persist` can make it survive, and what `status`, the gauge
// tls_sidecar_mode_persisted and the start-up log say about it, all depend on where the
// start-up mode came from:
//
//   mode set by       a restart runs          persist
//   flag only         the flag's mode         refused, naming the flag
//   file only         the file's mode now     rewrites the file's mode
//   flag and file     the flag's mode         refused, naming the flag
//   neither           the file's mode now     rewrites the file's mode (adds the key)
//                     (disabled without one)  (refused without a file)
//
// Pure functions; any thread.
#ifndef SIDECAR_PROXY_CONFIG_MODE_PERSISTENCE_H_
#define SIDECAR_PROXY_CONFIG_MODE_PERSISTENCE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/base/mode.h"

namespace sidecar::proxy {

// StartupMode is how the running sidecar got its start-up mode (from Config).
struct StartupMode {
  Mode mode = Mode::kDisabled;
  ModeSource source = ModeSource::kDefault;
  std::string flag;         // the flag as written ("--sslMode") when source is kFlag
  std::string config_file;  // the --config file, "" when started without one
};

// RestartOutlook is what a restart with the same command line would do to the mode.
struct RestartOutlook {
  // The mode a restart would run; an error (the file's) when that cannot be known because the
  // configuration file cannot be read.
  absl::StatusOr<Mode> restart_mode = Mode::kDisabled;
  // The running mode survives a restart (tls_sidecar_mode_persisted).
  bool persisted = false;
  // Sentences for `status` (and, at start, the log) whenever the file, the flag and the
  // running mode do not tell the same story; each says what to change.
  std::vector<std::string> warnings;
};

// PredictRestart says what a restart would run while `running` is the mode. `file_mode` is
// the configuration file's net.tls.mode as it is now (disabled when the key is absent, an
// error when the file cannot be read); it is not consulted without a configuration file.
RestartOutlook PredictRestart(const StartupMode& startup, Mode running,
                              const absl::StatusOr<Mode>& file_mode);

// PersistRefusal returns why `persist` cannot keep `to` across a restart (a sentence that
// says what to change instead), or nullopt when rewriting the configuration file will do it.
std::optional<std::string> PersistRefusal(const StartupMode& startup, Mode to);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONFIG_MODE_PERSISTENCE_H_
