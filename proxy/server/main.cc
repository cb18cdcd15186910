// tls-sidecar: the TLS sidecar for MongoDB. `tls-sidecar [flags]` runs it; `tls-sidecar ctl`
// talks to a running one; `tls-sidecar certs init` makes throwaway certificates.
#include <dlfcn.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "certs/throwaway_pki.h"
#include "certs/tls_snapshot.h"
#include "proxy/config/config.h"
#include "proxy/config/help_text.h"
#include "proxy/control/ctl_main.h"
#include "proxy/observe/log.h"
#include "proxy/server/privileges.h"
#include "proxy/server/server.h"

namespace {

using sidecar::proxy::kVersion;

// TlsLibraryPath names the file the TLS functions were loaded from, so `--version` proves
// which library the binary runs on rather than which one it was built against.
std::string TlsLibraryPath() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&SSL_new), &info) != 0 && info.dli_fname != nullptr) {
    return info.dli_fname;
  }
  return "unknown";
}

int PrintVersion() {
  std::printf("tls-sidecar %s\nTLS library: %s (%s)\n", kVersion,
              sidecar::proxy::TlsLibraryName().c_str(), TlsLibraryPath().c_str());
  return 0;
}

constexpr char kCertsUsage[] =
    "usage: tls-sidecar certs init DIR [--hosts h1,h2,...] [--ocsp-url URL]\n"
    "\n"
    "Writes a throwaway CA (ca.pem), a server certificate (server.pem: chain and key), a\n"
    "cluster certificate (cluster.pem) and a client certificate (client.pem) into DIR.\n"
    "A sidecar with a CA file requires client certificates unless\n"
    "--tlsAllowConnectionsWithoutCertificates is given, as mongod does.\n"
    "The server certificate names the given hosts plus localhost, 127.0.0.1 and ::1.\n"
    "With --ocsp-url, the server, cluster and client certificates name that OCSP responder\n"
    "(http://HOST:PORT/), and ocsp-responder.pem is a responder certificate and key, e.g. for\n"
    "  openssl ocsp -port PORT -index index.txt -CA ca.pem -rsigner ocsp-responder.pem\n"
    "These certificates are for trying things out: never use them in production.\n";

int CertsMain(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "init") != 0) {
    std::fputs(kCertsUsage, argc >= 2 && (std::strcmp(argv[1], "--help") == 0 ||
                                          std::strcmp(argv[1], "-h") == 0)
                                ? stdout
                                : stderr);
    return argc >= 2 && std::strcmp(argv[1], "--help") == 0 ? 0 : 2;
  }
  std::string dir;
  sidecar::certs::ThrowawayPkiOptions options;
  std::vector<std::string>& hosts = options.hosts;
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--hosts" && i + 1 < argc) {
      hosts = absl::StrSplit(argv[++i], ',', absl::SkipEmpty());
    } else if (arg.rfind("--hosts=", 0) == 0) {
      hosts = absl::StrSplit(std::string(arg.substr(8)), ',', absl::SkipEmpty());
    } else if (arg == "--ocsp-url" && i + 1 < argc) {
      options.ocsp_url = argv[++i];
    } else if (arg.rfind("--ocsp-url=", 0) == 0) {
      options.ocsp_url = std::string(arg.substr(11));
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kCertsUsage, stdout);
      return 0;
    } else if (dir.empty() && !arg.empty() && arg[0] != '-') {
      dir = std::string(arg);
    } else {
      std::fprintf(stderr, "tls-sidecar: error: certs init: unexpected argument %s\n%s",
                   argv[i], kCertsUsage);
      return 2;
    }
  }
  if (dir.empty()) {
    std::fputs(kCertsUsage, stderr);
    return 2;
  }
  if (!options.ocsp_url.empty() && options.ocsp_url.rfind("http://", 0) != 0) {
    std::fprintf(stderr, "tls-sidecar: error: certs init: --ocsp-url: %s is not an http:// URL "
                 "(OCSP responders speak plain HTTP)\n", options.ocsp_url.c_str());
    return 2;
  }
  auto written = sidecar::certs::WriteThrowawayPki(dir, options);
  if (!written.ok()) {
    std::fprintf(stderr, "tls-sidecar: error: certs init: %s\n",
                 std::string(written.status().message()).c_str());
    return 1;
  }
  for (const std::string& file : *written) {
    std::printf("wrote %s\n", file.c_str());
  }
  // As mongod, a sidecar with a CA file requires client certificates by default: say how
  // a client presents the one just made, and how to do without.
  std::printf(
      "With --tlsCAFile %s/ca.pem, TLS clients must present a certificate (as with mongod):\n"
      "  mongosh \"mongodb://localhost:27017/?tls=true&tlsCAFile=%s/ca.pem"
      "&tlsCertificateKeyFile=%s/client.pem\"\n"
      "or start the sidecar with --tlsAllowConnectionsWithoutCertificates to serve TLS clients "
      "without one.\n",
      dir.c_str(), dir.c_str(), dir.c_str());
  std::printf("These certificates are throwaway ones for trying things out; do not use them "
              "in production.\n");
  return 0;
}

// CheckConfig is `tls-sidecar --check-config [--config FILE] [flags]`: everything a start
// loads (the file, the flags, certificates, keys, CAs, CRLs, selectors and their store) is
// loaded and checked, and nothing is bound, so CI pipelines, ExecStartPre= and the deploy
// tests can vet a configuration beside a running sidecar. `args` are the flags without
// --check-config. Exit status and error line as a start: 0, or 2 with SPEC §5's one line.
int CheckConfig(const std::vector<const char*>& args) {
  auto config = sidecar::proxy::LoadConfig(static_cast<int>(args.size()), args.data());
  if (!config.ok()) {
    std::fprintf(stderr, "tls-sidecar: error: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  auto snapshot = sidecar::certs::TlsSnapshot::Create(config->tls);
  if (!snapshot.ok()) {
    std::fprintf(stderr, "tls-sidecar: error: %s\n",
                 std::string(config->NameOrigin(snapshot.status()).message()).c_str());
    return 2;
  }
  std::printf("tls-sidecar: configuration OK: %s (mode %s, %zu certificate(s) loaded)\n",
              config->config_file.empty() ? "flags only" : config->config_file.c_str(),
              std::string(sidecar::proxy::ModeName(config->mode)).c_str(),
              (*snapshot)->certificates().size());
  return 0;
}

// kTakeoverHelp follows the flags' help: the takeover is the process's business, not the
// configuration's, so main.cc owns its flag.
constexpr char kTakeoverHelp[] =
    "\nBinary upgrade without refusing a connection:\n"
    "  --takeover [SOCKET]   start as the successor of the running sidecar: load and check\n"
    "                        the whole configuration (a bad one exits 2 and the running\n"
    "                        sidecar keeps serving), receive its listening sockets and mode\n"
    "                        over its takeover socket (default: beside the control socket,\n"
    "                        <runtime dir>/<port>.takeover.sock), serve on them, then tell it\n"
    "                        to stop accepting; it drains as at SIGTERM and exits 0. Only the\n"
    "                        same user, or root, may take over. The listening addresses must\n"
    "                        be the same.\n";

void PrintHelp() {
  std::fputs(sidecar::proxy::HelpText().c_str(), stdout);
  std::fputs(kTakeoverHelp, stdout);
}

// ExtractTakeoverFlag removes "--takeover [SOCKET]" or "--takeover=SOCKET" from argv.
// Returns nullopt without the flag, "" for the default socket, else the socket given.
std::optional<std::string> ExtractTakeoverFlag(int* argc, char** argv) {
  std::optional<std::string> socket;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--takeover") {
      socket = "";
      // The operand is optional: the next word is the socket unless it is another flag.
      if (i + 1 < *argc && argv[i + 1][0] != '-') {
        socket = argv[++i];
      }
    } else if (arg.starts_with("--takeover=")) {
      socket = std::string(arg.substr(11));
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  argv[out] = nullptr;
  return socket;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2) {
    std::string_view first = argv[1];
    if (first == "--help" || first == "-h") {
      PrintHelp();
      return 0;
    }
    if (first == "--version") {
      return PrintVersion();
    }
    if (first == "certs") {
      return CertsMain(argc - 1, argv + 1);
    }
    if (first == "ctl") {
      return sidecar::proxy::CtlMain(argc - 1, argv + 1);
    }
  }
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      PrintHelp();
      return 0;
    }
    if (std::strcmp(argv[i], "--version") == 0) {
      return PrintVersion();
    }
  }
  // --user is the process's business, not the configuration's: taken out before loading.
  auto run_as_user = sidecar::proxy::ExtractUserFlag(&argc, argv);
  if (!run_as_user.ok()) {
    std::fprintf(stderr, "tls-sidecar: error: %s\n",
                 std::string(run_as_user.status().message()).c_str());
    return 2;
  }
  std::optional<std::string> takeover = ExtractTakeoverFlag(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--check-config") == 0) {
      std::vector<const char*> args(argv, argv + argc);
      args.erase(args.begin() + i);
      return CheckConfig(args);
    }
  }
  auto config = sidecar::proxy::LoadConfig(argc, argv);
  if (!config.ok()) {
    std::fprintf(stderr, "tls-sidecar: error: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  config->run_as_user = *run_as_user;
  std::string takeover_from;
  if (takeover) {
    takeover_from = takeover->empty() ? sidecar::proxy::TakeoverSocketPath(config->control_socket)
                                      : *takeover;
  }
  absl::Status status;
  {
    sidecar::proxy::Server server(*std::move(config), std::move(takeover_from));
    status = server.Run();
  }
  // The server is gone and every JSON line written before the plain error line, so that
  // the last line on stderr says what is wrong (as a configuration error does).
  sidecar::proxy::FlushLogs();
  if (!status.ok()) {
    std::fprintf(stderr, "tls-sidecar: error: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  return 0;
}
