#include "proxy/ocsp/ocsp_checker.h"

#include <openssl/rand.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "certs/ocsp_verify.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

certs::OcspQuery CopyQuery(const certs::OcspQuery& query) {
  certs::OcspQuery copy;
  copy.cert = bssl::UpRef(query.cert);
  copy.issuer = bssl::UpRef(query.issuer);
  copy.id = query.id;
  copy.url = query.url;
  copy.subject = query.subject;
  return copy;
}

absl::StatusOr<std::shared_ptr<OcspChecker>> OcspChecker::Create(
    uv_loop_t* loop, const certs::OcspSettings& settings, OcspMetrics* metrics) {
  std::shared_ptr<OcspChecker> checker(new OcspChecker(loop, settings, metrics));
  auto mailbox = LoopMailbox::Create(loop);
  if (!mailbox.ok()) {
    return mailbox.status();
  }
  checker->mailbox_ = *std::move(mailbox);
  return checker;
}

OcspChecker::~OcspChecker() = default;

std::optional<certs::OcspAnswer> OcspChecker::Lookup(const certs::OcspQuery& query,
                                                     absl::AnyInvocable<void()> wake) {
  std::string key = query.id.Key();
  absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = cache_.find(key); it != cache_.end()) {
    if (it->second.expires > now) {
      return it->second.answer;
    }
    cache_.erase(it);
  }
  if (closed_) {
    certs::OcspAnswer answer;
    answer.detail = "shutting down";
    return answer;
  }
  auto [it, first] = waiting_.try_emplace(key);
  if (wake) {
    it->second.push_back(std::move(wake));
  }
  if (first) {
    // The checker outlives its mailbox's tasks: Close closes the mailbox on this loop.
    mailbox_->Post([this, key, query = CopyQuery(query)]() mutable {
      Fetch(std::move(key), std::move(query));
    });
  }
  return std::nullopt;
}

void OcspChecker::Fetch(std::string key, certs::OcspQuery query) {
  uint8_t nonce[16];
  RAND_bytes(nonce, sizeof(nonce));
  std::string nonce_bytes(reinterpret_cast<char*>(nonce), sizeof(nonce));
  auto request = certs::BuildOcspRequest(query.id, nonce_bytes);
  if (!request.ok()) {
    Answer(key, {certs::OcspCheckResult::kError, std::string(request.status().message())});
    return;
  }
  absl::Duration timeout = absl::Seconds(settings_.verify_timeout_secs);
  std::string url = query.url;  // `done` takes the query
  auto done = [this, key, query = std::move(query), nonce_bytes](
                  absl::StatusOr<std::string> body) mutable {
    posts_.erase(key);
    if (!body.ok()) {
      if (absl::IsCancelled(body.status())) {
        Answer(key, {certs::OcspCheckResult::kError, "shutting down"});
        return;
      }
      metrics_->ResponderRequest(false, false);
      bool timeout = absl::IsDeadlineExceeded(body.status());
      Answer(key, {timeout ? certs::OcspCheckResult::kTimeout : certs::OcspCheckResult::kError,
                   std::string(body.status().message())});
      return;
    }
    certs::OcspVerifyOptions options;
    options.nonce = nonce_bytes;
    auto verdict = certs::ParseAndVerifyOcspResponse(*body, query.cert.get(),
                                                     query.issuer.get(), options);
    metrics_->ResponderRequest(false, verdict.ok());
    if (!verdict.ok()) {
      Answer(key, {certs::OcspCheckResult::kError, std::string(verdict.status().message())});
      return;
    }
    certs::OcspAnswer answer;
    answer.result = verdict->status == certs::OcspCertStatus::kGood ? certs::OcspCheckResult::kGood
                    : verdict->status == certs::OcspCertStatus::kRevoked
                        ? certs::OcspCheckResult::kRevoked
                        : certs::OcspCheckResult::kUnknown;
    answer.next_update = verdict->next_update;
    answer.detail = absl::StrCat("from ", query.url);
    Answer(key, std::move(answer));
  };
  posts_[key] = StartOcspPost(loop_, url, *std::move(request), timeout, std::move(done));
}

void OcspChecker::Answer(const std::string& key, certs::OcspAnswer answer) {
  absl::Time now = absl::Now();
  std::vector<absl::AnyInvocable<void()>> wakes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    bool definite = answer.result == certs::OcspCheckResult::kGood ||
                    answer.result == certs::OcspCheckResult::kRevoked;
    // Cache until nextUpdate (RFC 5019 §4); a response without one for an hour; a failure
    // briefly, so the next handshakes soft-fail at once instead of each waiting.
    absl::Time expires = definite ? std::min(answer.next_update, now + absl::Hours(1) * 24)
                                  : now + kFailureMemory;
    if (definite && answer.next_update == absl::InfiniteFuture()) {
      expires = now + absl::Hours(1);
    }
    if (cache_.size() >= kMaxCached) {
      cache_.clear();  // a flood of distinct certificates: start over rather than grow
    }
    cache_[key] = Entry{std::move(answer), expires};
    if (auto it = waiting_.find(key); it != waiting_.end()) {
      wakes = std::move(it->second);
      waiting_.erase(it);
    }
  }
  for (auto& wake : wakes) {
    wake();
  }
}

void OcspChecker::Record(const certs::OcspQuery& query, const certs::OcspAnswer& answer,
                         bool stapled, bool accepted) {
  metrics_->Check(answer.result, stapled);
  bool soft = accepted && answer.result != certs::OcspCheckResult::kGood;
  if (soft) {
    metrics_->SoftFailure();
  }
  if (answer.result == certs::OcspCheckResult::kGood) {
    return;
  }
  // One warning per 10 seconds at most: a responder outage must not flood the log.
  int64_t now_ns = absl::ToUnixNanos(absl::Now());
  int64_t last = last_warning_ns_.load();
  if (answer.result != certs::OcspCheckResult::kRevoked &&
      (now_ns - last < 10'000'000'000 || !last_warning_ns_.compare_exchange_strong(last, now_ns))) {
    return;
  }
  std::string msg = answer.result == certs::OcspCheckResult::kRevoked
                        ? "peer certificate is revoked (OCSP); refused"
                    : soft ? "no usable OCSP answer for a peer certificate; accepted (soft-fail)"
                           : "no usable OCSP answer for a peer certificate; refused (hard-fail)";
  Log(Severity::kWarning, Component::kTls, msg,
      {{"subject", query.subject},
       {"responder", query.url},
       {"result", certs::OcspCheckResultName(answer.result)},
       {"detail", answer.detail},
       {"stapled", stapled}});
}

void OcspChecker::Close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      return;
    }
    closed_ = true;
  }
  // Cancelling answers the waiting handshakes (they soft-fail) through Answer.
  auto posts = std::move(posts_);
  for (auto& [key, token] : posts) {
    token->Cancel();
  }
  mailbox_->Close();
  std::map<std::string, std::vector<absl::AnyInvocable<void()>>> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(waiting_);
  }
  for (auto& [key, wakes] : waiting) {
    for (auto& wake : wakes) {
      wake();  // their Lookup now answers "shutting down"
    }
  }
}

}  // namespace sidecar::proxy
