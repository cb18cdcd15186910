#include "proxy/ocsp/ocsp_stapler.h"

#include <openssl/rand.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "certs/certificate_info.h"
#include "certs/ocsp_verify.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {
namespace {

double Unix(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) {
    return 0;
  }
  return absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<std::unique_ptr<OcspStapler>> OcspStapler::Create(
    uv_loop_t* loop, const certs::OcspSettings& settings, OcspMetrics* metrics) {
  std::unique_ptr<OcspStapler> stapler(new OcspStapler(loop, settings, metrics));
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  stapler->timer_ = *std::move(timer);
  stapler->timer_.get()->data = stapler.get();
  // The refresh timer alone never keeps the sidecar from exiting.
  uv_unref(stapler->timer_.base());
  return stapler;
}

OcspStapler::~OcspStapler() { Close(); }

void OcspStapler::Close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  if (post_ != nullptr) {
    post_->Cancel();
    post_ = nullptr;
  }
  timer_.Close();
}

void OcspStapler::OnSnapshot(std::shared_ptr<const certs::TlsSnapshot> snapshot) {
  if (closed_) {
    return;
  }
  snapshot_ = std::move(snapshot);
  certs::OcspStaple* staple = snapshot_ ? snapshot_->ocsp_staple() : nullptr;
  if (staple == nullptr) {
    id_.reset();
    url_.clear();
    return;  // OCSP off, or no server certificate
  }
  X509* leaf = snapshot_->server_leaf();
  must_staple_ = certs::HasMustStaple(leaf);
  std::vector<std::string> urls = certs::OcspResponderUrls(leaf);
  std::string subject = certs::FormatName(X509_get_subject_name(leaf));
  if (urls.empty() || snapshot_->server_issuer() == nullptr) {
    std::string why = urls.empty() ? "the server certificate names no OCSP responder"
                                   : "the issuer of the server certificate is in neither "
                                     "the certificate key file's chain nor CAFile";
    id_.reset();
    url_.clear();
    last_error_ = why;
    if (must_staple_) {
      Log(Severity::kError, Component::kTls,
          "the server certificate demands OCSP stapling (must-staple) but nothing can be "
          "stapled: clients that honour must-staple will refuse this server",
          {{"subject", subject}, {"reason", why}});
    } else if (!urls.empty()) {
      Log(Severity::kWarning, Component::kTls, "not stapling OCSP responses",
          {{"subject", subject}, {"reason", why}});
    }
    metrics_->SetStaple("none", 0, 0);
    return;
  }
  auto id = certs::MakeOcspCertId(leaf, snapshot_->server_issuer());
  if (!id.ok()) {
    last_error_ = std::string(id.status().message());
    return;
  }
  bool same = id_.has_value() && *id_ == *id && url_ == urls.front();
  id_ = *std::move(id);
  url_ = urls.front();
  if (same && current_ != nullptr && current_->next_update > absl::Now()) {
    staple->Set(current_);  // the same certificate after a reload keeps its response
    return;
  }
  current_ = nullptr;
  if (post_ != nullptr) {
    post_->Cancel();  // was for the previous certificate
    post_ = nullptr;
  }
  retry_ = kMinRetry;
  FetchNow();
}

void OcspStapler::FetchNow() {
  if (closed_ || !id_.has_value() || post_ != nullptr) {
    return;
  }
  uint8_t nonce[16];
  RAND_bytes(nonce, sizeof(nonce));
  std::string nonce_bytes(reinterpret_cast<char*>(nonce), sizeof(nonce));
  auto request = certs::BuildOcspRequest(*id_, nonce_bytes);
  if (!request.ok()) {
    Failed(std::string(request.status().message()));
    return;
  }
  int timeout_secs = settings_.stapling_timeout_secs > 0 ? settings_.stapling_timeout_secs
                                                         : settings_.verify_timeout_secs;
  post_ = StartOcspPost(loop_, url_, *std::move(request), absl::Seconds(timeout_secs),
                        [this, nonce_bytes](absl::StatusOr<std::string> body) {
                          OnFetched(std::move(body), nonce_bytes);
                        });
}

void OcspStapler::OnFetched(absl::StatusOr<std::string> body, std::string nonce) {
  post_ = nullptr;
  if (closed_ || absl::IsCancelled(body.status())) {
    return;
  }
  if (!body.ok()) {
    metrics_->ResponderRequest(true, false);
    Failed(std::string(body.status().message()));
    return;
  }
  certs::OcspVerifyOptions options;
  options.nonce = nonce;
  auto verdict = certs::ParseAndVerifyOcspResponse(*body, snapshot_->server_leaf(),
                                                   snapshot_->server_issuer(), options);
  metrics_->ResponderRequest(true, verdict.ok());
  if (!verdict.ok()) {
    Failed(std::string(verdict.status().message()));
    return;
  }
  auto response = std::make_shared<certs::StapledResponse>();
  response->der = *std::move(body);
  response->status = verdict->status;
  response->this_update = verdict->this_update;
  response->next_update = verdict->next_update;
  response->fetched_at = absl::Now();
  Install(std::move(response));
}

void OcspStapler::Install(std::shared_ptr<const certs::StapledResponse> response) {
  current_ = response;
  last_error_.clear();
  retry_ = kMinRetry;
  snapshot_->ocsp_staple()->Set(response);
  std::string subject = certs::FormatName(X509_get_subject_name(snapshot_->server_leaf()));
  const char* status = certs::OcspCertStatusName(response->status);
  metrics_->SetStaple(status, Unix(response->this_update), Unix(response->next_update));
  metrics_->StapleFetched(Unix(response->fetched_at));
  if (response->status == certs::OcspCertStatus::kGood) {
    Log(Severity::kInfo, Component::kTls, "stapling a fresh OCSP response",
        {{"subject", subject}, {"status", status},
         {"nextUpdate", Rfc3339(response->next_update)}});
  } else {
    // Stapled all the same: it is the truth, and clients are entitled to it.
    Log(Severity::kError, Component::kTls,
        response->status == certs::OcspCertStatus::kRevoked
            ? "the OCSP responder says the server certificate is REVOKED: clients that check "
              "will refuse it; replace the certificate"
            : "the OCSP responder does not know the server certificate (status unknown)",
        {{"subject", subject}, {"status", status}, {"responder", url_}});
  }
  // Refresh after the configured period, or halfway to nextUpdate; never after nextUpdate.
  absl::Time now = absl::Now();
  absl::Duration until_stale = response->next_update - now;
  absl::Duration delay = settings_.stapling_refresh_period_secs > 0
                             ? absl::Seconds(settings_.stapling_refresh_period_secs)
                             : (response->next_update == absl::InfiniteFuture()
                                    ? absl::Hours(1)
                                    : until_stale / 2);
  delay = std::min(delay, until_stale - absl::Seconds(1));
  ScheduleIn(std::clamp(delay, absl::Seconds(1), absl::Hours(24)));
}

void OcspStapler::Failed(const std::string& why) {
  last_error_ = why;
  absl::Time now = absl::Now();
  std::string subject = certs::FormatName(X509_get_subject_name(snapshot_->server_leaf()));
  if (current_ != nullptr && current_->next_update <= now) {
    // Stale: stapling it would only make clients refuse us. Its times stay published, so
    // the staple-stale alert sees how long ago nextUpdate passed.
    metrics_->SetStaple("none", Unix(current_->this_update), Unix(current_->next_update));
    current_ = nullptr;
    snapshot_->ocsp_staple()->Set(nullptr);
  }
  Log(must_staple_ && current_ == nullptr ? Severity::kError : Severity::kWarning,
      Component::kTls,
      must_staple_ && current_ == nullptr
          ? "cannot fetch the OCSP response that the must-staple server certificate needs: "
            "clients that honour must-staple will refuse this server"
          : "cannot fetch an OCSP response to staple; will retry",
      {{"subject", subject},
       {"responder", url_},
       {"error", why},
       {"stapled", current_ != nullptr},
       {"retryInSeconds", static_cast<int64_t>(absl::ToInt64Seconds(retry_))}});
  ScheduleIn(retry_);
  retry_ = std::min(retry_ * 2, kMaxRetry);
}

void OcspStapler::ScheduleIn(absl::Duration delay) {
  if (closed_) {
    return;
  }
  next_refresh_ = absl::Now() + delay;
  metrics_->SetNextRefresh(Unix(next_refresh_));
  uv_timer_start(timer_.get(), &OnTimer,
                 static_cast<uint64_t>(std::max<int64_t>(absl::ToInt64Milliseconds(delay), 1)),
                 0);
}

void OcspStapler::OnTimer(uv_timer_t* timer) {
  static_cast<OcspStapler*>(timer->data)->FetchNow();
}

certs::OcspStapleState OcspStapler::State() const {
  certs::OcspStapleState state;
  state.enabled = snapshot_ != nullptr && snapshot_->ocsp_staple() != nullptr;
  state.responder = url_;
  state.must_staple = must_staple_;
  state.status = current_ != nullptr ? certs::OcspCertStatusName(current_->status) : "none";
  if (current_ != nullptr) {
    state.this_update = static_cast<int64_t>(Unix(current_->this_update));
    state.next_update = static_cast<int64_t>(Unix(current_->next_update));
  }
  if (id_.has_value() && next_refresh_ != absl::InfinitePast()) {
    state.next_refresh = static_cast<int64_t>(Unix(next_refresh_));
  }
  state.last_error = last_error_;
  return state;
}

}  // namespace sidecar::proxy
