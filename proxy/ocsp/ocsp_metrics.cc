#include "proxy/ocsp/ocsp_metrics.h"

#include <string>

namespace sidecar::proxy {

OcspMetrics::OcspMetrics(prometheus::Registry& registry) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  auto& checks = BuildCounter()
                     .Name("tls_sidecar_ocsp_checks_total")
                     .Help("OCSP checks of peer certificates, by result and source.")
                     .Register(registry);
  for (int r = 0; r < kResults; ++r) {
    for (int stapled = 0; stapled < 2; ++stapled) {
      checks_[r * 2 + stapled] = &checks.Add(
          {{"result", certs::OcspCheckResultName(static_cast<certs::OcspCheckResult>(r))},
           {"source", stapled ? "staple" : "responder"}});
    }
  }
  soft_failures_ = &BuildCounter()
                        .Name("tls_sidecar_ocsp_soft_failures_total")
                        .Help("Peer certificates accepted without a usable OCSP answer.")
                        .Register(registry)
                        .Add({});
  auto& requests = BuildCounter()
                       .Name("tls_sidecar_ocsp_responder_requests_total")
                       .Help("Requests to OCSP responders, by purpose and result.")
                       .Register(registry);
  for (int i = 0; i < 4; ++i) {
    requests_[i] = &requests.Add({{"purpose", i < 2 ? "staple" : "verify"},
                                  {"result", i % 2 ? "success" : "failure"}});
  }
  auto& status = BuildGauge()
                     .Name("tls_sidecar_ocsp_staple_status")
                     .Help("What the stapled OCSP response says (1) of the server certificate.")
                     .Register(registry);
  for (size_t i = 0; i < kStapleStatuses.size(); ++i) {
    staple_status_[i] = &status.Add({{"status", std::string(kStapleStatuses[i])}});
  }
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(registry).Add({});
  };
  this_update_ = gauge("tls_sidecar_ocsp_staple_this_update_timestamp_seconds",
                       "thisUpdate of the stapled OCSP response (0: none).");
  next_update_ = gauge("tls_sidecar_ocsp_staple_next_update_timestamp_seconds",
                       "nextUpdate of the stapled OCSP response (0: none).");
  next_refresh_ = gauge("tls_sidecar_ocsp_staple_next_refresh_timestamp_seconds",
                        "When the stapled OCSP response is next fetched (0: not planned).");
  last_success_ = gauge("tls_sidecar_ocsp_staple_last_success_timestamp_seconds",
                        "When an OCSP response for stapling was last fetched (0: never).");
  SetStaple("none", 0, 0);
}

void OcspMetrics::Check(certs::OcspCheckResult result, bool stapled) {
  checks_[static_cast<int>(result) * 2 + (stapled ? 1 : 0)]->Increment();
}

void OcspMetrics::ResponderRequest(bool for_staple, bool success) {
  requests_[(for_staple ? 0 : 2) + (success ? 1 : 0)]->Increment();
}

void OcspMetrics::SetStaple(std::string_view status, double this_update, double next_update) {
  for (size_t i = 0; i < kStapleStatuses.size(); ++i) {
    staple_status_[i]->Set(kStapleStatuses[i] == status ? 1 : 0);
  }
  this_update_->Set(this_update);
  next_update_->Set(next_update);
}

}  // namespace sidecar::proxy
