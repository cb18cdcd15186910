#include "proxy/control/ctl_print.h"

// See control_commands.cc: JSON_NOEXCEPTION and only non-throwing calls.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/base/concat.h"
#include "proxy/control/ctl_main.h"

namespace sidecar::proxy {
namespace ctl {
namespace {

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

// UtcTime renders unix seconds as "2026-01-02T03:04:05Z".
std::string UtcTime(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm parts{};
  char text[32] = "?";
  if (gmtime_r(&t, &parts) != nullptr) {
    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  }
  return text;
}

// PrintOcspStaple prints the server certificate's staple line of status, when stapling.
void PrintOcspStaple(const Json& ocsp) {
  if (!ocsp.is_object() || !ocsp.value("stapling", false)) {
    return;
  }
  std::string responder = ocsp.value("responder", std::string());
  std::string line = responder.empty()
                         ? "not stapling (the certificate names no responder)"
                         : Concat(ocsp.value("status", std::string("none")), " from ", responder);
  if (int64_t next = ocsp.value("nextUpdate", static_cast<int64_t>(0)); next > 0) {
    line += Concat(", next update ", UtcTime(next));
  }
  if (int64_t refresh = ocsp.value("nextRefresh", static_cast<int64_t>(0)); refresh > 0) {
    line += Concat(", next refresh ", UtcTime(refresh));
  }
  if (std::string error = ocsp.value("lastError", std::string()); !error.empty()) {
    line += Concat(" (last fetch failed: ", error, ")");
  }
  std::printf("ocsp staple      %s\n", line.c_str());
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
  PrintOcspStaple(a.value("ocsp", Json::object()));
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

}  // namespace

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

void PrintRefusalDetails(const std::string& command, const Json& answer) {
  if (command == "preflight" && answer.contains("peers")) {
    PrintPreflight(answer);
  }
  if (auto it = answer.find("plaintextClients"); it != answer.end()) {
    std::printf("open plaintext client connections:\n");
    PrintPlaintextClients(*it);
  }
}

std::string Field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? "" : Text(*it);
}

}  // namespace ctl

std::string CliWording(std::string_view sentence) {
  std::string out;
  out.reserve(sentence.size());
  size_t i = 0;
  while (i < sentence.size()) {
    bool replaced = false;
    for (const auto& [protocol, cli] : ctl::kCliWords) {
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

}  // namespace sidecar::proxy
