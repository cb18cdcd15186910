// OcspMetrics: every OCSP metric, declared once on the sidecar's registry; the checker and
// the stapler only touch references held here. Labels are bounded (results, sources).
//
//   tls_sidecar_ocsp_checks_total{result, source}   peer certificate checks; result good,
//       revoked, unknown, error, timeout; source staple (the peer's) or responder
//   tls_sidecar_ocsp_soft_failures_total            peers accepted without a usable answer
//   tls_sidecar_ocsp_responder_requests_total{purpose, result}  fetches; purpose staple or
//       verify, result success or failure
//   tls_sidecar_ocsp_staple_status{status}          1 for what the staple says (good,
//       revoked, unknown, none), 0 for the others
//   tls_sidecar_ocsp_staple_this_update_timestamp_seconds   the staple's thisUpdate (its
//       age is time() minus this); 0 without a staple
//   tls_sidecar_ocsp_staple_next_update_timestamp_seconds   its nextUpdate (kept when a stale
//       staple is withdrawn, for the alert); 0 when nothing was stapled
//   tls_sidecar_ocsp_staple_next_refresh_timestamp_seconds  when the next fetch is due
//   tls_sidecar_ocsp_staple_last_success_timestamp_seconds  the last fetch that succeeded
//
// Thread-safe (prometheus-cpp metrics are).
#ifndef SIDECAR_PROXY_OCSP_OCSP_METRICS_H_
#define SIDECAR_PROXY_OCSP_OCSP_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <string_view>

#include "certs/ocsp_peer_verify.h"

namespace sidecar::proxy {

class OcspMetrics {
 public:
  explicit OcspMetrics(prometheus::Registry& registry);

  void Check(certs::OcspCheckResult result, bool stapled);
  void SoftFailure() { soft_failures_->Increment(); }
  void ResponderRequest(bool for_staple, bool success);
  // SetStaple publishes the staple's state; status "none" clears the timestamps.
  void SetStaple(std::string_view status, double this_update, double next_update);
  void SetNextRefresh(double when) { next_refresh_->Set(when); }
  void StapleFetched(double when) { last_success_->Set(when); }

 private:
  static constexpr int kResults = 5;
  static constexpr std::array<std::string_view, 4> kStapleStatuses = {"good", "revoked",
                                                                      "unknown", "none"};
  std::array<prometheus::Counter*, kResults * 2> checks_{};
  prometheus::Counter* soft_failures_;
  std::array<prometheus::Counter*, 4> requests_{};
  std::array<prometheus::Gauge*, 4> staple_status_{};
  prometheus::Gauge* this_update_;
  prometheus::Gauge* next_update_;
  prometheus::Gauge* next_refresh_;
  prometheus::Gauge* last_success_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_OCSP_METRICS_H_
