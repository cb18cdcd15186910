// OcspChecker answers revocation questions about peer certificates for the verify callback
// (certs/ocsp_peer_verify.h): from a cache while an answer is fresh (until its nextUpdate),
// else by asking the certificate's responder on the control loop with
// tlsOCSPVerifyTimeoutSecs. Concurrent handshakes for one certificate share one request.
// A failed or timed-out request is remembered for kFailureMemory so that an unreachable
// responder costs each handshake nothing (soft-fail) rather than a wait apiece.
//
// Threading: Create and Close on the control loop; Lookup and Record from any loop.
// Shared (shared_ptr) because TLS contexts keep it; after Close, Lookup answers only from
// the cache and fetches nothing.
#ifndef SIDECAR_PROXY_OCSP_OCSP_CHECKER_H_
#define SIDECAR_PROXY_OCSP_OCSP_CHECKER_H_

#include <uv.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "certs/ocsp_peer_verify.h"
#include "certs/tls_settings.h"
#include "proxy/base/loop_mailbox.h"
#include "proxy/ocsp/http_post.h"
#include "proxy/ocsp/ocsp_metrics.h"

namespace sidecar::proxy {

class OcspChecker : public certs::OcspStatusSource {
 public:
  static constexpr absl::Duration kFailureMemory = absl::Seconds(30);
  static constexpr size_t kMaxCached = 10000;

  // `metrics` must outlive the checker.
  static absl::StatusOr<std::shared_ptr<OcspChecker>> Create(uv_loop_t* loop,
                                                            const certs::OcspSettings& settings,
                                                            OcspMetrics* metrics);
  ~OcspChecker() override;

  std::optional<certs::OcspAnswer> Lookup(const certs::OcspQuery& query,
                                          absl::AnyInvocable<void()> wake) override;
  void Record(const certs::OcspQuery& query, const certs::OcspAnswer& answer, bool stapled,
              bool accepted) override;

  // Close cancels requests under way (their handshakes are woken and soft-fail) and stops
  // fetching. Control loop only; idempotent.
  void Close();

 private:
  OcspChecker(uv_loop_t* loop, const certs::OcspSettings& settings, OcspMetrics* metrics)
      : loop_(loop), settings_(settings), metrics_(metrics) {}
  // Fetch runs on the control loop.
  void Fetch(std::string key, certs::OcspQuery query);
  void Answer(const std::string& key, certs::OcspAnswer answer);

  struct Entry {
    certs::OcspAnswer answer;
    absl::Time expires;
  };

  uv_loop_t* loop_;
  const certs::OcspSettings settings_;
  OcspMetrics* metrics_;
  std::shared_ptr<LoopMailbox> mailbox_;
  std::mutex mutex_;
  std::map<std::string, Entry> cache_;                                      // guarded
  std::map<std::string, std::vector<absl::AnyInvocable<void()>>> waiting_;  // guarded
  bool closed_ = false;                                                     // guarded
  std::map<std::string, std::shared_ptr<OcspPostToken>> posts_;  // control loop only
  std::atomic<int64_t> last_warning_ns_{0};
};

// CopyQuery takes new references on the certificates of `query`.
certs::OcspQuery CopyQuery(const certs::OcspQuery& query);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_OCSP_CHECKER_H_
