#include "proxy/config/mode_persistence.h"

#include <string_view>

#include "proxy/base/concat.h"

namespace sidecar::proxy {

namespace {

// Where to change a command line: the sidecar is usually started by a unit or a pod spec.
constexpr std::string_view kCommandLine =
    "the command line (the systemd unit, the container's arguments)";

// FlagFor is the command-line change that makes a start run `mode`: the same flag with the
// new value when the flag takes one (--tlsMode, --sslMode), else --tlsMode (the old
// --sslOnNormalPorts switch can only say requireTLS).
std::string FlagFor(const StartupMode& startup, Mode mode) {
  if (startup.flag == "--tlsMode" || startup.flag == "--sslMode") {
    return Concat(startup.flag, " ", ModeName(mode));
  }
  return Concat("--tlsMode ", ModeName(mode), " in place of ", startup.flag);
}

}  // namespace

RestartOutlook PredictRestart(const StartupMode& startup, Mode running,
                              const absl::StatusOr<Mode>& file_mode) {
  RestartOutlook outlook;
  const bool has_file = !startup.config_file.empty();
  if (has_file && !file_mode.ok()) {
    // Whatever sets the mode, a start reads the whole file first.
    outlook.restart_mode = file_mode.status();
    outlook.warnings.push_back(Concat(
        "Cannot read the mode from the configuration file: ", file_mode.status().message(), "."));
    return outlook;
  }

  if (startup.source == ModeSource::kFlag) {
    outlook.restart_mode = startup.mode;
    if (has_file && *file_mode != startup.mode) {
      outlook.warnings.push_back(Concat(
          "The configuration file ", startup.config_file, " would start the sidecar in ",
          ModeName(*file_mode), ", but the command-line flag ", startup.flag, " sets ",
          ModeName(startup.mode),
          " and overrides the file at every start: a restart with the same command line runs ",
          ModeName(startup.mode), " whatever the file says. Remove ", startup.flag, " from ",
          kCommandLine, " to let the file decide, or change the flag."));
    }
    if (running != startup.mode) {
      outlook.warnings.push_back(
          Concat("The running mode ", ModeName(running), " differs from ", ModeName(startup.mode),
                 ", which the command-line flag ", startup.flag,
                 " sets: a restart with the same command line goes back to ",
                 ModeName(startup.mode), ". To keep ", ModeName(running), ", change ", kCommandLine,
                 " to ", FlagFor(startup, running), "."));
    }
  } else if (!has_file) {
    outlook.restart_mode = startup.mode;
    if (running != startup.mode) {
      outlook.warnings.push_back(Concat("The running mode ", ModeName(running),
                                        " differs from the start-up mode ", ModeName(startup.mode),
                                        " and there is no configuration file: a restart goes "
                                        "back to ",
                                        ModeName(startup.mode), ". To keep ", ModeName(running),
                                        ", start with --tlsMode ", ModeName(running),
                                        " or with a configuration file (--config) that sets it."));
    }
  } else {
    // The file decides (its mode, or disabled when it has none), as it is now.
    outlook.restart_mode = *file_mode;
    if (*file_mode != running) {
      outlook.warnings.push_back(
          Concat("The running mode ", ModeName(running), " differs from the configuration file's ",
                 ModeName(*file_mode), " (", startup.config_file, "): a restart would go back to ",
                 ModeName(*file_mode), ". Set the mode again with `persist`, or edit the file."));
    }
  }
  outlook.persisted = outlook.restart_mode.ok() && *outlook.restart_mode == running;
  return outlook;
}

std::optional<std::string> PersistRefusal(const StartupMode& startup, Mode to) {
  const bool has_file = !startup.config_file.empty();
  if (startup.source == ModeSource::kFlag) {
    std::string keep =
        has_file ? Concat("To keep ", ModeName(to), " across restarts, remove ", startup.flag,
                          " from ", kCommandLine, " and set mode = \"", ModeName(to), "\" in ",
                          startup.config_file, ", or change the flag to ", FlagFor(startup, to))
                 : Concat("To keep ", ModeName(to), " across restarts, change ", kCommandLine,
                          " to ", FlagFor(startup, to));
    return Concat(
        "Cannot persist: ",
        has_file ? ""
                 : "the sidecar was started without --config, so there is no "
                   "configuration file to write, and ",
        "the command-line flag ", startup.flag, " sets the mode (", ModeName(startup.mode),
        ") at every start",
        has_file ? Concat(" and overrides the configuration file ", startup.config_file) : "",
        ", so a restart with the same command line would come back in ", ModeName(startup.mode),
        "; the mode was not changed. ", keep, "; meanwhile set the mode without `persist`.");
  }
  if (!has_file) {
    return std::string(
        "Cannot persist: the sidecar was started without --config, so there is no "
        "configuration file to write; the mode was not changed. Start it with --config FILE, "
        "or leave out `persist`.");
  }
  return std::nullopt;
}

}  // namespace sidecar::proxy
