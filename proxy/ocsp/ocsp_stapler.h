// OcspStapler keeps the server certificate's OCSP response fresh in the current TLS
// snapshot's staple (certs/ocsp_staple.h): it fetches from the responder the certificate's
// AIA names at start, then again every ocspStaplingRefreshPeriodSecs, or halfway to the
// response's nextUpdate when no period is set (and always before nextUpdate), each fetch
// bounded by tlsOCSPStaplingTimeoutSecs. A failed fetch is retried with backoff while the
// old response stays stapled until its nextUpdate; a stale one is withdrawn. Handshakes
// never wait for any of this. A certificate reload hands the new snapshot over: the same
// certificate keeps its response, a new one is fetched at once.
//
// A must-staple certificate (RFC 7633) without a response is logged as an error, loudly:
// clients that honour must-staple refuse the server until a response is stapled.
//
// Control loop only.
#ifndef SIDECAR_PROXY_OCSP_OCSP_STAPLER_H_
#define SIDECAR_PROXY_OCSP_OCSP_STAPLER_H_

#include <uv.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "certs/ocsp_request.h"
#include "certs/ocsp_staple.h"
#include "certs/tls_snapshot.h"
#include "proxy/base/uv_handle.h"
#include "proxy/ocsp/http_post.h"
#include "proxy/ocsp/ocsp_metrics.h"

namespace sidecar::proxy {

class OcspStapler {
 public:
  static constexpr absl::Duration kMinRetry = absl::Seconds(5);
  static constexpr absl::Duration kMaxRetry = absl::Minutes(5);

  // `metrics` must outlive the stapler.
  static absl::StatusOr<std::unique_ptr<OcspStapler>> Create(uv_loop_t* loop,
                                                            const certs::OcspSettings& settings,
                                                            OcspMetrics* metrics);
  ~OcspStapler();
  OcspStapler(const OcspStapler&) = delete;
  OcspStapler& operator=(const OcspStapler&) = delete;

  // OnSnapshot starts stapling for `snapshot` (at start and after every reload).
  void OnSnapshot(std::shared_ptr<const certs::TlsSnapshot> snapshot);

  // State is what `status` shows.
  certs::OcspStapleState State() const;

  // Close cancels a fetch under way and stops the timer; idempotent.
  void Close();

 private:
  OcspStapler(uv_loop_t* loop, const certs::OcspSettings& settings, OcspMetrics* metrics)
      : loop_(loop), settings_(settings), metrics_(metrics) {}
  void FetchNow();
  void OnFetched(absl::StatusOr<std::string> body, std::string nonce);
  void Install(std::shared_ptr<const certs::StapledResponse> response);
  void Failed(const std::string& why);
  void ScheduleIn(absl::Duration delay);
  static void OnTimer(uv_timer_t* timer);

  uv_loop_t* loop_;
  const certs::OcspSettings settings_;
  OcspMetrics* metrics_;
  UvHandle<uv_timer_t> timer_;
  std::shared_ptr<const certs::TlsSnapshot> snapshot_;
  std::optional<certs::OcspCertId> id_;  // of the certificate being stapled
  std::string url_;
  bool must_staple_ = false;
  std::shared_ptr<const certs::StapledResponse> current_;
  std::shared_ptr<OcspPostToken> post_;
  absl::Duration retry_ = kMinRetry;
  absl::Time next_refresh_ = absl::InfinitePast();
  std::string last_error_;
  bool closed_ = false;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_OCSP_STAPLER_H_
