#include "proxy/control/readiness_check.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "proxy/base/concat.h"

namespace sidecar::proxy {

namespace {

// Past this many client groups a warning names the count of the rest instead: the page and
// the terminal stay readable when hundreds of hosts are still plaintext.
constexpr size_t kMaxNamedGroups = 5;

std::string Who(const ClientRow& row) {
  std::string application = row.application.empty() ? "(no application name)" : row.application;
  std::string driver = row.driver.empty() ? "unknown driver" : row.driver;
  return Concat(row.member ? "cluster member " : "application ", application, " (", row.address,
                ", ", driver, ")");
}

// Plaintext rows of `clients` in `state`, with open connections when connected, busiest first.
std::vector<ClientRow> PlaintextRows(const std::vector<ClientRow>& clients, ClientState state) {
  std::vector<ClientRow> rows;
  for (const ClientRow& row : clients) {
    if (row.transport == Transport::kPlaintext && row.state == state &&
        (state == ClientState::kRefused || row.active > 0)) {
      rows.push_back(row);
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [state](const ClientRow& a, const ClientRow& b) {
    return state == ClientState::kRefused ? a.total > b.total : a.active > b.active;
  });
  return rows;
}

void AddGroups(const std::vector<ClientRow>& rows, std::vector<ReadinessItem>* out,
               std::string_view code, auto sentence) {
  for (size_t i = 0; i < rows.size() && i < kMaxNamedGroups; ++i) {
    out->push_back({std::string(code), sentence(rows[i])});
  }
  if (rows.size() > kMaxNamedGroups) {
    out->push_back({std::string(code), Concat("... and ", rows.size() - kMaxNamedGroups,
                                              " more client groups (see `clients`).")});
  }
}

void PlaintextWarnings(const ReadinessFacts& facts, bool gate_listed_them,
                       std::vector<ReadinessItem>* warnings) {
  const Mode to = facts.transition.to;
  if (!gate_listed_them && to != Mode::kRequireTls) {
    AddGroups(PlaintextRows(facts.clients, ClientState::kConnected), warnings,
              "plaintext_connected", [](const ClientRow& row) {
                return Concat(row.active, row.active == 1 ? " plaintext connection" :
                                                            " plaintext connections",
                              " from ", Who(row),
                              " still open; requireTLS will refuse it later: move it to TLS "
                              "(tls=true) or close it with `drainPlaintext`.");
              });
  }
  AddGroups(PlaintextRows(facts.clients, ClientState::kRefused), warnings, "plaintext_refused",
            [](const ClientRow& row) {
              return Concat(Who(row), " was refused ", row.total,
                            row.total == 1 ? " plaintext connection" : " plaintext connections",
                            " (last at ", certs::FormatUnixTime(row.last_seen_unix_ms / 1000),
                            "): it still connects without TLS; set tls=true in its "
                            "connection string.");
            });
}

void PreflightWarning(const ReadinessFacts& facts, uint32_t obstacles,
                      std::vector<ReadinessItem>* warnings) {
  const TransitionRequest& t = facts.transition;
  if (t.egress_peers == 0 || !EgressUsesTls(t.to) || (obstacles & kNoPreflight) != 0) {
    return;
  }
  std::string state;
  if (!t.last_preflight) {
    state = "No preflight since start";
  } else if (!t.last_preflight->ok) {
    state = "The last preflight failed";
  } else if (t.last_preflight->age_seconds > kPreflightMaxAgeSeconds) {
    state = Concat("The last preflight is ", t.last_preflight->age_seconds / 60, " minutes old");
  } else {
    return;
  }
  warnings->push_back({"preflight", Concat(state, ": connections to the ", t.egress_peers,
                                           " egress peer", t.egress_peers == 1 ? "" : "s",
                                           " use TLS in ", ModeName(t.to),
                                           "; run `tls-sidecar ctl preflight ", ModeName(t.to),
                                           "` to see that every peer still passes.")});
}

}  // namespace

std::string_view ReadinessReport::Verdict() const {
  if (!ready) {
    return "not ready";
  }
  return warnings.empty() ? "ready" : "ready with warnings";
}

std::optional<Mode> NextMode(Mode mode) {
  if (mode == Mode::kRequireTls) {
    return std::nullopt;
  }
  return static_cast<Mode>(static_cast<int>(mode) + 1);
}

ReadinessReport AssessReadiness(const ReadinessFacts& facts) {
  TransitionRequest request = facts.transition;
  request.force = false;
  // The same decision setMode takes: its reasons are readiness's reasons.
  TransitionDecision decision = DecideTransition(request);

  ReadinessReport report;
  report.from = request.from;
  report.to = request.to;
  report.ready = decision.verdict != TransitionVerdict::kRefused;
  for (const TransitionReason& reason : decision.reasons) {
    report.reasons.push_back({std::string(ObstacleCode(reason.obstacle)), reason.sentence});
  }
  report.plaintext_clients = decision.plaintext_clients;
  if (decision.verdict == TransitionVerdict::kUnchanged) {
    report.note = request.to == Mode::kRequireTls
                      ? "requireTLS is the last step of the upgrade: nothing is left to change."
                      : Concat("The sidecar already runs ", ModeName(request.to), ".");
  }

  for (std::string& warning :
       certs::ExpiryWarnings(facts.certificates, kCertificateExpiryWarningDays, facts.now_unix)) {
    report.warnings.push_back({"certificate_expiry", std::move(warning)});
  }
  PreflightWarning(facts, decision.obstacles, &report.warnings);
  for (const std::string& warning : facts.topology_warnings) {
    report.warnings.push_back({"topology", warning});
  }
  PlaintextWarnings(facts, (decision.obstacles & kPlaintextClients) != 0, &report.warnings);
  return report;
}

std::string_view MetricReason(const ReadinessReport& report) {
  if (report.reasons.empty()) {
    return "none";
  }
  return report.reasons.front().code;
}

}  // namespace sidecar::proxy
