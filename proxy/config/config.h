// Config is the sidecar's whole configuration (SPEC §5): parsed once at start from the TOML
// file and the command-line flags (flags win), validated, then immutable. Every loop reads
// the same const Config; nothing on the data path parses or checks configuration.
#ifndef SIDECAR_PROXY_CONFIG_CONFIG_H_
#define SIDECAR_PROXY_CONFIG_CONFIG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "certs/tls_settings.h"
#include "proxy/base/host_port.h"
#include "proxy/base/mode.h"

namespace sidecar::proxy {

struct EgressPeer {
  HostPort listen;  // where the local mongod dials
  HostPort target;  // the peer's sidecar
};

struct Config {
  std::string config_file;  // empty when started without --config

  // [net]
  std::vector<std::string> bind_ips = {"127.0.0.1"};
  uint16_t port = 27017;
  HostPort upstream = {"127.0.0.1", 27018};
  int threads = 0;                  // 0: one loop per core
  int upstream_proxy_protocol = 0;  // 0 off, 1 or 2

  // [net.tls]
  Mode mode = Mode::kDisabled;
  // Where `mode` came from. A flag wins over the file at every start, so `persist` and
  // `status` need to know (SPEC §5, §6). `mode_flag` is the flag as it was written
  // ("--sslMode", "--sslOnNormalPorts") when the source is a flag, "" otherwise.
  ModeSource mode_source = ModeSource::kDefault;
  std::string mode_flag;
  certs::TlsSettings tls;
  // watchCertificates: reload when the certificate files change (proxy/certificate_watcher.h).
  bool watch_certificates = false;

  // [[egress.peers]], [egress.transparent]
  std::vector<EgressPeer> egress_peers;
  std::optional<HostPort> egress_transparent_listen;
  // SO_MARK on every socket the sidecar dials while transparent egress is on, so that the
  // iptables redirect can exclude the sidecar's own connections (deploy/egress-iptables.sh).
  int64_t egress_transparent_mark = 0x5ec;

  // [control]
  std::string control_socket;  // default <runtime dir>/<port>.sock (proxy/runtime_dir.h)

  // [metrics]
  std::string metrics_listen = "127.0.0.1:9442";  // "" turns metrics off
  bool metrics_status_page = false;  // serve the status page on a non-loopback listener too

  // [limits]
  int64_t max_connections = 65536;
  int64_t max_egress_connections = 4096;
  int64_t sniff_timeout_ms = 10000;
  int64_t handshake_timeout_ms = 10000;
  int64_t drain_seconds = 30;

  // --user NAME (main.cc): give root up to NAME once listeners are bound and keys read.
  std::string run_as_user;

  // -v / -vv ... (as mongod): 1 or more turns debug logs on.
  int verbosity = 0;

  // Notices to log at start (e.g. "--replSet rs0 is ignored"): things that are accepted but
  // have no effect, so that they are never silently ignored.
  std::vector<std::string> notices;

  // Where each setting that was given came from: canonical key -> "FILE: key" or the flag
  // as written ("--tlsCAFile"). Origin(key) is that, or the key itself for a default, so
  // that start-up errors found later (a certificate file, a port in use) name what to fix.
  std::map<std::string, std::string, std::less<>> origins;
  std::string Origin(std::string_view key) const {
    auto it = origins.find(key);
    return it == origins.end() ? std::string(key) : it->second;
  }
  // NameOrigin replaces the configuration key in front of an error from certs/
  // ("net.tls.CAFile: ...") with where that key was set: the file and key, or the flag
  // ("--tlsCAFile: pki: is a directory, not a file"). Other errors are returned as they are.
  absl::Status NameOrigin(const absl::Status& status) const;
};

// LoadConfig reads the flags in argv (argv[0] is skipped), the TOML file named by --config
// if any, applies defaults and validates. The error message is the line to print after
// "tls-sidecar: error: ", e.g. "/etc/s.toml: net.tls.mode: unknown mode ..." or
// "--port: must be between 1 and 65535".
absl::StatusOr<Config> LoadConfig(int argc, const char* const* argv);

// LoadConfigFromString parses `toml_text` as the configuration file (no flags), applies
// defaults and validates, exactly as LoadConfig does for --config. `file_name` is used in
// error messages ("FILE: KEY: ...") and stored in Config::config_file.
absl::StatusOr<Config> LoadConfigFromString(std::string_view toml_text, std::string_view file_name);

// ReadConfiguredMode rereads `config_file` and returns its net.tls.mode (kDisabled when the
// key is absent), without validating the rest of the file. Used by `status` to report the
// configuredMode and by `persist` to check its own result. Errors read "FILE: ...".
absl::StatusOr<Mode> ReadConfiguredMode(const std::string& config_file);

// ReadConfiguredModeFromString is ReadConfiguredMode on text already read.
absl::StatusOr<Mode> ReadConfiguredModeFromString(std::string_view toml_text,
                                                  std::string_view file_name);

// ConfigurationKeys lists every key the file accepts (canonical keys, their aliases, and
// egress.peers), from the loader's own table. --help is help_text.h.
std::vector<std::string> ConfigurationKeys();

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONFIG_CONFIG_H_
