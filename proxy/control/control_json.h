// The JSON pieces every control answer is made of (SPEC §6): the dump that never throws on
// a peer's invalid UTF-8, the refusal, and the row lists that more than one command answers
// with. JSON_NOEXCEPTION holds for every user (proxy_json); any thread.
#ifndef SIDECAR_PROXY_CONTROL_CONTROL_JSON_H_
#define SIDECAR_PROXY_CONTROL_CONTROL_JSON_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "certs/certificate_info.h"
#include "proxy/control/mode_transition.h"

namespace sidecar::proxy {

using ControlJson = nlohmann::ordered_json;

// DumpAnswer is one answer line (no newline); invalid UTF-8 from peers is replaced.
std::string DumpAnswer(const ControlJson& answer);
// RefusalJson is {"ok":false,"error":sentence}.
ControlJson RefusalJson(std::string_view sentence);
// PlaintextClientsJson is the `plaintextClients` rows of a refusal or a readiness answer.
ControlJson PlaintextClientsJson(const std::vector<OpenPlaintextClient>& clients);
// NowUnix is the wall clock in Unix seconds, as answers and the status page show times.
int64_t NowUnix();
// CertificatesJson is the `certificates` rows of status and reload.
ControlJson CertificatesJson(const std::vector<certs::CertificateInfo>& certificates);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_CONTROL_JSON_H_
