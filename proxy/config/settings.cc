// The settings table and the check of each key (settings.h). The public ConfigurationKeys
// (config.h) lists it.
#include "proxy/config/settings.h"

#include <sys/un.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "proxy/base/concat.h"
#include "proxy/base/host_port.h"
#include "proxy/base/mode.h"

namespace sidecar::proxy {
namespace config_internal {
namespace {

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) {
    return false;
  }
  s->remove_prefix(prefix.size());
  return true;
}

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

// Tables of the file (besides the root); egress.peers is an array of tables, handled apart.
constexpr std::string_view kTables[] = {"net",     "net.tls", "egress", "egress.transparent",
                                        "control", "metrics", "limits"};

}  // namespace

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
    {"metrics.statusPage", "", Kind::kBool, {"--metrics-status-page"}, 0, 0,
     [](const Value& v, Config& c) { c.metrics_status_page = v.boolean; return absl::OkStatus(); },
     "Control and metrics", "", "false",
     "serve the status page at / on a metrics listener that is not loopback (it names clients)"},

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
std::span<const std::string_view> Tables() { return kTables; }

bool IsTable(std::string_view key) {
  return std::find(std::begin(kTables), std::end(kTables), key) != std::end(kTables);
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

}  // namespace config_internal

using config_internal::Setting;
using config_internal::Settings;

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

}  // namespace sidecar::proxy
