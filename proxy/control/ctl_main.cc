#include "proxy/control/ctl_main.h"

// See control_commands.cc: JSON_NOEXCEPTION and only non-throwing calls.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/base/concat.h"
#include "proxy/config/runtime_dir.h"
#include "proxy/control/ctl_print.h"
#include "proxy/control/ctl_socket.h"

namespace sidecar::proxy {
namespace {

using ctl::Json;

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUnreachable = 2;  // also: wrong command line

constexpr char kUsage[] =
    "usage: tls-sidecar ctl [--socket PATH | --port N] [--json] COMMAND\n"
    "\n"
    "Talks to a running tls-sidecar through its control socket.\n"
    "\n"
    "commands:\n"
    "  status                           mode, configured mode, connections, certificates,\n"
    "                                   warnings\n"
    "  set-mode MODE [--force] [--persist]\n"
    "                                   change the mode for new connections: disabled,\n"
    "                                   allowTLS, preferTLS, requireTLS (or the SSL names);\n"
    "                                   one step up at a time unless --force; requireTLS is\n"
    "                                   refused while plaintext clients are connected unless\n"
    "                                   --force; --persist also writes it to the config file\n"
    "                                   (refused while a mode flag on the sidecar's command\n"
    "                                   line overrides the file); a mode that accepts TLS\n"
    "                                   needs a server certificate, even with --force\n"
    "  reload                           reread certificates, keys, CA and CRL (as SIGHUP)\n"
    "  drain-plaintext SECONDS          close open plaintext client connections spread over\n"
    "                                   SECONDS, cluster members last\n"
    "  preflight MODE                   dial the egress peers as MODE would\n"
    "  readiness [MODE]                 may the sidecar go to MODE (default: the next step)\n"
    "                                   now? ready, ready with warnings, or not ready, each\n"
    "                                   reason with what to do; the checks set-mode applies\n"
    "                                   plus advisory ones; exit status 1 when not ready\n"
    "  clients [--transport tls|plaintext]\n"
    "                                   clients by address and application; state refused:\n"
    "                                   plaintext clients turned away by requireTLS\n"
    "\n"
    "options:\n"
    "  --socket PATH   the control socket (default: the sidecar's default for --port)\n"
    "  --port N        the sidecar's port (27017), for its default socket\n"
    "                  <runtime dir>/N.sock: $RUNTIME_DIRECTORY, /run/tls-sidecar for root,\n"
    "                  $XDG_RUNTIME_DIR/tls-sidecar, else ~/.tls-sidecar\n"
    "  --json          print the sidecar's JSON answer as it is, for scripts\n"
    "\n"
    "exit status: 0 when the sidecar says ok, 1 when it refused (or readiness says not\n"
    "ready), 2 when the socket cannot be reached (or the command line is wrong).\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tls-sidecar ctl: %s\n(see tls-sidecar ctl --help)\n", message.c_str());
  return kExitUnreachable;
}

// CtlArguments is the command line, read.
struct CtlArguments {
  // The sidecar's own default (proxy/runtime_dir.h), so both look in the same place.
  std::string socket_path = DefaultControlSocketPath(27017);
  bool json = false;
  bool force = false;
  bool persist = false;
  bool help = false;
  std::optional<std::string> transport;
  std::vector<std::string> words;  // the command and its positional arguments
};

// ParseArguments reads argv; on a wrong command line it returns the exit status after
// saying why.
std::optional<int> ParseArguments(int argc, char** argv, CtlArguments& args) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string_view flag) -> std::optional<std::string> {
      if (arg.size() > flag.size() && arg.starts_with(flag) && arg[flag.size()] == '=') {
        return std::string(arg.substr(flag.size() + 1));
      }
      if (arg == flag && i + 1 < argc) {
        return std::string(argv[++i]);
      }
      return std::nullopt;
    };
    if (arg == "--help" || arg == "-h") {
      args.help = true;
      return std::nullopt;
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "--force") {
      args.force = true;
    } else if (arg == "--persist") {
      args.persist = true;
    } else if (arg.starts_with("--socket")) {
      auto v = value("--socket");
      if (!v || v->empty()) {
        return UsageError("--socket needs a path");
      }
      args.socket_path = *v;
    } else if (arg.starts_with("--port")) {
      auto v = value("--port");
      char* end = nullptr;
      long port = v ? std::strtol(v->c_str(), &end, 10) : 0;
      if (!v || v->empty() || *end != '\0' || port < 1 || port > 65535) {
        return UsageError("--port needs a port number between 1 and 65535");
      }
      args.socket_path = DefaultControlSocketPath(static_cast<uint16_t>(port));
    } else if (arg.starts_with("--transport")) {
      auto v = value("--transport");
      if (!v || (*v != "tls" && *v != "plaintext")) {
        return UsageError("--transport takes tls or plaintext");
      }
      args.transport = *v;
    } else if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      return UsageError(Concat("unknown option ", arg));
    } else {
      args.words.emplace_back(arg);
    }
  }
  return std::nullopt;
}

// BuildRequest turns the command and its arguments into the control request; on a wrong
// command line it returns nullopt after saying why.
std::optional<Json> BuildRequest(const CtlArguments& args) {
  const std::vector<std::string>& words = args.words;
  const std::string& command = words[0];
  auto expect_args = [&](size_t n, const char* what) -> bool {
    if (words.size() != n + 1) {
      UsageError(Concat(command, " takes ", what));
      return false;
    }
    return true;
  };
  if (command == "status" || command == "reload") {
    if (!expect_args(0, "no arguments")) {
      return std::nullopt;
    }
    return Json{{"cmd", command}};
  }
  if (command == "set-mode") {
    if (!expect_args(1, "a mode: disabled, allowTLS, preferTLS or requireTLS")) {
      return std::nullopt;
    }
    return Json{
        {"cmd", "setMode"}, {"mode", words[1]}, {"force", args.force}, {"persist", args.persist}};
  }
  if (command == "drain-plaintext") {
    if (!expect_args(1, "the number of seconds to spread the closes over")) {
      return std::nullopt;
    }
    char* end = nullptr;
    double seconds = std::strtod(words[1].c_str(), &end);
    if (words[1].empty() || *end != '\0') {
      UsageError(Concat("drain-plaintext: \"", words[1], "\" is not a number of seconds"));
      return std::nullopt;
    }
    return Json{{"cmd", "drainPlaintext"}, {"overSeconds", seconds}};
  }
  if (command == "preflight") {
    if (!expect_args(1, "a mode: allowTLS, preferTLS or requireTLS")) {
      return std::nullopt;
    }
    return Json{{"cmd", "preflight"}, {"mode", words[1]}};
  }
  if (command == "readiness") {
    if (words.size() > 2) {
      UsageError("readiness takes at most one mode: allowTLS, preferTLS or requireTLS");
      return std::nullopt;
    }
    Json request = Json{{"cmd", "readiness"}};
    if (words.size() == 2) {
      request["mode"] = words[1];
    }
    return request;
  }
  if (command == "clients") {
    if (!expect_args(0, "no arguments besides --transport")) {
      return std::nullopt;
    }
    Json request = Json{{"cmd", "clients"}};
    if (args.transport) {
      request["transport"] = *args.transport;
    }
    return request;
  }
  UsageError(Concat("unknown command ", command));
  return std::nullopt;
}

}  // namespace

int CtlMain(int argc, char** argv) {
  CtlArguments args;
  if (std::optional<int> status = ParseArguments(argc, argv, args); status.has_value()) {
    return *status;
  }
  if (args.help) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (args.words.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUnreachable;
  }
  const std::string& command = args.words[0];
  if ((args.force || args.persist) && command != "set-mode") {
    return UsageError("--force and --persist go with set-mode");
  }
  if (args.transport && command != "clients") {
    return UsageError("--transport goes with clients");
  }
  std::optional<Json> request = BuildRequest(args);
  if (!request.has_value()) {
    return kExitUnreachable;
  }
  std::string error;
  std::optional<ctl::CtlAnswer> answer = ctl::AskControlSocket(args.socket_path, *request, &error);
  if (!answer) {
    std::fprintf(stderr, "tls-sidecar ctl: %s\n", error.c_str());
    return kExitUnreachable;
  }
  bool ok = answer->json["ok"].get<bool>();
  // readiness answers ok with ready:false: the question was answered, the answer is no, and
  // scripts gate on the exit status.
  if (ok && command == "readiness" && answer->json.value("ready", false) != true) {
    if (!args.json) {
      ctl::PrintAnswer(command, answer->json);
    }
    ok = false;
  }
  if (args.json) {
    std::printf("%s\n", answer->line.c_str());
    return ok ? kExitOk : kExitRefused;
  }
  if (!ok && command == "readiness") {
    return kExitRefused;
  }
  if (!ok) {
    std::fprintf(stderr, "tls-sidecar ctl: refused: %s\n",
                 CliWording(ctl::Field(answer->json, "error")).c_str());
    ctl::PrintRefusalDetails(command, answer->json);
    return kExitRefused;
  }
  ctl::PrintAnswer(command, answer->json);
  return kExitOk;
}

}  // namespace sidecar::proxy
