#include "proxy/config/command_line.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "proxy/base/concat.h"
#include "proxy/base/mode.h"
#include "proxy/config/suggest.h"

namespace sidecar::proxy::config_internal {
namespace {

// mongod options that a pasted mongod command line may carry and that have no meaning for a
// proxy in front of mongod: accepted so the line works, and reported as notices.
constexpr IgnoredFlag kIgnoredValueFlags[] = {
    {"--replSet", "the replica set is mongod's business"},
    {"--dbpath", "storage is mongod's business"},
    {"--logpath", "tls-sidecar logs JSON lines to stderr"},
    {"--pidfilepath", ""},
    {"--keyFile", "keyFile authentication passes through the sidecar unchanged"},
    {"--clusterAuthMode",
     "keyFile passes through; x509 cluster authentication cannot pass through a terminating "
     "proxy"},
    {"--oplogSize", ""},
    {"--oplogMinRetentionHours", ""},
    {"--wiredTigerCacheSizeGB", ""},
    {"--wiredTigerCollectionBlockCompressor", ""},
    {"--wiredTigerJournalCompressor", ""},
    {"--storageEngine", ""},
    {"--setParameter", "set mongod's parameters on mongod"},
    {"--timeStampFormat", ""},
    {"--unixSocketPrefix", ""},
    {"--filePermissions", ""},
    {"--profile", ""},
    {"--slowms", ""},
    {"--slowOpSampleRate", ""},
    {"--syslogFacility", ""},
    {"--logRotate", ""},
    {"--auditDestination", ""},
    {"--auditFormat", ""},
    {"--auditPath", ""},
    {"--enableMajorityReadConcern", ""},
    {"--bind_ip_exclude", ""},
    {"--tlsClusterPassword",
     "the cluster key must be unencrypted or use the certificate key file's password"},
    {"--sslClusterPassword",
     "the cluster key must be unencrypted or use the certificate key file's password"},
    {"--transportLayer", ""},
    {"--serviceExecutor", ""},
    {"--enableFreeMonitoring", ""},
    {"--clusterIpSourceAllowlist", "mongod sees connections from the sidecar's address"},
    {"--clusterIpSourceWhitelist", "mongod sees connections from the sidecar's address"},
};

constexpr IgnoredFlag kIgnoredSwitchFlags[] = {
    {"--fork", "run tls-sidecar under a service manager instead"},
    {"--auth", "authentication passes through the sidecar unchanged"},
    {"--noauth", ""},
    {"--transitionToAuth", ""},
    {"--quiet", ""},
    {"--logappend", ""},
    {"--syslog", "tls-sidecar logs JSON lines to stderr"},
    {"--journal", ""},
    {"--nojournal", ""},
    {"--directoryperdb", ""},
    {"--noscripting", ""},
    {"--notablescan", ""},
    {"--nounixsocket", ""},
    {"--ipv6", "IPv6 addresses in --bind_ip are always accepted"},
    {"--shardsvr", ""},
    {"--configsvr", ""},
    {"--noIndexBuildRetry", ""},
    {"--wiredTigerDirectoryForIndexes", ""},
    {"--sysinfo", ""},
    {"--tlsFIPSMode", "FIPS mode is not available; the default TLS policy applies"},
    {"--sslFIPSMode", "FIPS mode is not available; the default TLS policy applies"},
};

const std::vector<Flag>& Flags() {
  static const std::vector<Flag>* const kFlags = [] {
    auto* flags = new std::vector<Flag>;
    for (const Setting& s : Settings()) {
      for (std::string_view name : s.flags) {
        flags->push_back({name, FlagAction::kSetting, &s, ""});
      }
    }
    flags->push_back({"--config", FlagAction::kConfig, nullptr, ""});
    flags->push_back({"--bind_ip_all", FlagAction::kBindIpAll, nullptr, ""});
    flags->push_back({"--verbose", FlagAction::kVerbose, nullptr, ""});
    flags->push_back({"--sslOnNormalPorts", FlagAction::kRequireTlsAlias, nullptr,
                      "mongod's old spelling of --sslMode requireSSL"});
    flags->push_back({"--tlsOnNormalPorts", FlagAction::kRequireTlsAlias, nullptr,
                      "mongod's old spelling of --tlsMode requireTLS"});
    for (const auto& [name, note] : kIgnoredValueFlags) {
      flags->push_back({name, FlagAction::kIgnoredValue, nullptr, note});
    }
    for (const auto& [name, note] : kIgnoredSwitchFlags) {
      flags->push_back({name, FlagAction::kIgnoredSwitch, nullptr, note});
    }
    return flags;
  }();
  return *kFlags;
}

bool TakesValue(const Flag& flag) {
  switch (flag.action) {
    case FlagAction::kSetting:
      return flag.setting->kind != Kind::kBool;
    case FlagAction::kConfig:
    case FlagAction::kIgnoredValue:
      return true;
    case FlagAction::kBindIpAll:
    case FlagAction::kVerbose:
    case FlagAction::kIgnoredSwitch:
    case FlagAction::kRequireTlsAlias:
      return false;
  }
  return false;
}


}  // namespace

std::span<const IgnoredFlag> IgnoredValueFlags() { return kIgnoredValueFlags; }
std::span<const IgnoredFlag> IgnoredSwitchFlags() { return kIgnoredSwitchFlags; }

absl::StatusOr<std::vector<FlagUse>> SplitFlags(int argc, const char* const* argv) {
  std::vector<FlagUse> uses;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i] == nullptr ? "" : argv[i];
    // -v, -vv, -vvv: mongod's verbosity.
    if (arg.size() >= 2 && arg[0] == '-' && arg[1] == 'v' &&
        arg.find_first_not_of('v', 1) == std::string_view::npos) {
      FlagUse use;
      use.spelling = std::string(arg);
      use.verbosity = static_cast<int>(arg.size() - 1);
      uses.push_back(std::move(use));
      continue;
    }
    if (!arg.starts_with("--")) {
      if (arg.starts_with("-") && arg.size() > 1) {
        return absl::InvalidArgumentError(Concat(arg, ": unknown flag; see tls-sidecar --help"));
      }
      return absl::InvalidArgumentError(
          Concat("unexpected argument \"", arg, "\"; flags start with -- (see tls-sidecar --help)"));
    }
    std::string_view name = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
    }
    const std::vector<Flag>& flags = Flags();
    auto it =
        std::find_if(flags.begin(), flags.end(), [&](const Flag& f) { return f.name == name; });
    if (it == flags.end()) {
      std::vector<std::string> names;
      for (const Flag& f : flags) {
        names.emplace_back(f.name);
      }
      std::string suggestion = Suggestion(name, names);
      return absl::InvalidArgumentError(Concat(name, ": unknown flag", suggestion,
                                            suggestion.empty() ? "; " : " ",
                                            "see tls-sidecar --help"));
    }
    FlagUse use;
    use.flag = &*it;
    use.spelling = std::string(name);
    if (TakesValue(*it)) {
      if (!value.has_value()) {
        if (i + 1 >= argc || argv[i + 1] == nullptr) {
          return absl::InvalidArgumentError(Concat(name, ": needs a value"));
        }
        std::string_view next = argv[i + 1];
        if (next.starts_with("--")) {
          return absl::InvalidArgumentError(Concat(name, ": needs a value (write ", name,
                                                "=VALUE for a value that starts with --)"));
        }
        value = std::string(next);
        ++i;
      }
    } else if (value.has_value()) {
      // Switches take no value, as in mongod; "=true"/"=false" is accepted for scripts.
      if (*value != "true" && *value != "false") {
        return absl::InvalidArgumentError(
            Concat(name, ": is a switch and takes no value (got \"", *value, "\")"));
      }
    }
    use.value = std::move(value);
    uses.push_back(std::move(use));
  }
  return uses;
}
namespace {

// Claim records that `use` sets `key`; a second flag for the same key is a mistake, as in
// mongod.
absl::Status Claim(const FlagUse& use, std::string_view key, Config& config, FlagsGiven& given) {
  auto [it, inserted] = given.emplace(std::string(key), use.spelling);
  if (!inserted) {
    return absl::InvalidArgumentError(
        Concat(use.spelling, ": ",
               it->second == use.spelling ? "given more than once"
                                          : Concat("conflicts with ", it->second)));
  }
  config.origins[std::string(key)] = use.spelling;
  return absl::OkStatus();
}

// IgnoredNotice is the notice logged at start for an accepted and ignored mongod option.
std::string IgnoredNotice(const FlagUse& use) {
  std::string what = use.spelling;
  if (use.value.has_value()) {
    // Notices are logged: never echo a password.
    bool secret = use.spelling.find("Password") != std::string::npos;
    ConcatAppend(&what, " ", secret ? "(value hidden)" : *use.value);
  }
  ConcatAppend(&what, ": a mongod option, ignored by tls-sidecar");
  if (!use.flag->note.empty()) {
    ConcatAppend(&what, " (", use.flag->note, ")");
  }
  return what;
}

// ValueFromFlag reads the flag's text as its setting's kind; the error says what is wrong.
absl::StatusOr<Value> ValueFromFlag(const FlagUse& use, const Setting& setting) {
  Value v;
  const std::string text = use.value.value_or("");
  switch (setting.kind) {
    case Kind::kString:
      v.str = text;
      break;
    case Kind::kBool:
      v.boolean = use.value != "false";
      break;
    case Kind::kInt:
      if (!absl::SimpleAtoi(absl::string_view(text), &v.integer)) {
        return absl::InvalidArgumentError(Concat("expected an integer, got \"", text, "\""));
      }
      if (v.integer < setting.min || v.integer > setting.max) {
        return absl::InvalidArgumentError(
            Concat("must be between ", setting.min, " and ", setting.max, ", got ", text));
      }
      break;
    case Kind::kList:
      v.list = SplitList(text);
      break;
  }
  return v;
}

absl::Status ApplySettingFlag(const FlagUse& use, Config& config, FlagsGiven& given) {
  const Setting& setting = *use.flag->setting;
  absl::Status status = Claim(use, setting.key, config, given);
  if (!status.ok()) {
    return status;
  }
  absl::StatusOr<Value> value = ValueFromFlag(use, setting);
  if (value.ok()) {
    status = setting.apply(*value, config);
  } else {
    status = value.status();
  }
  if (!status.ok()) {
    return absl::InvalidArgumentError(Concat(use.spelling, ": ", status.message()));
  }
  if (setting.key == std::string_view("net.tls.mode")) {
    config.mode_source = ModeSource::kFlag;
    config.mode_flag = use.spelling;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyFlag(const FlagUse& use, Config& config, FlagsGiven& given) {
  if (use.flag == nullptr) {  // -v
    config.verbosity = std::max(config.verbosity, use.verbosity);
    return absl::OkStatus();
  }
  const Flag& flag = *use.flag;
  switch (flag.action) {
    case FlagAction::kConfig:
      return absl::OkStatus();  // read before the other flags
    case FlagAction::kVerbose:
      config.verbosity = std::max(config.verbosity, 1);
      return absl::OkStatus();
    case FlagAction::kIgnoredValue:
    case FlagAction::kIgnoredSwitch:
      config.notices.push_back(IgnoredNotice(use));
      return absl::OkStatus();
    case FlagAction::kBindIpAll: {
      absl::Status status = Claim(use, "net.bindIp", config, given);
      if (!status.ok()) {
        return status;
      }
      if (use.value != "false") {
        config.bind_ips = {"0.0.0.0"};
      }
      return absl::OkStatus();
    }
    case FlagAction::kRequireTlsAlias: {
      absl::Status status = Claim(use, "net.tls.mode", config, given);
      if (!status.ok()) {
        return status;
      }
      if (use.value != "false") {
        config.mode = Mode::kRequireTls;
        config.mode_source = ModeSource::kFlag;
        config.mode_flag = use.spelling;
        config.notices.push_back(Concat(use.spelling, ": ", flag.note));
      }
      return absl::OkStatus();
    }
    case FlagAction::kSetting:
      break;
  }
  return ApplySettingFlag(use, config, given);
}

}  // namespace sidecar::proxy::config_internal
