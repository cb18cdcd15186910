#include "proxy/control/control_requests.h"

// See control_commands.cc: JSON_NOEXCEPTION and only non-throwing calls.
#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "proxy/base/concat.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

namespace {

using Json = ControlJson;
using Reply = ControlReply;

std::string Dump(const Json& answer) { return DumpAnswer(answer); }

Json Refusal(std::string_view sentence) { return RefusalJson(sentence); }

}  // namespace

void DrainRequest(ControlTarget& target, const ControlJson& request, uid_t uid, Reply reply) {
  auto it = request.find("overSeconds");
  if (it == request.end() || !it->is_number()) {
    reply(Dump(Refusal(
        "drainPlaintext needs \"overSeconds\": the window, in seconds, over which to spread "
        "the closes (e.g. {\"cmd\":\"drainPlaintext\",\"overSeconds\":60}).")));
    return;
  }
  double seconds = it->get<double>();
  if (!std::isfinite(seconds) || seconds < 0 || seconds > ControlCommands::kMaxDrainSeconds) {
    reply(Dump(Refusal(Concat("drainPlaintext: \"overSeconds\" must be between 0 and ",
                              ControlCommands::kMaxDrainSeconds, "."))));
    return;
  }
  auto over_ms = static_cast<uint64_t>(std::llround(seconds * 1000));
  target.DrainPlaintext(
      over_ms, [seconds, uid, reply = std::move(reply)](DrainStarted started) mutable {
        Log(Severity::kInfo, Component::kControl, "draining plaintext connections",
            {{"clients", started.clients},
             {"members", started.members},
             {"overSeconds", seconds},
             {"replacedPending", started.replaced},
             {"uid", static_cast<int64_t>(uid)}});
        Json answer = Json::object();
        answer["ok"] = true;
        answer["closing"] = started.clients + started.members;
        answer["members"] = started.members;
        answer["overSeconds"] = seconds;
        if (started.replaced > 0) {
          answer["replacedPending"] = started.replaced;
        }
        reply(Dump(answer));
      });
}

void ClientsRequest(ControlTarget& target, const ControlJson& request, Reply reply) {
  std::optional<Transport> only;
  if (auto it = request.find("transport"); it != request.end()) {
    if (it->is_string() && it->get_ref<const std::string&>() == "tls") {
      only = Transport::kTls;
    } else if (it->is_string() && it->get_ref<const std::string&>() == "plaintext") {
      only = Transport::kPlaintext;
    } else {
      reply(Dump(Refusal("clients: \"transport\" must be \"tls\" or \"plaintext\".")));
      return;
    }
  }
  std::vector<ClientRow> rows = target.Clients(only);
  std::sort(rows.begin(), rows.end(), [](const ClientRow& a, const ClientRow& b) {
    return std::tie(a.transport, a.state, a.address, a.application) <
           std::tie(b.transport, b.state, b.address, b.application);
  });
  Json clients = Json::array();
  for (const ClientRow& row : rows) {
    clients.push_back(Json{{"address", row.address},
                           {"application", row.application},
                           {"driver", row.driver},
                           {"kind", row.member ? "member" : "client"},
                           {"transport", row.transport == Transport::kTls ? "tls" : "plaintext"},
                           {"state", ClientStateName(row.state)},
                           {"active", row.active},
                           {"total", row.total},
                           {"lastSeen", certs::FormatUnixTime(row.last_seen_unix_ms / 1000)},
                           {"subject", row.subject},
                           {"maxQueuedToClient", row.max_queued_to_client},
                           {"maxQueuedToUpstream", row.max_queued_to_upstream}});
  }
  Json answer = Json::object();
  answer["ok"] = true;
  answer["clients"] = clients;
  reply(Dump(answer));
}

void PreflightRequest(ControlTarget& target, ControlMemory& memory, Mode mode, uid_t uid,
                      Reply reply) {
  const bool tls = EgressUsesTls(mode);
  target.Preflight(mode, [&target, &memory, mode, tls, uid, reply = std::move(reply)](
                             absl::StatusOr<std::vector<PeerPreflight>> rows) mutable {
    if (!rows.ok()) {
      reply(Dump(Refusal(Concat("preflight: ", rows.status().message(), "."))));
      return;
    }
    bool ok = true;
    Json peers = Json::array();
    PreflightRecord record{NowUnix(), std::string(ModeName(mode)), true, {}};
    for (const PeerPreflight& row : *rows) {
      bool passed = row.error.empty() && row.connected && (!tls || row.handshake);
      ok = ok && passed;
      record.peers.push_back(
          {row.target, passed,
           passed ? (tls ? Concat(row.version, ", verified") : std::string("connected"))
                  : row.error});
      Json peer = Json::object();
      peer["target"] = row.target;
      peer["connected"] = row.connected;
      if (tls) {
        peer["handshake"] = row.handshake;
        if (row.verification.empty()) {
          peer["verification"] = nullptr;
        } else {
          peer["verification"] = row.verification;
        }
        peer["version"] = row.version;
      }
      peer["error"] = row.error;
      peers.push_back(std::move(peer));
      if (!passed) {
        Log(Severity::kWarning, Component::kControl, "preflight failed for an egress peer",
            {{"mode", ModeName(mode)}, {"target", row.target}, {"error", row.error}});
      }
    }
    if (tls) {
      target.RecordPreflight(ok);
    }
    record.ok = ok;
    memory.preflight = std::move(record);
    Log(Severity::kInfo, Component::kControl, "preflight",
        {{"mode", ModeName(mode)},
         {"ok", ok},
         {"peers", static_cast<int64_t>(rows->size())},
         {"uid", static_cast<int64_t>(uid)}});
    Json answer = Json::object();
    answer["ok"] = ok;
    answer["mode"] = ModeName(mode);
    answer["transport"] = tls ? "tls" : "plaintext";
    answer["peers"] = std::move(peers);
    if (!ok) {
      answer["error"] = Concat(
          "Preflight for ", ModeName(mode), " failed: ",
          tls ? "not every egress peer completed a verified TLS handshake"
              : "not every egress peer could be reached",
          " (see `peers`); fix the peers (their mode, certificates, CA) before changing the mode.");
    } else if (rows->empty()) {
      answer["warnings"] = Json::array(
          {"No [[egress.peers]] are configured, so there was nothing to dial; connections "
           "through a transparent egress listener are not covered by preflight."});
    }
    reply(Dump(answer));
  });
}

}  // namespace sidecar::proxy
