// The configuration file: TOML through the settings table (toml_loader.h), and the public
// ReadConfiguredMode (config.h).
#include "proxy/config/toml_loader.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "certs/pem_file.h"
#include "proxy/base/concat.h"
#include "proxy/base/host_port.h"
#include "proxy/base/mode.h"
#include "proxy/config/settings.h"
#include "proxy/config/suggest.h"

// Debian's libtomlplusplus.so is built with exceptions enabled, and its symbols live in the
// toml::ex ABI namespace; we build with TOML_EXCEPTIONS=0 (toml::noex), which that library
// does not export. So the parser is compiled in here, header-only, instead of linked.
#undef TOML_SHARED_LIB
#define TOML_SHARED_LIB 0
#undef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

namespace sidecar::proxy {
namespace config_internal {
namespace {

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kString:
      return "a string";
    case Kind::kBool:
      return "a boolean (true or false)";
    case Kind::kInt:
      return "an integer";
    case Kind::kList:
      return "a string or an array of strings";
  }
  return "";
}

// Key segments that are not bare keys are quoted, so the path can be pasted back.
std::string JoinKey(std::string_view parent, std::string_view segment) {
  bool bare = !segment.empty() && std::all_of(segment.begin(), segment.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  std::string quoted = bare ? std::string(segment) : Concat("\"", segment, "\"");
  return parent.empty() ? quoted : Concat(parent, ".", quoted);
}

absl::StatusOr<Value> ValueFromToml(const toml::node& node, const Setting& setting) {
  Value v;
  auto wrong_type = [&]() {
    return absl::InvalidArgumentError(
        Concat("expected ", KindName(setting.kind), ", got ", TypeName(node.type())));
  };
  switch (setting.kind) {
    case Kind::kString:
      if (!node.is_string()) {
        return wrong_type();
      }
      v.str = node.as_string()->get();
      break;
    case Kind::kBool:
      if (!node.is_boolean()) {
        return wrong_type();
      }
      v.boolean = node.as_boolean()->get();
      break;
    case Kind::kInt:
      if (!node.is_integer()) {
        return wrong_type();
      }
      v.integer = node.as_integer()->get();
      if (v.integer < setting.min || v.integer > setting.max) {
        return absl::InvalidArgumentError(
            Concat("must be between ", setting.min, " and ", setting.max, ", got ", v.integer));
      }
      break;
    case Kind::kList:
      if (node.is_string()) {
        v.list = SplitList(node.as_string()->get());
      } else if (node.is_array()) {
        for (const toml::node& element : *node.as_array()) {
          if (!element.is_string()) {
            return absl::InvalidArgumentError(
                Concat("expected an array of strings, found ", TypeName(element.type()), " in it"));
          }
          v.list.push_back(std::string(element.as_string()->get()));
        }
      } else {
        return wrong_type();
      }
      break;
  }
  // TOML allows "\u0000"; the system would cut a path (or name) there and use another file.
  bool nul = v.str.find('\0') != std::string::npos;
  for (const std::string& element : v.list) {
    nul = nul || element.find('\0') != std::string::npos;
  }
  if (nul) {
    return absl::InvalidArgumentError("holds a NUL byte (\\u0000), which no path or name may hold");
  }
  return v;
}

std::vector<std::string> KnownKeysUnder(std::string_view table) {
  std::vector<std::string> out;
  auto add_if_child = [&](std::string_view key) {
    std::string_view rest = key;
    if (!table.empty()) {
      const std::string prefix = Concat(table, ".");
      if (!rest.starts_with(prefix)) {
        return;
      }
      rest.remove_prefix(prefix.size());
    }
    if (rest.find('.') == std::string_view::npos) {
      out.push_back(std::string(key));
    }
  };
  for (const Setting& s : Settings()) {
    add_if_child(s.key);
    if (!s.alias.empty()) {
      add_if_child(s.alias);
    }
  }
  for (std::string_view t : Tables()) {
    add_if_child(t);
  }
  add_if_child("egress.peers");
  return out;
}

absl::Status ApplyEgressPeers(const toml::node& node, std::string_view file, Config& config) {
  const std::string key = "egress.peers";
  auto error = [&](std::string_view k, std::string_view what) {
    return absl::InvalidArgumentError(Concat(file, ": ", k, ": ", what));
  };
  if (!node.is_array_of_tables() && !(node.is_array() && node.as_array()->empty())) {
    return error(
        key, Concat("expected an array of tables ([[egress.peers]]), got ", TypeName(node.type())));
  }
  std::vector<EgressPeer> peers;
  size_t index = 0;
  for (const toml::node& element : *node.as_array()) {
    const std::string prefix = Concat(key, "[", index, "]");
    const toml::table& table = *element.as_table();
    EgressPeer peer;
    bool has_listen = false;
    bool has_target = false;
    for (auto&& [k, v] : table) {
      const std::string full = JoinKey(prefix, k.str());
      if (k.str() != "listen" && k.str() != "target") {
        return error(full, Concat("unknown key", Suggestion(k.str(), {"listen", "target"}),
                               " (a peer has listen and target)"));
      }
      if (!v.is_string()) {
        return error(full, Concat("expected a string, got ", TypeName(v.type())));
      }
      bool listen = k.str() == "listen";
      absl::StatusOr<HostPort> hp =
          ParseHostPortBare(v.as_string()->get(), /*allow_port_zero=*/listen);
      if (!hp.ok()) {
        return error(full, std::string(hp.status().message()));
      }
      if (listen) {
        peer.listen = *std::move(hp);
        has_listen = true;
      } else {
        peer.target = *std::move(hp);
        has_target = true;
      }
    }
    if (!has_listen || !has_target) {
      return error(prefix, Concat("needs both listen (where mongod dials) and target "
                               "(the peer's sidecar); ",
                               has_listen ? "target" : "listen", " is missing"));
    }
    for (size_t i = 0; i < peers.size(); ++i) {
      if (peers[i].listen.port != 0 && peers[i].listen.host == peer.listen.host &&
          peers[i].listen.port == peer.listen.port) {
        return error(
            Concat(prefix, ".listen"),
            Concat(peer.listen.ToString(), " is already the listen address of ", key, "[", i, "]"));
      }
    }
    peers.push_back(std::move(peer));
    ++index;
  }
  config.egress_peers = std::move(peers);
  config.origins[key] = Concat(file, ": ", key);
  return absl::OkStatus();
}

absl::Status ApplyTable(const toml::table& table, std::string_view path, std::string_view file,
                        Config& config, std::set<std::string, std::less<>>& seen) {
  auto error = [&](std::string_view key, std::string_view what) {
    return absl::InvalidArgumentError(Concat(file, ": ", key, ": ", what));
  };
  for (auto&& [k, node] : table) {
    const std::string full = JoinKey(path, k.str());
    if (IsTable(full)) {
      if (!node.is_table()) {
        return error(full, Concat("expected a table, got ", TypeName(node.type())));
      }
      absl::Status status = ApplyTable(*node.as_table(), full, file, config, seen);
      if (!status.ok()) {
        return status;
      }
      continue;
    }
    if (full == "egress.peers") {
      absl::Status status = ApplyEgressPeers(node, file, config);
      if (!status.ok()) {
        return status;
      }
      continue;
    }
    bool via_alias = false;
    const Setting* setting = FindSettingByKey(full, &via_alias);
    if (setting == nullptr) {
      std::string_view what = node.is_table() ? "unknown table" : "unknown key";
      return error(full, Concat(what, Suggestion(full, KnownKeysUnder(path))));
    }
    if (!seen.insert(std::string(setting->key)).second) {
      return error(full, Concat("set twice (", setting->key, " and its alias ", setting->alias,
                             " are the same setting)"));
    }
    absl::StatusOr<Value> value = ValueFromToml(node, *setting);
    if (!value.ok()) {
      return error(full, std::string(value.status().message()));
    }
    absl::Status status = setting->apply(*value, config);
    if (!status.ok()) {
      return error(full, std::string(status.message()));
    }
    config.origins[std::string(setting->key)] = Concat(file, ": ", full);
  }
  return absl::OkStatus();
}

absl::StatusOr<toml::table> ParseToml(std::string_view text, std::string_view file) {
  toml::parse_result result = toml::parse(text, std::string_view(file));
  if (!result) {
    const toml::parse_error& e = result.error();
    return absl::InvalidArgumentError(Concat(file, ": line ", e.source().begin.line, ", column ",
                                          e.source().begin.column, ": ", e.description()));
  }
  return std::move(result).table();
}

}  // namespace

absl::Status ApplyFileText(std::string_view text, std::string_view file, Config& config) {
  absl::StatusOr<toml::table> table = ParseToml(text, file);
  if (!table.ok()) {
    return table.status();
  }
  std::set<std::string, std::less<>> seen;
  return ApplyTable(*table, "", file, config, seen);
}

}  // namespace config_internal

using config_internal::ParseToml;
using config_internal::TypeName;

absl::StatusOr<Mode> ReadConfiguredModeFromString(std::string_view toml_text,
                                                  std::string_view file_name) {
  absl::StatusOr<toml::table> table = ParseToml(toml_text, file_name);
  if (!table.ok()) {
    return table.status();
  }
  toml::node_view<const toml::node> node = std::as_const(*table)["net"]["tls"]["mode"];
  if (!node) {
    return Mode::kDisabled;
  }
  if (!node.is_string()) {
    return absl::InvalidArgumentError(
        Concat(file_name, ": net.tls.mode: expected a string, got ", TypeName(node.type())));
  }
  absl::StatusOr<Mode> mode = ParseMode(node.as_string()->get());
  if (!mode.ok()) {
    return absl::InvalidArgumentError(Concat(file_name, ": net.tls.mode: ", mode.status().message()));
  }
  return *mode;
}

absl::StatusOr<Mode> ReadConfiguredMode(const std::string& config_file) {
  absl::StatusOr<std::string> text = certs::ReadFileToString(config_file);
  if (!text.ok()) {
    return absl::InvalidArgumentError(text.status().message());
  }
  return ReadConfiguredModeFromString(*text, config_file);
}

}  // namespace sidecar::proxy
