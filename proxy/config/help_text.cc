#include "proxy/config/help_text.h"

#include <string>
#include <string_view>

#include "proxy/base/concat.h"
#include "proxy/config/command_line.h"
#include "proxy/config/settings.h"

namespace sidecar::proxy {
namespace {

using config_internal::IgnoredFlag;
using config_internal::Setting;
using config_internal::Settings;

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

// AppendGroups lists the flags of the table by group, each with its default.
void AppendGroups(std::string& out) {
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
}

// AppendIgnored lists the mongod options accepted and ignored, filled to 78 columns.
void AppendIgnored(std::string& out) {
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
  for (const IgnoredFlag& ignored : config_internal::IgnoredValueFlags()) {
    add_ignored(Concat(ignored.first, " X"));
  }
  for (const IgnoredFlag& ignored : config_internal::IgnoredSwitchFlags()) {
    add_ignored(ignored.first);
  }
}

// AppendKeys lists every key the loader accepts, from the same table, so none can be left
// out.
void AppendKeys(std::string& out) {
  ConcatAppend(&out,
               "\n\nConfiguration file (TOML), every key with its default; every key is "
               "optional and\na flag overrides its key:\n");
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
}

}  // namespace

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
  ConcatAppend(
      &out, "\nGeneral:\n", HelpLine("--config FILE", "TOML configuration file (keys below)"),
      HelpLine("--user NAME",
               "started as root: run as NAME once listeners are bound and keys "
               "read (a reload then reads the files as NAME)"),
      HelpLine("-h, --help", "this text"), HelpLine("--version", "print the version"),
      HelpLine("--check-config",
               "load the configuration, certificates and keys, bind nothing; exit 0 or 2"),
      HelpLine("-v, -vv, --verbose", "also log debug lines"));
  AppendGroups(out);
  AppendIgnored(out);
  AppendKeys(out);
  ConcatAppend(&out,
               "\nAt run time: tls-sidecar ctl status | set-mode MODE [--force] [--persist]\n"
               "  | reload | drain-plaintext SECONDS | preflight MODE | clients\n"
               "  (see tls-sidecar ctl --help)\n"
               "Errors in the configuration exit with status 2.\n");
  return out;
}

}  // namespace sidecar::proxy
