// Fuzzes the configuration's public entry points together: the TOML loader
// (LoadConfigFromString), the command line (LoadConfig, flags alone and with --config naming
// the same text), the mode reader behind `status` (ReadConfiguredModeFromString) and the
// in-place edit behind `persist` (SetModeInTomlText).
//
// Input: TOML text, then optionally a NUL and command-line arguments separated by NULs (TOML
// holds no NUL, so the split loses nothing). The text is also put in a memfd so that
// --config can name it as /proc/self/fd/N without touching the file system.
//
// Beyond "no crash, no sanitizer report", a mismatch aborts when:
// - a loading error is empty or spans lines (main prints it as one line after "error: ");
// - the file given by --config alone loads differently from the same text loaded directly;
// - a loaded configuration breaks what the rest of the sidecar takes for granted (ports,
//   counts, a mode needing a certificate has one, a control socket path);
// - the mode reader disagrees with the loader about net.tls.mode;
// - the persist edit reads back as another mode, or changes anything but the mode.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proxy/base/mode.h"
#include "proxy/config/config.h"
#include "proxy/config/config_file_edit.h"

namespace {

using sidecar::proxy::Config;
using sidecar::proxy::Mode;

void Check(bool condition) {
  if (!condition) {
    std::abort();
  }
}

void CheckError(const absl::Status& status) {
  Check(!status.ok());
  Check(!status.message().empty());
  Check(status.message().find('\n') == std::string_view::npos);
}

// What a configuration means to the running sidecar, apart from its mode and where things
// came from: equal summaries load the same sidecar.
std::string Summary(const Config& c) {
  const auto& t = c.tls;
  std::string s = absl::StrCat(absl::StrJoin(c.bind_ips, ","), "|", c.port, "|",
                               c.upstream.ToString(), "|", c.threads, "|",
                               c.upstream_proxy_protocol, "|", c.watch_certificates, "|");
  absl::StrAppend(&s, t.certificate_key_file, "|", t.certificate_key_file_password, "|",
                  t.ca_file, "|", t.crl_file, "|", t.cluster_file, "|", t.cluster_file_password,
                  "|", t.cluster_ca_file, "|", t.certificate_selector, "|",
                  t.cluster_certificate_selector, "|", t.certificate_store, "|",
                  t.allow_connections_without_certificates, t.allow_invalid_certificates,
                  t.allow_invalid_hostnames, "|", t.disabled_protocols.size(), "|");
  for (const auto& peer : c.egress_peers) {
    absl::StrAppend(&s, peer.listen.ToString(), ">", peer.target.ToString(), ",");
  }
  absl::StrAppend(&s, "|",
                  c.egress_transparent_listen ? c.egress_transparent_listen->ToString() : "-",
                  "|", c.egress_transparent_mark, "|", c.control_socket, "|", c.metrics_listen,
                  "|", c.max_connections, "|", c.max_egress_connections, "|",
                  c.sniff_timeout_ms, "|", c.handshake_timeout_ms, "|", c.drain_seconds, "|",
                  c.run_as_user, "|", c.verbosity);
  return s;
}

void CheckLoaded(const Config& c) {
  Check(c.port != 0);
  Check(c.upstream.port != 0 && !c.upstream.host.empty());
  Check(!c.bind_ips.empty());
  Check(c.threads >= 0);
  Check(c.upstream_proxy_protocol >= 0 && c.upstream_proxy_protocol <= 2);
  Check(c.mode >= Mode::kDisabled && c.mode <= Mode::kRequireTls);
  Check(c.mode == Mode::kDisabled || c.tls.HasServerCertificate());
  Check(c.max_connections > 0 && c.max_egress_connections > 0);
  Check(c.sniff_timeout_ms > 0 && c.handshake_timeout_ms > 0 && c.drain_seconds >= 0);
  Check(!c.control_socket.empty());
  for (const auto& peer : c.egress_peers) {
    Check(peer.target.port != 0 && !peer.target.host.empty());
  }
}

void CheckResult(const absl::StatusOr<Config>& result) {
  if (result.ok()) {
    CheckLoaded(*result);
  } else {
    CheckError(result.status());
  }
}

// The memfd that --config names; created once, rewritten for every input.
const std::string& ConfigPath(std::string_view text) {
  static const int fd = memfd_create("config.toml", 0);
  static const std::string path = absl::StrCat("/proc/self/fd/", fd);
  Check(fd >= 0);
  Check(ftruncate(fd, 0) == 0);
  Check(pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
  return path;
}

absl::StatusOr<Config> LoadArgs(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"tls-sidecar"};
  for (const std::string& arg : args) {
    argv.push_back(arg.c_str());
  }
  return sidecar::proxy::LoadConfig(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view toml = input.substr(0, nul);
  std::vector<std::string> flags;
  if (nul != std::string_view::npos) {
    std::string_view rest = input.substr(nul + 1);
    while (!rest.empty()) {
      size_t end = rest.find('\0');
      std::string arg(rest.substr(0, end));
      // The file comes from the memfd only, so that no input reads another file.
      if (arg != "--config" && !arg.starts_with("--config=")) {
        flags.push_back(std::move(arg));
      }
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    }
  }

  const std::string& path = ConfigPath(toml);
  absl::StatusOr<Config> from_text = sidecar::proxy::LoadConfigFromString(toml, path);
  CheckResult(from_text);
  CheckResult(LoadArgs(flags));

  std::vector<std::string> with_file = {"--config", path};
  with_file.insert(with_file.end(), flags.begin(), flags.end());
  absl::StatusOr<Config> from_file = LoadArgs(with_file);
  CheckResult(from_file);
  if (flags.empty()) {
    Check(from_file.ok() == from_text.ok());
    if (from_text.ok()) {
      Check(Summary(*from_file) == Summary(*from_text));
      Check(from_file->mode == from_text->mode);
    } else {
      Check(from_file.status().message() == from_text.status().message());
    }
  }

  absl::StatusOr<Mode> configured = sidecar::proxy::ReadConfiguredModeFromString(toml, path);
  if (!configured.ok()) {
    // Shown inside JSON only (`status`, the log), which escapes it: may quote lines.
    Check(!configured.status().message().empty());
  }
  if (from_text.ok()) {
    Check(configured.ok() && *configured == from_text->mode);
  }

  Mode wanted = sidecar::proxy::kAllModes[size % 4];
  absl::StatusOr<std::string> edited = sidecar::proxy::SetModeInTomlText(toml, wanted);
  if (!edited.ok()) {
    // Only ever shown inside JSON (ctl's answer, the log), which escapes it: may span lines.
    Check(!edited.status().message().empty());
    return 0;
  }
  absl::StatusOr<Mode> reread = sidecar::proxy::ReadConfiguredModeFromString(*edited, path);
  Check(reread.ok() && *reread == wanted);
  if (from_text.ok()) {
    absl::StatusOr<Config> after = sidecar::proxy::LoadConfigFromString(*edited, path);
    if (wanted != Mode::kDisabled && !from_text->tls.HasServerCertificate()) {
      Check(!after.ok());  // a mode that needs a certificate, and none is configured
    } else {
      Check(after.ok() && after->mode == wanted && Summary(*after) == Summary(*from_text));
    }
  }
  return 0;
}
