#include "proxy/control/ctl_main.h"

// See control_commands.cc: JSON_NOEXCEPTION and only non-throwing calls.
#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/base/concat.h"
#include "proxy/config/runtime_dir.h"

namespace sidecar::proxy {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUnreachable = 2;  // also: wrong command line

// How long to wait for an answer; every command answers within milliseconds except when
// the sidecar is stuck, which is worth saying.
constexpr int kAnswerTimeoutSeconds = 30;

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

// --- talking to the socket ---------------------------------------------------------------

struct Answer {
  std::string line;
  Json json;
};

// InPrivateDirectoryOf: the socket file at `path` and its directory belong to `uid`, and
// nobody else may write to the directory, so only `uid` (or root) can have put it there.
bool InPrivateDirectoryOf(const std::string& path, uid_t uid) {
  struct stat socket_stat {};
  struct stat directory_stat {};
  size_t slash = path.rfind('/');
  std::string directory =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  return lstat(path.c_str(), &socket_stat) == 0 && S_ISSOCK(socket_stat.st_mode) &&
         socket_stat.st_uid == uid && lstat(directory.c_str(), &directory_stat) == 0 &&
         S_ISDIR(directory_stat.st_mode) && directory_stat.st_uid == uid &&
         (directory_stat.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// Ask sends `request` on `path` and returns the answer line; errors are the message to
// print (the socket cannot be reached or answered nonsense).
std::optional<Answer> Ask(const std::string& path, const Json& request, std::string* error) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) {
    *error = Concat("cannot reach the control socket ", path, ": the path is too long");
    return std::nullopt;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = Concat("socket: ", std::strerror(errno));
    return std::nullopt;
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    *error = Concat("cannot reach the control socket ", path, ": ", std::strerror(errno),
                    " (is the sidecar running? --socket or --port names another one)");
    return std::nullopt;
  }
  // Talk only to a sidecar run by root, by us, or by the user whose private directory holds
  // the socket (a packaged service's runtime directory): a socket given with --socket may be
  // in a directory that others can write to, where anyone could have put it.
  ucred server{};
  socklen_t length = sizeof(server);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &server, &length) == 0 && server.uid != 0 &&
      server.uid != geteuid() && !InPrivateDirectoryOf(path, server.uid)) {
    *error = Concat("the control socket ", path, " is served by uid ", server.uid,
                    ", neither root nor us (uid ", geteuid(),
                    "), and it is not in a directory only that uid can write to; not talking "
                    "to it");
    return std::nullopt;
  }
  timeval timeout{kAnswerTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));

  std::string out = request.dump() + "\n";
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      *error = Concat("cannot send to the control socket ", path, ": ", std::strerror(errno));
      return std::nullopt;
    }
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buffer[4096];
  while (in.find('\n') == std::string::npos) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      *error = Concat("no answer on the control socket ", path, ": ",
                      errno == EAGAIN ? "timed out" : std::strerror(errno));
      return std::nullopt;
    }
    if (n == 0) {
      if (in.empty()) {
        *error = Concat("the control socket ", path, " closed without answering");
        return std::nullopt;
      }
      break;
    }
    in.append(buffer, static_cast<size_t>(n));
  }
  Answer answer;
  answer.line = in.substr(0, in.find('\n'));
  answer.json = Json::parse(answer.line, nullptr, false);
  if (answer.json.is_discarded() || !answer.json.is_object() || !answer.json.contains("ok") ||
      !answer.json["ok"].is_boolean()) {
    *error = Concat("the control socket ", path,
                    " answered something that is not a control "
                    "answer: ",
                    answer.line.substr(0, 200));
    return std::nullopt;
  }
  return answer;
}

// --- printing for people -------------------------------------------------------------------

// The protocol's words as the sidecar writes them in sentences, and ctl's. Longer phrases
// first: they are tried in this order at each position.
constexpr std::pair<std::string_view, std::string_view> kCliWords[] = {
    {"set `force`", "add `--force`"},
    {"`force`", "`--force`"},
    {"`persist`", "`--persist`"},
    {"`drainPlaintext`", "`tls-sidecar ctl drain-plaintext SECONDS`"},
    {"(see `plaintextClients`)", "(listed below)"},
    {"(see `peers`)", "(listed below)"},
};

std::string Text(const Json& value) {
  if (value.is_string()) {
    return value.get<std::string>();
  }
  if (value.is_null()) {
    return "-";
  }
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? "" : Text(*it);
}

// PrintTable prints rows under headers, columns padded to their widest cell.
void PrintTable(const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows, const char* indent = "") {
  std::vector<size_t> widths(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) {
    widths[c] = headers[c].size();
    for (const auto& row : rows) {
      widths[c] = std::max(widths[c], row[c].empty() ? 1 : row[c].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line = indent;
    for (size_t c = 0; c < cells.size(); ++c) {
      std::string cell = cells[c].empty() ? "-" : cells[c];
      line += cell;
      if (c + 1 < cells.size()) {
        line += std::string(widths[c] - cell.size() + 2, ' ');
      }
    }
    std::printf("%s\n", line.c_str());
  };
  print_row(headers);
  for (const auto& row : rows) {
    print_row(row);
  }
}

std::string Duration(int64_t seconds) {
  if (seconds < 60) {
    return Concat(seconds, "s");
  }
  if (seconds < 3600) {
    return Concat(seconds / 60, "m ", seconds % 60, "s");
  }
  if (seconds < 86400) {
    return Concat(seconds / 3600, "h ", (seconds % 3600) / 60, "m");
  }
  return Concat(seconds / 86400, "d ", (seconds % 86400) / 3600, "h");
}

std::string Counts(const Json& counts) {
  return Concat(Field(counts, "tls"), " tls, ", Field(counts, "plaintext"), " plaintext");
}

void PrintWarnings(const Json& answer) {
  auto it = answer.find("warnings");
  if (it == answer.end() || !it->is_array()) {
    return;
  }
  for (const Json& warning : *it) {
    std::printf("warning: %s\n", CliWording(Text(warning)).c_str());
  }
}

void PrintCertificates(const Json& certificates) {
  std::vector<std::vector<std::string>> rows;
  for (const Json& cert : certificates) {
    rows.push_back({Field(cert, "role"), Field(cert, "subject"), Field(cert, "notAfter"),
                    Field(cert, "sha1")});
  }
  if (rows.empty()) {
    std::printf("  (none loaded)\n");
    return;
  }
  PrintTable({"ROLE", "SUBJECT", "NOT AFTER", "SHA-1"}, rows, "  ");
}

void PrintStatus(const Json& a) {
  std::string configured = Field(a, "configuredMode");
  std::string file = Field(a, "configFile");
  std::string source = Field(a, "modeSource");
  // Where a restart takes the mode from: a flag overrides the file.
  std::string from;
  if (source == "flag") {
    from = Concat("the flag ", Field(a, "modeFlag"));
    if (!file.empty()) {
      ConcatAppend(&from, ", which overrides ", file, ": the file says ", Field(a, "fileMode"));
    }
  } else if (!file.empty()) {
    from = file;
  } else {
    from = "the default; no configuration file";
  }
  std::printf("mode             %s\n", Field(a, "mode").c_str());
  std::printf("configured mode  %s (from %s)\n", configured.c_str(), from.c_str());
  std::printf("version          %s\n", Field(a, "version").c_str());
  std::printf("uptime           %s\n",
              Duration(a.value("uptimeSeconds", static_cast<int64_t>(0))).c_str());
  std::printf("active           %s\n", Counts(a.value("active", Json::object())).c_str());
  std::printf("accepted         %s\n", Counts(a.value("accepted", Json::object())).c_str());
  std::string rejected;
  for (auto it = a["rejected"].begin(); a["rejected"].is_object() && it != a["rejected"].end();
       ++it) {
    if (it->is_number() && it->get<double>() > 0) {
      rejected += Concat(rejected.empty() ? "" : ", ", it.key(), " ", Text(*it));
    }
  }
  std::printf("rejected         %s\n", rejected.empty() ? "none" : rejected.c_str());
  std::printf("certificates\n");
  PrintCertificates(a.value("certificates", Json::array()));
  PrintWarnings(a);
}

void PrintPlaintextClients(const Json& clients) {
  std::vector<std::vector<std::string>> rows;
  for (const Json& c : clients) {
    rows.push_back({Field(c, "address"), Field(c, "application"), Field(c, "driver"),
                    Field(c, "kind"), Field(c, "connections")});
  }
  PrintTable({"ADDRESS", "APPLICATION", "DRIVER", "KIND", "CONNECTIONS"}, rows, "  ");
}

void PrintClients(const Json& a) {
  std::vector<std::vector<std::string>> rows;
  // The certificate subject column appears only when some TLS client presented one.
  bool any_subject = false;
  for (const Json& c : a.value("clients", Json::array())) {
    any_subject = any_subject || !Field(c, "subject").empty();
  }
  for (const Json& c : a.value("clients", Json::array())) {
    std::vector<std::string> row = {
        Field(c, "address"), Field(c, "application"), Field(c, "driver"),
        Field(c, "kind"),    Field(c, "transport"),   Field(c, "state"),
        Field(c, "active"),  Field(c, "total"),       Field(c, "lastSeen")};
    if (any_subject) {
      row.push_back(Field(c, "subject"));
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    std::printf("no clients seen\n");
    return;
  }
  std::vector<std::string> header = {"ADDRESS", "APPLICATION", "DRIVER", "KIND",     "TRANSPORT",
                                     "STATE",   "ACTIVE",      "TOTAL",  "LAST SEEN"};
  if (any_subject) {
    header.push_back("CERTIFICATE SUBJECT");
  }
  PrintTable(header, rows);
}

void PrintSetMode(const Json& a) {
  if (a.value("unchanged", false)) {
    std::printf("mode unchanged: %s\n", Field(a, "to").c_str());
  } else {
    std::printf("mode changed: %s -> %s%s\n", Field(a, "from").c_str(), Field(a, "to").c_str(),
                a.value("forced", false) ? " (forced)" : "");
    if (a.contains("overridden")) {
      std::printf("%s\n", Field(a, "overridden").c_str());
    }
  }
  if (a.value("persisted", false)) {
    std::printf("written to the configuration file\n");
  }
  PrintWarnings(a);
}

void PrintPreflight(const Json& a) {
  std::printf("preflight %s (%s to the peers)\n", Field(a, "mode").c_str(),
              Field(a, "transport").c_str());
  bool tls = Field(a, "transport") == "tls";
  std::vector<std::vector<std::string>> rows;
  for (const Json& p : a.value("peers", Json::array())) {
    if (tls) {
      rows.push_back({Field(p, "target"), Field(p, "connected"), Field(p, "handshake"),
                      Field(p, "verification"), Field(p, "version"), Field(p, "error")});
    } else {
      rows.push_back({Field(p, "target"), Field(p, "connected"), Field(p, "error")});
    }
  }
  if (tls) {
    PrintTable({"PEER", "CONNECTED", "HANDSHAKE", "VERIFICATION", "VERSION", "ERROR"}, rows);
  } else {
    PrintTable({"PEER", "CONNECTED", "ERROR"}, rows);
  }
  PrintWarnings(a);
}

void PrintReadiness(const Json& a) {
  std::printf("%s -> %s: %s\n", Field(a, "mode").c_str(), Field(a, "nextMode").c_str(),
              Field(a, "verdict").c_str());
  if (a.contains("note")) {
    std::printf("%s\n", Field(a, "note").c_str());
  }
  for (const Json& reason : a.value("reasons", Json::array())) {
    std::printf("not ready: %s\n", CliWording(Text(reason)).c_str());
  }
  if (auto it = a.find("plaintextClients"); it != a.end()) {
    std::printf("open plaintext client connections:\n");
    PrintPlaintextClients(*it);
  }
  PrintWarnings(a);
}

void PrintAnswer(const std::string& command, const Json& a) {
  if (command == "status") {
    PrintStatus(a);
  } else if (command == "set-mode") {
    PrintSetMode(a);
  } else if (command == "reload") {
    std::printf("certificates reloaded\n");
    PrintCertificates(a.value("certificates", Json::array()));
  } else if (command == "drain-plaintext") {
    std::printf("closing %s plaintext connection(s) over %s s", Field(a, "closing").c_str(),
                Field(a, "overSeconds").c_str());
    if (a.value("members", 0) > 0) {
      std::printf(" (%s of cluster members, last)", Field(a, "members").c_str());
    }
    std::printf("\n");
    if (a.contains("replacedPending")) {
      std::printf("this replaces an earlier drain that still had %s to close\n",
                  Field(a, "replacedPending").c_str());
    }
  } else if (command == "clients") {
    PrintClients(a);
  } else if (command == "preflight") {
    PrintPreflight(a);
  } else if (command == "readiness") {
    PrintReadiness(a);
  }
}

}  // namespace

std::string CliWording(std::string_view sentence) {
  std::string out;
  out.reserve(sentence.size());
  size_t i = 0;
  while (i < sentence.size()) {
    bool replaced = false;
    for (const auto& [protocol, cli] : kCliWords) {
      if (sentence.substr(i).starts_with(protocol)) {
        out.append(cli);
        i += protocol.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) {
      out.push_back(sentence[i]);
      ++i;
    }
  }
  return out;
}

int CtlMain(int argc, char** argv) {
  // The sidecar's own default (proxy/runtime_dir.h), so both look in the same place.
  std::string socket_path = DefaultControlSocketPath(27017);
  bool json = false;
  bool force = false;
  bool persist = false;
  std::optional<std::string> transport;
  std::vector<std::string> words;  // the command and its positional arguments

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
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--force") {
      force = true;
    } else if (arg == "--persist") {
      persist = true;
    } else if (arg.starts_with("--socket")) {
      auto v = value("--socket");
      if (!v || v->empty()) {
        return UsageError("--socket needs a path");
      }
      socket_path = *v;
    } else if (arg.starts_with("--port")) {
      auto v = value("--port");
      char* end = nullptr;
      long port = v ? std::strtol(v->c_str(), &end, 10) : 0;
      if (!v || v->empty() || *end != '\0' || port < 1 || port > 65535) {
        return UsageError("--port needs a port number between 1 and 65535");
      }
      socket_path = DefaultControlSocketPath(static_cast<uint16_t>(port));
    } else if (arg.starts_with("--transport")) {
      auto v = value("--transport");
      if (!v || (*v != "tls" && *v != "plaintext")) {
        return UsageError("--transport takes tls or plaintext");
      }
      transport = *v;
    } else if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      return UsageError(Concat("unknown option ", arg));
    } else {
      words.emplace_back(arg);
    }
  }
  if (words.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUnreachable;
  }

  const std::string& command = words[0];
  auto expect_args = [&](size_t n, const char* what) -> bool {
    if (words.size() != n + 1) {
      UsageError(Concat(command, " takes ", what));
      return false;
    }
    return true;
  };
  bool flags_ok = (!force && !persist) || command == "set-mode";
  if (!flags_ok) {
    return UsageError("--force and --persist go with set-mode");
  }
  if (transport && command != "clients") {
    return UsageError("--transport goes with clients");
  }
  Json request = Json::object();
  if (command == "status" || command == "reload") {
    if (!expect_args(0, "no arguments")) {
      return kExitUnreachable;
    }
    request["cmd"] = command;
  } else if (command == "set-mode") {
    if (!expect_args(1, "a mode: disabled, allowTLS, preferTLS or requireTLS")) {
      return kExitUnreachable;
    }
    request = Json{{"cmd", "setMode"}, {"mode", words[1]}, {"force", force}, {"persist", persist}};
  } else if (command == "drain-plaintext") {
    if (!expect_args(1, "the number of seconds to spread the closes over")) {
      return kExitUnreachable;
    }
    char* end = nullptr;
    double seconds = std::strtod(words[1].c_str(), &end);
    if (words[1].empty() || *end != '\0') {
      return UsageError(Concat("drain-plaintext: \"", words[1], "\" is not a number of seconds"));
    }
    request = Json{{"cmd", "drainPlaintext"}, {"overSeconds", seconds}};
  } else if (command == "preflight") {
    if (!expect_args(1, "a mode: allowTLS, preferTLS or requireTLS")) {
      return kExitUnreachable;
    }
    request = Json{{"cmd", "preflight"}, {"mode", words[1]}};
  } else if (command == "readiness") {
    if (words.size() > 2) {
      return UsageError("readiness takes at most one mode: allowTLS, preferTLS or requireTLS");
    }
    request["cmd"] = "readiness";
    if (words.size() == 2) {
      request["mode"] = words[1];
    }
  } else if (command == "clients") {
    if (!expect_args(0, "no arguments besides --transport")) {
      return kExitUnreachable;
    }
    request["cmd"] = "clients";
    if (transport) {
      request["transport"] = *transport;
    }
  } else {
    return UsageError(Concat("unknown command ", command));
  }

  std::string error;
  std::optional<Answer> answer = Ask(socket_path, request, &error);
  if (!answer) {
    std::fprintf(stderr, "tls-sidecar ctl: %s\n", error.c_str());
    return kExitUnreachable;
  }
  bool ok = answer->json["ok"].get<bool>();
  // readiness answers ok with ready:false: the question was answered, the answer is no, and
  // scripts gate on the exit status.
  if (ok && command == "readiness" && answer->json.value("ready", false) != true) {
    ok = false;
    if (!json) {
      PrintReadiness(answer->json);
      return kExitRefused;
    }
  }
  if (json) {
    std::printf("%s\n", answer->line.c_str());
    return ok ? kExitOk : kExitRefused;
  }
  if (!ok) {
    std::fprintf(stderr, "tls-sidecar ctl: refused: %s\n",
                 CliWording(Field(answer->json, "error")).c_str());
    if (command == "preflight" && answer->json.contains("peers")) {
      PrintPreflight(answer->json);
    }
    if (auto it = answer->json.find("plaintextClients"); it != answer->json.end()) {
      std::printf("open plaintext client connections:\n");
      PrintPlaintextClients(*it);
    }
    return kExitRefused;
  }
  PrintAnswer(command, answer->json);
  return kExitOk;
}

}  // namespace sidecar::proxy
