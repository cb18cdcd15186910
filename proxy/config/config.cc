#include "proxy/config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "certs/pem_file.h"
#include "proxy/base/concat.h"
#include "proxy/config/runtime_dir.h"

// Debian's libtomlplusplus.so is built with exceptions enabled, and its symbols live in the
// toml::ex ABI namespace; we build with TOML_EXCEPTIONS=0 (toml::noex), which that library
// does not export. So the parser is compiled in here, header-only, instead of linked.
#undef TOML_SHARED_LIB
#define TOML_SHARED_LIB 0
#undef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

namespace sidecar::proxy {
namespace {

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) {
    return false;
  }
  s->remove_prefix(prefix.size());
  return true;
}

constexpr int64_t kMaxConfigFileBytes = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Settings: every key of the file, with the flags that set it.

enum class Kind { kString, kBool, kInt, kList };

// Value is one setting's value from either source, already checked against its Kind.
struct Value {
  std::string str;
  bool boolean = false;
  int64_t integer = 0;
  std::vector<std::string> list;
};

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

absl::Status SetSelector(std::string_view text, std::string* out) {
  if (!text.empty()) {
    std::string_view rest = text;
    if (ConsumePrefix(&rest, "subject=")) {
      if (rest.empty()) {
        return absl::InvalidArgumentError("\"subject=\" needs a CN or a DN after it");
      }
    } else if (ConsumePrefix(&rest, "thumbprint=")) {
      std::string hex;
      for (char c : rest) {
        if (c != ':' && c != ' ') {
          hex.push_back(c);
        }
      }
      if (hex.size() != 40 || !std::all_of(hex.begin(), hex.end(), [](char c) {
            return absl::ascii_isxdigit(static_cast<unsigned char>(c));
          })) {
        return absl::InvalidArgumentError(
            Concat("\"", text, "\": a thumbprint is the SHA-1 of the certificate, 40 hex digits"));
      }
    } else {
      return absl::InvalidArgumentError(
          Concat("\"", text, "\": expected \"subject=<CN or DN>\" or \"thumbprint=<SHA-1 hex>\""));
    }
  }
  *out = std::string(text);
  return absl::OkStatus();
}

absl::Status SetListenAddress(std::string_view text, std::string* out) {
  if (!text.empty()) {
    absl::StatusOr<HostPort> hp = ParseHostPortBare(text, /*allow_port_zero=*/true);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(Concat(hp.status().message(), " (\"\" turns it off)"));
    }
  }
  *out = std::string(text);
  return absl::OkStatus();
}

absl::StatusOr<std::set<certs::TlsProtocol>> ParseProtocols(const std::vector<std::string>& names) {
  static constexpr std::pair<std::string_view, certs::TlsProtocol> kNames[] = {
      {"TLS1_0", certs::TlsProtocol::kTls1_0},
      {"TLS1_1", certs::TlsProtocol::kTls1_1},
      {"TLS1_2", certs::TlsProtocol::kTls1_2},
      {"TLS1_3", certs::TlsProtocol::kTls1_3},
  };
  std::set<certs::TlsProtocol> out;
  if (names.size() == 1 && names[0] == "none") {
    return out;
  }
  for (const std::string& name : names) {
    if (name == "none") {
      return absl::InvalidArgumentError("\"none\" cannot be combined with protocol names");
    }
    auto it = std::find_if(std::begin(kNames), std::end(kNames),
                           [&](const auto& entry) { return entry.first == name; });
    if (it == std::end(kNames)) {
      return absl::InvalidArgumentError(
          Concat("unknown protocol \"", name,
              "\"; valid names are TLS1_0, TLS1_1, TLS1_2, TLS1_3, or \"none\""));
    }
    out.insert(it->second);
  }
  if (out.size() == std::size(kNames)) {
    return absl::InvalidArgumentError("disables every TLS version; at least one must remain");
  }
  return out;
}

// Setters, one per key; they return "what is wrong" only, the caller adds "FILE: KEY: ".

template <std::string certs::TlsSettings::*field>
absl::Status SetTlsString(const Value& v, Config& c) {
  c.tls.*field = v.str;
  return absl::OkStatus();
}

template <bool certs::TlsSettings::*field>
absl::Status SetTlsBool(const Value& v, Config& c) {
  c.tls.*field = v.boolean;
  return absl::OkStatus();
}

template <int64_t Config::*field>
absl::Status SetInt64(const Value& v, Config& c) {
  c.*field = v.integer;
  return absl::OkStatus();
}

absl::Status SetWatchCertificates(const Value& v, Config& c) {
  c.watch_certificates = v.boolean;
  return absl::OkStatus();
}

absl::Status SetBindIp(const Value& v, Config& c) {
  if (v.list.empty()) {
    return absl::InvalidArgumentError("needs at least one address");
  }
  for (const std::string& ip : v.list) {
    if (ip.empty() || !std::all_of(ip.begin(), ip.end(), IsHostChar)) {
      return absl::InvalidArgumentError(Concat("invalid address \"", ip, "\""));
    }
  }
  c.bind_ips = v.list;
  return absl::OkStatus();
}

absl::Status SetPort(const Value& v, Config& c) {
  c.port = static_cast<uint16_t>(v.integer);
  return absl::OkStatus();
}

absl::Status SetUpstream(const Value& v, Config& c) {
  absl::StatusOr<HostPort> hp = ParseHostPortBare(v.str, /*allow_port_zero=*/false);
  if (!hp.ok()) {
    return hp.status();
  }
  c.upstream = *std::move(hp);
  return absl::OkStatus();
}

absl::Status SetThreads(const Value& v, Config& c) {
  c.threads = static_cast<int>(v.integer);
  return absl::OkStatus();
}

absl::Status SetUpstreamProxyProtocol(const Value& v, Config& c) {
  c.upstream_proxy_protocol = static_cast<int>(v.integer);
  return absl::OkStatus();
}

absl::Status SetMode(const Value& v, Config& c) {
  absl::StatusOr<Mode> mode = ParseMode(v.str);
  if (!mode.ok()) {
    return mode.status();
  }
  c.mode = *mode;
  return absl::OkStatus();
}

absl::Status SetCertificateSelector(const Value& v, Config& c) {
  return SetSelector(v.str, &c.tls.certificate_selector);
}

absl::Status SetClusterCertificateSelector(const Value& v, Config& c) {
  return SetSelector(v.str, &c.tls.cluster_certificate_selector);
}

absl::Status SetDisabledProtocols(const Value& v, Config& c) {
  absl::StatusOr<std::set<certs::TlsProtocol>> set = ParseProtocols(v.list);
  if (!set.ok()) {
    return set.status();
  }
  c.tls.disabled_protocols = *std::move(set);
  return absl::OkStatus();
}

absl::Status SetTransparentListen(const Value& v, Config& c) {
  absl::StatusOr<HostPort> hp = ParseHostPortBare(v.str, /*allow_port_zero=*/true);
  if (!hp.ok()) {
    return hp.status();
  }
  c.egress_transparent_listen = *std::move(hp);
  return absl::OkStatus();
}

absl::Status SetControlSocket(const Value& v, Config& c) {
  constexpr size_t kMaxPath = sizeof(sockaddr_un{}.sun_path);
  if (v.str.empty()) {
    return absl::InvalidArgumentError("must not be empty");
  }
  if (v.str.size() >= kMaxPath) {
    return absl::InvalidArgumentError(
        Concat("is ", v.str.size(), " bytes long; a UNIX socket path must be under ", kMaxPath));
  }
  c.control_socket = v.str;
  return absl::OkStatus();
}

absl::Status SetMetricsListen(const Value& v, Config& c) {
  return SetListenAddress(v.str, &c.metrics_listen);
}

using TLS = certs::TlsSettings;

// The table of every key. Flags are listed preferred spelling first; HelpText prints the
// entries that have flags, by group.
const std::vector<Setting>& Settings() {
  // clang-format off
  static const std::vector<Setting>* const kSettings = new std::vector<Setting>{
    {"net.bindIp", "", Kind::kList, {"--bind_ip"}, 0, 0, SetBindIp,
     "Network", "ADDRS", "127.0.0.1",
     "addresses to listen on, comma-separated; 0.0.0.0 or :: for all"},
    {"net.port", "", Kind::kInt, {"--port"}, 1, 65535, SetPort,
     "Network", "PORT", "27017", "the public MongoDB port this sidecar owns"},
    {"net.upstream", "", Kind::kString, {"--upstream"}, 0, 0, SetUpstream,
     "Network", "HOST:PORT", "127.0.0.1:27018", "the local, unmodified mongod"},
    {"net.threads", "", Kind::kInt, {"--threads"}, 0, 1024, SetThreads,
     "Network", "N", "0", "event loops; 0 = one per core"},
    {"net.upstreamProxyProtocol", "", Kind::kInt, {"--upstream-proxy-protocol"}, 0, 2,
     SetUpstreamProxyProtocol, "Network", "0|1|2", "0",
     "send a PROXY protocol header (v1 or v2) to mongod's net.proxyPort; 0 = off"},

    {"net.tls.mode", "", Kind::kString, {"--tlsMode", "--sslMode"}, 0, 0, SetMode,
     "TLS", "MODE", "disabled",
     "disabled, allowTLS, preferTLS or requireTLS (allowSSL, preferSSL, requireSSL too)"},
    {"net.tls.certificateKeyFile", "net.tls.PEMKeyFile", Kind::kString,
     {"--tlsCertificateKeyFile", "--sslPEMKeyFile"}, 0, 0,
     SetTlsString<&TLS::certificate_key_file>,
     "TLS", "FILE", "", "PEM with the server certificate chain and its key"},
    {"net.tls.certificateKeyFilePassword", "net.tls.PEMKeyPassword", Kind::kString,
     {"--tlsCertificateKeyFilePassword", "--sslPEMKeyPassword"}, 0, 0,
     SetTlsString<&TLS::certificate_key_file_password>,
     "TLS", "PASSWORD", "", "password of an encrypted key"},
    {"net.tls.CAFile", "", Kind::kString, {"--tlsCAFile", "--sslCAFile"}, 0, 0,
     SetTlsString<&TLS::ca_file>,
     "TLS", "FILE", "", "CA certificates that client certificates must chain to"},
    {"net.tls.CRLFile", "", Kind::kString, {"--tlsCRLFile", "--sslCRLFile"}, 0, 0,
     SetTlsString<&TLS::crl_file>,
     "TLS", "FILE", "", "certificate revocation list (needs a CA file)"},
    {"net.tls.clusterFile", "", Kind::kString, {"--tlsClusterFile", "--sslClusterFile"}, 0, 0,
     SetTlsString<&TLS::cluster_file>,
     "TLS", "FILE", "the certificate key file", "certificate presented to peers (egress)"},
    {"net.tls.clusterCAFile", "", Kind::kString, {"--tlsClusterCAFile", "--sslClusterCAFile"},
     0, 0, SetTlsString<&TLS::cluster_ca_file>,
     "TLS", "FILE", "the CA file", "CA that peers' certificates must chain to"},
    {"net.tls.certificateSelector", "", Kind::kString,
     {"--tlsCertificateSelector", "--sslCertificateSelector"}, 0, 0, SetCertificateSelector,
     "TLS", "SEL", "", "subject=<CN or DN> or thumbprint=<SHA-1 hex>, searched in the store"},
    {"net.tls.clusterCertificateSelector", "", Kind::kString,
     {"--tlsClusterCertificateSelector", "--sslClusterCertificateSelector"}, 0, 0,
     SetClusterCertificateSelector,
     "TLS", "SEL", "", "selector of the certificate presented to peers"},
    {"net.tls.certificateStore", "", Kind::kString, {"--certificate-store"}, 0, 0,
     SetTlsString<&TLS::certificate_store>,
     "TLS", "DIR", "", "directory of PEM files (certificate + key) searched by selectors"},
    {"net.tls.allowConnectionsWithoutCertificates", "", Kind::kBool,
     {"--tlsAllowConnectionsWithoutCertificates", "--sslAllowConnectionsWithoutCertificates",
      "--sslWeakCertificateValidation"}, 0, 0,
     SetTlsBool<&TLS::allow_connections_without_certificates>,
     "TLS", "", "false",
     "serve TLS clients that present no certificate; by default, as mongod, a client must "
     "present one that chains to the CA file whenever a CA file is set"},
    {"net.tls.allowInvalidCertificates", "", Kind::kBool,
     {"--tlsAllowInvalidCertificates", "--sslAllowInvalidCertificates"}, 0, 0,
     SetTlsBool<&TLS::allow_invalid_certificates>,
     "TLS", "", "false", "accept certificates that do not verify (testing only)"},
    {"net.tls.allowInvalidHostnames", "", Kind::kBool,
     {"--tlsAllowInvalidHostnames", "--sslAllowInvalidHostnames"}, 0, 0,
     SetTlsBool<&TLS::allow_invalid_hostnames>,
     "TLS", "", "false", "do not check peers' host names against their certificates"},
    {"net.tls.disabledProtocols", "", Kind::kList,
     {"--tlsDisabledProtocols", "--sslDisabledProtocols"}, 0, 0, SetDisabledProtocols,
     "TLS", "LIST", "TLS1_0,TLS1_1", "TLS versions to refuse (TLS1_0..TLS1_3), or none"},
    {"net.tls.watchCertificates", "", Kind::kBool, {"--watch-certificates"}, 0, 0,
     SetWatchCertificates,
     "TLS", "", "false",
     "reload when the certificate files or their directories change (as SIGHUP does)"},

    {"egress.transparent.listen", "", Kind::kString, {}, 0, 0, SetTransparentListen,
     "", "", "off",
     "listener for outbound connections that iptables redirects (deploy/egress-iptables.sh)"},
    {"egress.transparent.mark", "", Kind::kInt, {}, 1, 4294967295LL,
     SetInt64<&Config::egress_transparent_mark>, "", "", "0x5ec",
     "SO_MARK on the sidecar's own outgoing sockets, so the redirect excludes them"},

    {"control.socket", "", Kind::kString, {"--control-socket"}, 0, 0, SetControlSocket,
     "Control and metrics", "PATH", "<runtime dir>/<port>.sock",
     "control socket (mode 0600) used by tls-sidecar ctl; the runtime dir is "
     "$RUNTIME_DIRECTORY (systemd), else /run/tls-sidecar for root, else "
     "$XDG_RUNTIME_DIR/tls-sidecar, else ~/.tls-sidecar"},
    {"metrics.listen", "", Kind::kString, {"--metrics"}, 0, 0, SetMetricsListen,
     "Control and metrics", "HOST:PORT", "127.0.0.1:9442",
     "Prometheus /metrics and /ready; \"\" turns it off"},

    {"limits.maxConnections", "", Kind::kInt, {"--maxConns"}, 1, 16777216,
     SetInt64<&Config::max_connections>,
     "Limits", "N", "65536",
     "client connections; clamped at start to what the open file limit allows"},
    {"limits.maxEgressConnections", "", Kind::kInt, {"--maxEgressConns"}, 1, 16777216,
     SetInt64<&Config::max_egress_connections>,
     "Limits", "N", "4096",
     "connections mongod makes to its peers through egress listeners, counted apart from "
     "clients so a client flood never refuses them"},
    {"limits.sniffTimeoutMs", "", Kind::kInt, {}, 1, 3600000,
     SetInt64<&Config::sniff_timeout_ms>, "Limits", "", "10000",
     "a client that sends less than 16 bytes for this long is closed"},
    {"limits.handshakeTimeoutMs", "", Kind::kInt, {}, 1, 3600000,
     SetInt64<&Config::handshake_timeout_ms>, "Limits", "", "10000",
     "a TLS handshake that takes longer is abandoned"},
    {"limits.drainSeconds", "", Kind::kInt, {}, 0, 86400,
     SetInt64<&Config::drain_seconds>, "Limits", "", "30",
     "at SIGTERM, how long requests in flight get to finish"},
  };
  // clang-format on
  return *kSettings;
}

const Setting* FindSettingByKey(std::string_view key, bool* via_alias) {
  for (const Setting& s : Settings()) {
    if (s.key == key) {
      *via_alias = false;
      return &s;
    }
    if (!s.alias.empty() && s.alias == key) {
      *via_alias = true;
      return &s;
    }
  }
  return nullptr;
}

// Tables of the file (besides the root); egress.peers is an array of tables, handled apart.
constexpr std::string_view kTables[] = {"net",     "net.tls", "egress", "egress.transparent",
                                        "control", "metrics", "limits"};

bool IsTable(std::string_view key) {
  return std::find(std::begin(kTables), std::end(kTables), key) != std::end(kTables);
}

// Levenshtein distance, for "did you mean" on misspelt keys and flags.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      bool same = absl::ascii_tolower(static_cast<unsigned char>(a[i - 1])) ==
                  absl::ascii_tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Suggestion returns "; did you mean X?" for the closest candidate, or "".
std::string Suggestion(std::string_view wrong, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 3;  // only near misses: a typo or a wrong case
  for (const std::string& c : candidates) {
    size_t d = EditDistance(wrong, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  if (best.empty()) {
    return "";
  }
  return Concat("; did you mean ", best, "?");
}

// ---------------------------------------------------------------------------------------------
// The file.

// Loader accumulates a Config from the file and then the flags, remembering where each setting
// came from, so that messages about combinations name the line or flag to fix.
struct Loader {
  Config config;
  // canonical key -> "FILE: key as written" or "--flag as written"
  std::map<std::string, std::string, std::less<>> origins;

  std::string Origin(std::string_view key) const {
    auto it = origins.find(key);
    return it == origins.end() ? std::string(key) : it->second;
  }
};

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

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view part =
        text.substr(start, comma == std::string_view::npos ? comma : comma - start);
    while (!part.empty() && absl::ascii_isspace(static_cast<unsigned char>(part.front()))) {
      part.remove_prefix(1);
    }
    while (!part.empty() && absl::ascii_isspace(static_cast<unsigned char>(part.back()))) {
      part.remove_suffix(1);
    }
    out.emplace_back(part);
    if (comma == std::string_view::npos) {
      break;
    }
    start = comma + 1;
  }
  return out;
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
    if (!table.empty() && !ConsumePrefix(&rest, Concat(table, "."))) {
      return;
    }
    if (!(rest.find('.') != std::string::npos)) {
      out.push_back(std::string(key));
    }
  };
  for (const Setting& s : Settings()) {
    add_if_child(s.key);
    if (!s.alias.empty()) {
      add_if_child(s.alias);
    }
  }
  for (std::string_view t : kTables) {
    add_if_child(t);
  }
  add_if_child("egress.peers");
  return out;
}

absl::Status ApplyEgressPeers(const toml::node& node, std::string_view file, Loader& loader) {
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
  loader.config.egress_peers = std::move(peers);
  loader.origins[key] = Concat(file, ": ", key);
  return absl::OkStatus();
}

absl::Status ApplyTable(const toml::table& table, std::string_view path, std::string_view file,
                        Loader& loader, std::set<std::string, std::less<>>& seen) {
  auto error = [&](std::string_view key, std::string_view what) {
    return absl::InvalidArgumentError(Concat(file, ": ", key, ": ", what));
  };
  for (auto&& [k, node] : table) {
    const std::string full = JoinKey(path, k.str());
    if (IsTable(full)) {
      if (!node.is_table()) {
        return error(full, Concat("expected a table, got ", TypeName(node.type())));
      }
      absl::Status status = ApplyTable(*node.as_table(), full, file, loader, seen);
      if (!status.ok()) {
        return status;
      }
      continue;
    }
    if (full == "egress.peers") {
      absl::Status status = ApplyEgressPeers(node, file, loader);
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
    absl::Status status = setting->apply(*value, loader.config);
    if (!status.ok()) {
      return error(full, std::string(status.message()));
    }
    loader.origins[std::string(setting->key)] = Concat(file, ": ", full);
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

absl::Status ApplyFileText(std::string_view text, std::string_view file, Loader& loader) {
  absl::StatusOr<toml::table> table = ParseToml(text, file);
  if (!table.ok()) {
    return table.status();
  }
  std::set<std::string, std::less<>> seen;
  return ApplyTable(*table, "", file, loader, seen);
}


// ---------------------------------------------------------------------------------------------
// Flags.

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

// mongod options that a pasted mongod command line may carry and that have no meaning for a
// proxy in front of mongod: accepted so the line works, and reported as notices.
constexpr std::pair<std::string_view, std::string_view> kIgnoredValueFlags[] = {
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

constexpr std::pair<std::string_view, std::string_view> kIgnoredSwitchFlags[] = {
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

// FlagUse is one flag of the command line, as written.
struct FlagUse {
  const Flag* flag = nullptr;
  std::string spelling;  // "--sslMode"
  std::optional<std::string> value;
  int verbosity = 0;  // for -v, -vv, ...
};

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

absl::Status ApplyFlag(const FlagUse& use, Loader& loader,
                       std::map<std::string, std::string, std::less<>>& given) {
  auto error = [&](std::string_view what) {
    return absl::InvalidArgumentError(Concat(use.spelling, ": ", what));
  };
  // Two flags for the same setting (e.g. --tlsMode and --sslMode) are a mistake, as in mongod.
  auto claim = [&](std::string_view key) -> absl::Status {
    auto [it, inserted] = given.emplace(std::string(key), use.spelling);
    if (!inserted) {
      return error(it->second == use.spelling ? "given more than once"
                                              : Concat("conflicts with ", it->second));
    }
    loader.origins[std::string(key)] = use.spelling;
    return absl::OkStatus();
  };
  if (use.flag == nullptr) {  // -v
    loader.config.verbosity = std::max(loader.config.verbosity, use.verbosity);
    return absl::OkStatus();
  }
  const Flag& flag = *use.flag;
  switch (flag.action) {
    case FlagAction::kConfig:
      return absl::OkStatus();  // read before the other flags
    case FlagAction::kVerbose:
      loader.config.verbosity = std::max(loader.config.verbosity, 1);
      return absl::OkStatus();
    case FlagAction::kIgnoredValue:
    case FlagAction::kIgnoredSwitch: {
      std::string what = use.spelling;
      if (use.value.has_value()) {
        // Notices are logged: never echo a password.
        bool secret = use.spelling.find("Password") != std::string::npos;
        ConcatAppend(&what, " ", secret ? "(value hidden)" : *use.value);
      }
      ConcatAppend(&what, ": a mongod option, ignored by tls-sidecar");
      if (!flag.note.empty()) {
        ConcatAppend(&what, " (", flag.note, ")");
      }
      loader.config.notices.push_back(std::move(what));
      return absl::OkStatus();
    }
    case FlagAction::kBindIpAll: {
      absl::Status status = claim("net.bindIp");
      if (!status.ok()) {
        return status;
      }
      if (use.value != "false") {
        loader.config.bind_ips = {"0.0.0.0"};
      }
      return absl::OkStatus();
    }
    case FlagAction::kRequireTlsAlias: {
      absl::Status status = claim("net.tls.mode");
      if (!status.ok()) {
        return status;
      }
      if (use.value != "false") {
        loader.config.mode = Mode::kRequireTls;
        loader.config.mode_source = ModeSource::kFlag;
        loader.config.mode_flag = use.spelling;
        loader.config.notices.push_back(Concat(use.spelling, ": ", flag.note));
      }
      return absl::OkStatus();
    }
    case FlagAction::kSetting:
      break;
  }
  const Setting& setting = *flag.setting;
  absl::Status status = claim(setting.key);
  if (!status.ok()) {
    return status;
  }
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
        return error(Concat("expected an integer, got \"", text, "\""));
      }
      if (v.integer < setting.min || v.integer > setting.max) {
        return error(Concat("must be between ", setting.min, " and ", setting.max, ", got ", text));
      }
      break;
    case Kind::kList:
      v.list = SplitList(text);
      break;
  }
  status = setting.apply(v, loader.config);
  if (!status.ok()) {
    return error(std::string(status.message()));
  }
  if (setting.key == std::string_view("net.tls.mode")) {
    loader.config.mode_source = ModeSource::kFlag;
    loader.config.mode_flag = use.spelling;
  }
  return absl::OkStatus();
}

// MarkModeFromFile records that the file set net.tls.mode, when it did; a flag read after it
// takes the mode over (ApplyFlag).
void MarkModeFromFile(Loader& loader) {
  if (loader.origins.contains("net.tls.mode")) {
    loader.config.mode_source = ModeSource::kFile;
  }
}

// ---------------------------------------------------------------------------------------------
// Defaults that depend on other settings, and combinations.

absl::Status Finish(Loader& loader) {
  Config& c = loader.config;
  if (c.control_socket.empty()) {
    c.control_socket = DefaultControlSocketPath(c.port);
  }
  auto error = [&](std::string_view key, std::string_view what) {
    return absl::InvalidArgumentError(Concat(loader.Origin(key), ": ", what));
  };
  const certs::TlsSettings& tls = c.tls;
  if (!tls.certificate_selector.empty() && !tls.certificate_key_file.empty()) {
    return error("net.tls.certificateSelector",
                 Concat("cannot be used together with a certificate key file (",
                     loader.Origin("net.tls.certificateKeyFile"), "); choose one"));
  }
  if (!tls.cluster_certificate_selector.empty() && !tls.cluster_file.empty()) {
    return error("net.tls.clusterCertificateSelector",
                 Concat("cannot be used together with a cluster file (",
                     loader.Origin("net.tls.clusterFile"), "); choose one"));
  }
  for (std::string_view key :
       {"net.tls.certificateSelector", "net.tls.clusterCertificateSelector"}) {
    const std::string& selector = key == "net.tls.certificateSelector"
                                      ? tls.certificate_selector
                                      : tls.cluster_certificate_selector;
    if (!selector.empty() && tls.certificate_store.empty()) {
      return error(key,
                   "needs a certificate store to search: net.tls.certificateStore "
                   "(--certificate-store), a directory of PEM files");
    }
  }
  if (!tls.crl_file.empty() && tls.ca_file.empty()) {
    return error("net.tls.CRLFile",
                 "needs a CA file (net.tls.CAFile, --tlsCAFile): revocations are checked "
                 "against the CA that issued the certificates");
  }
  if (c.mode != Mode::kDisabled && !tls.HasServerCertificate()) {
    return error("net.tls.mode", Concat("mode ", ModeName(c.mode),
                                     " needs a certificate: set net.tls.certificateKeyFile "
                                     "(--tlsCertificateKeyFile) or net.tls.certificateSelector "
                                     "(--tlsCertificateSelector)"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Help.

// Wrap appends `text` to `out` in lines of at most 80 columns, each indented by `indent`.
void Wrap(std::string* out, std::string_view text, size_t indent) {
  constexpr size_t kWidth = 80;
  size_t column = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view word = text.substr(start, end - start);
    if (column > 0 && column + 1 + word.size() > kWidth) {
      out->push_back('\n');
      column = 0;
    }
    if (column == 0) {
      out->append(indent, ' ');
      column = indent;
    } else {
      out->push_back(' ');
      ++column;
    }
    out->append(word);
    column += word.size();
    start = end + 1;
  }
  out->push_back('\n');
}

// HelpLine is one entry: the flags on one line, the description indented under them.
std::string HelpLine(std::string_view flags, std::string_view text) {
  std::string out;
  Wrap(&out, flags, 2);
  Wrap(&out, text, 8);
  return out;
}

}  // namespace

absl::Status Config::NameOrigin(const absl::Status& status) const {
  std::string message(status.message());
  size_t colon = message.find(": ");
  if (!message.starts_with("net.tls.") || colon == std::string::npos) {
    return status;
  }
  return absl::Status(status.code(), Origin(message.substr(0, colon)) + message.substr(colon));
}

namespace {

// OnOneLine escapes control characters in an error, which may quote a value from the file or
// the command line ("--upstream: invalid host \"a\nb\""): main prints it as one line.
template <typename T>
absl::StatusOr<T> OnOneLine(absl::StatusOr<T> result) {
  if (result.ok()) {
    return result;
  }
  std::string message(result.status().message());
  if (std::none_of(message.begin(), message.end(),
                   [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return result;
  }
  std::string line;
  for (char c : message) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      line += "\\n";
    } else if (c == '\r') {
      line += "\\r";
    } else if (c == '\t') {
      line += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      line += "\\x";
      line.push_back("0123456789abcdef"[byte >> 4]);
      line.push_back("0123456789abcdef"[byte & 15]);
    } else {
      line.push_back(c);
    }
  }
  return absl::Status(result.status().code(), line);
}

absl::StatusOr<Config> LoadFromFlags(int argc, const char* const* argv) {
  absl::StatusOr<std::vector<FlagUse>> uses = SplitFlags(argc, argv);
  if (!uses.ok()) {
    return uses.status();
  }
  Loader loader;
  const FlagUse* config_flag = nullptr;
  for (const FlagUse& use : *uses) {
    if (use.flag != nullptr && use.flag->action == FlagAction::kConfig) {
      if (config_flag != nullptr) {
        return absl::InvalidArgumentError(Concat(use.spelling, ": given more than once"));
      }
      if (use.value->empty()) {
        return absl::InvalidArgumentError(Concat(use.spelling, ": needs a file name"));
      }
      config_flag = &use;
    }
  }
  if (config_flag != nullptr) {
    const std::string& file = *config_flag->value;
    absl::StatusOr<std::string> text = certs::ReadFileToString(file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(text.status().message());  // a start-up error
    }
    absl::Status status = ApplyFileText(*text, file, loader);
    if (!status.ok()) {
      return status;
    }
    loader.config.config_file = file;
    MarkModeFromFile(loader);
  }
  std::map<std::string, std::string, std::less<>> given;
  for (const FlagUse& use : *uses) {
    absl::Status status = ApplyFlag(use, loader, given);
    if (!status.ok()) {
      return status;
    }
  }
  absl::Status status = Finish(loader);
  if (!status.ok()) {
    return status;
  }
  loader.config.origins = std::move(loader.origins);
  return std::move(loader.config);
}

absl::StatusOr<Config> LoadFromText(std::string_view toml_text, std::string_view file_name) {
  Loader loader;
  absl::Status status = ApplyFileText(toml_text, file_name, loader);
  if (!status.ok()) {
    return status;
  }
  loader.config.config_file = std::string(file_name);
  MarkModeFromFile(loader);
  status = Finish(loader);
  if (!status.ok()) {
    return status;
  }
  loader.config.origins = std::move(loader.origins);
  return std::move(loader.config);
}

absl::StatusOr<Mode> ModeFromText(std::string_view toml_text, std::string_view file_name) {
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

}  // namespace

absl::StatusOr<Config> LoadConfig(int argc, const char* const* argv) {
  return OnOneLine(LoadFromFlags(argc, argv));
}

absl::StatusOr<Config> LoadConfigFromString(std::string_view toml_text,
                                            std::string_view file_name) {
  return OnOneLine(LoadFromText(toml_text, file_name));
}

absl::StatusOr<Mode> ReadConfiguredModeFromString(std::string_view toml_text,
                                                  std::string_view file_name) {
  return OnOneLine(ModeFromText(toml_text, file_name));
}

absl::StatusOr<Mode> ReadConfiguredMode(const std::string& config_file) {
  absl::StatusOr<std::string> text = certs::ReadFileToString(config_file);
  if (!text.ok()) {
    return absl::InvalidArgumentError(text.status().message());
  }
  return ReadConfiguredModeFromString(*text, config_file);
}

std::vector<std::string> ConfigurationKeys() {
  std::vector<std::string> keys;
  for (const Setting& s : Settings()) {
    keys.emplace_back(s.key);
    if (!s.alias.empty()) {
      keys.emplace_back(s.alias);
    }
  }
  keys.emplace_back("egress.peers");  // an array of tables, read apart from the table
  return keys;
}

std::string HelpText() {
  std::string out =
      "Usage: tls-sidecar [--config FILE] [flags]\n"
      "       tls-sidecar ctl [--socket PATH] COMMAND   (see tls-sidecar ctl --help)\n"
      "       tls-sidecar certs init ...   (test certificates for a quick start)\n"
      "\n"
      "A TLS-terminating sidecar for MongoDB: owns the node's public port, accepts\n"
      "TLS and/or plaintext according to its mode, and forwards plaintext to the\n"
      "local mongod. Flags override the configuration file. TLS flags take mongod's\n"
      "spellings, --tls... or --ssl..., so a mongod command line carries over.\n";
  ConcatAppend(&out, "\nGeneral:\n", HelpLine("--config FILE", "TOML configuration file (keys below)"),
         HelpLine("--user NAME", "started as root: run as NAME once listeners are bound and keys "
                                 "read (a reload then reads the files as NAME)"),
         HelpLine("-h, --help", "this text"), HelpLine("--version", "print the version"),
         HelpLine("--check-config",
                  "load the configuration, certificates and keys, bind nothing; exit 0 or 2"),
         HelpLine("-v, -vv, --verbose", "also log debug lines"));
  for (std::string_view group : {"Network", "TLS", "Control and metrics", "Limits"}) {
    ConcatAppend(&out, "\n", group, ":\n");
    if (group == "Network") {
      ConcatAppend(&out, HelpLine("--bind_ip_all", "listen on all IPv4 addresses (0.0.0.0)"));
    }
    for (const Setting& s : Settings()) {
      if (s.group != group || s.flags.empty()) {
        continue;
      }
      std::string flags;
      for (std::string_view name : s.flags) {
        if (!flags.empty()) {
          ConcatAppend(&flags, ", ");
        }
        ConcatAppend(&flags, name);
        if (!s.arg.empty()) {
          ConcatAppend(&flags, " ", s.arg);
        }
      }
      std::string text(s.help);
      if (!s.default_text.empty()) {
        ConcatAppend(&text, " (default: ", s.default_text, ")");
      }
      out += HelpLine(flags, text);
    }
    if (group == "Limits") {
      ConcatAppend(&out,
             "  limits.sniffTimeoutMs (10000), limits.handshakeTimeoutMs (10000) and\n"
             "  limits.drainSeconds (30) are set in the configuration file.\n");
    }
  }
  ConcatAppend(&out,
         "\nmongod options accepted and ignored (with a notice), so a pasted mongod\n"
         "command line works:\n ");
  size_t column = 1;
  auto add_ignored = [&](std::string_view name) {
    if (column + name.size() + 1 > 78) {
      ConcatAppend(&out, "\n ");
      column = 1;
    }
    ConcatAppend(&out, " ", name);
    column += name.size() + 1;
  };
  for (const auto& [name, note] : kIgnoredValueFlags) {
    add_ignored(Concat(name, " X"));
  }
  for (const auto& [name, note] : kIgnoredSwitchFlags) {
    add_ignored(name);
  }
  // Every key the loader accepts, from the same table, so none can be left out.
  ConcatAppend(&out,
         "\n\nConfiguration file (TOML), every key with its default; every key is optional and\n"
         "a flag overrides its key:\n");
  std::string_view table;
  for (const Setting& s : Settings()) {
    if (std::string_view t = s.key.substr(0, s.key.rfind('.')); t != table) {
      table = t;
      ConcatAppend(&out, " [", table, "]\n");
    }
    std::string name(s.key);
    if (!s.alias.empty()) {
      ConcatAppend(&name, " (alias ", s.alias, ")");
    }
    std::string text = s.flags.empty() ? std::string(s.help) : Concat("see ", s.flags.front());
    ConcatAppend(&text, "; default: ", s.default_text.empty() ? "none" : s.default_text);
    out += HelpLine(name, text);
  }
  out += HelpLine("[[egress.peers]] listen, target",
                  "each a listener that mongod dials (listen) and the peer's sidecar it leads "
                  "to (target); default: none");
  ConcatAppend(&out,
         "\nAt run time: tls-sidecar ctl status | set-mode MODE [--force] [--persist]\n"
         "  | reload | drain-plaintext SECONDS | preflight MODE | clients\n"
         "  (see tls-sidecar ctl --help)\n"
         "Errors in the configuration exit with status 2.\n");
  return out;
}

}  // namespace sidecar::proxy
