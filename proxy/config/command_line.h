// The mongod-style command line: every flag of the settings table in each of its spellings
// (--tlsMode and --sslMode), a few switches of its own (--config, --bind_ip_all, -v), and the
// mongod options a pasted mongod command line may carry, accepted and reported as notices.
// SplitFlags reads argv into uses; ApplyFlag applies one to a Config. Internal to
// proxy/config; the room's interface is config.h.
#ifndef SIDECAR_PROXY_CONFIG_COMMAND_LINE_H_
#define SIDECAR_PROXY_CONFIG_COMMAND_LINE_H_

#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy/config/config.h"
#include "proxy/config/settings.h"

namespace sidecar::proxy::config_internal {

enum class FlagAction {
  kSetting,          // sets a Setting
  kConfig,           // --config FILE
  kBindIpAll,        // --bind_ip_all
  kVerbose,          // -v, -vv, --verbose
  kIgnoredValue,     // a mongod option with a value: accepted, noticed, ignored
  kIgnoredSwitch,    // a mongod switch: accepted, noticed, ignored
  kRequireTlsAlias,  // --sslOnNormalPorts: mongod's old spelling of requireSSL
};

struct Flag {
  std::string_view name;
  FlagAction action;
  const Setting* setting = nullptr;
  std::string_view note;  // for ignored flags: why it does not matter here
};

// FlagUse is one flag of the command line, as written.
struct FlagUse {
  const Flag* flag = nullptr;  // nullptr for -v, -vv, ...
  std::string spelling;        // "--sslMode"
  std::optional<std::string> value;
  int verbosity = 0;  // for -v, -vv, ...
};

// An ignored mongod option and why it does not matter here ("" when that is obvious).
using IgnoredFlag = std::pair<std::string_view, std::string_view>;
std::span<const IgnoredFlag> IgnoredValueFlags();   // they take a value: --dbpath X
std::span<const IgnoredFlag> IgnoredSwitchFlags();  // they do not: --fork

// SplitFlags reads argv (argv[0] is skipped) into the flags it names with their values.
// Errors name the flag as written: "--prot: unknown flag; did you mean --port? ...".
absl::StatusOr<std::vector<FlagUse>> SplitFlags(int argc, const char* const* argv);

// FlagsGiven maps a canonical key to the flag that set it, so that two flags for one setting
// (--tlsMode and --sslMode) are refused, as mongod does.
using FlagsGiven = std::map<std::string, std::string, std::less<>>;

// ApplyFlag applies one use to `config` (after the file, so a flag wins) and records its
// origin. --config is skipped: LoadConfig reads the file first.
absl::Status ApplyFlag(const FlagUse& use, Config& config, FlagsGiven& given);

}  // namespace sidecar::proxy::config_internal

#endif  // SIDECAR_PROXY_CONFIG_COMMAND_LINE_H_
