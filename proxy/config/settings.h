// Settings is the table of every key of the configuration file: its TOML path, the flags that
// set it, its kind and range, its default and the check that applies it to a Config. The TOML
// loader, the command line and the help text all read this one table, so a key cannot be
// accepted by one and unknown to another. Internal to proxy/config; the room's interface is
// config.h.
#ifndef SIDECAR_PROXY_CONFIG_SETTINGS_H_
#define SIDECAR_PROXY_CONFIG_SETTINGS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "proxy/config/config.h"

namespace sidecar::proxy::config_internal {

enum class Kind { kString, kBool, kInt, kList };

// Value is one setting's value from either source, already checked against its Kind.
struct Value {
  std::string str;
  bool boolean = false;
  int64_t integer = 0;
  std::vector<std::string> list;
};

// An ApplyFn checks a value and stores it in the Config. Its error says what is wrong only;
// the caller puts "FILE: KEY: " or "--flag: " in front.
using ApplyFn = absl::Status (*)(const Value&, Config&);

struct Setting {
  std::string_view key;    // canonical dotted key
  std::string_view alias;  // alternative dotted key accepted in the file, or ""
  Kind kind;
  std::vector<std::string_view> flags;  // command-line spellings, preferred first
  int64_t min = 0;                      // kInt range
  int64_t max = 0;
  ApplyFn apply;
  std::string_view group;  // HelpText section
  std::string_view arg;    // HelpText placeholder for the value ("" for switches)
  std::string_view default_text;
  std::string_view help;
};

// Settings returns the table, in the order the help text lists it. Built once, never freed.
const std::vector<Setting>& Settings();

// FindSettingByKey returns the setting whose key or alias is `key` (and says which matched
// in *via_alias), or nullptr.
const Setting* FindSettingByKey(std::string_view key, bool* via_alias);

// Tables lists the tables of the file besides the root; egress.peers, an array of tables, is
// read apart from the setting table (toml_loader.cc).
std::span<const std::string_view> Tables();
bool IsTable(std::string_view key);

// SplitList splits "a, b,c" at commas and trims white space around each element; an empty
// element stays, so that the setting's check can name it.
std::vector<std::string> SplitList(std::string_view text);

}  // namespace sidecar::proxy::config_internal

#endif  // SIDECAR_PROXY_CONFIG_SETTINGS_H_
