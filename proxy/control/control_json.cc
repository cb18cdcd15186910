#include "proxy/control/control_json.h"

#include <chrono>

namespace sidecar::proxy {

std::string DumpAnswer(const ControlJson& answer) {
  // Peers' strings (application names) may hold invalid UTF-8: replace, never throw.
  return answer.dump(-1, ' ', false, ControlJson::error_handler_t::replace);
}

ControlJson RefusalJson(std::string_view sentence) {
  ControlJson answer = ControlJson::object();
  answer["ok"] = false;
  answer["error"] = std::string(sentence);
  return answer;
}

ControlJson PlaintextClientsJson(const std::vector<OpenPlaintextClient>& clients) {
  ControlJson rows = ControlJson::array();
  for (const OpenPlaintextClient& client : clients) {
    rows.push_back(ControlJson{{"address", client.address},
                               {"application", client.application},
                               {"driver", client.driver},
                               {"kind", client.member ? "member" : "client"},
                               {"connections", client.connections}});
  }
  return rows;
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ControlJson CertificatesJson(const std::vector<certs::CertificateInfo>& certificates) {
  ControlJson rows = ControlJson::array();
  for (const certs::CertificateInfo& cert : certificates) {
    rows.push_back(ControlJson{{"role", cert.role},
                               {"subject", cert.subject},
                               {"notAfter", certs::FormatUnixTime(cert.not_after)},
                               {"sha1", cert.sha1_hex},
                               {"file", cert.source}});
  }
  return rows;
}

}  // namespace sidecar::proxy
