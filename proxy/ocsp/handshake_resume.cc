#include "proxy/ocsp/handshake_resume.h"

#include <memory>
#include <utility>

#include "certs/ocsp_peer_verify.h"
#include "proxy/base/loop_mailbox.h"

namespace sidecar::proxy {
namespace {

// LoopWaker owns, for one SSL, the resume callback and — only while a check waits, which
// is rare — a mailbox on the SSL's loop through which the OCSP fetcher's thread reaches it.
class LoopWaker : public certs::HandshakeWaker {
 public:
  LoopWaker(uv_loop_t* loop, absl::AnyInvocable<void()> resume)
      : loop_(loop), resume_(std::make_shared<absl::AnyInvocable<void()>>(std::move(resume))) {}

  ~LoopWaker() override {
    if (mailbox_ != nullptr) {
      mailbox_->Close();  // on the loop thread, where the SSL is freed
    }
  }

  absl::AnyInvocable<void()> MakeWake() override {
    if (mailbox_ == nullptr) {
      auto mailbox = LoopMailbox::Create(loop_);
      if (!mailbox.ok()) {
        return nullptr;  // the check then soft-fails instead of waiting
      }
      mailbox_ = *std::move(mailbox);
    }
    // The resume callback is reached through a weak reference, checked on the loop thread,
    // where the waker (and so the callback) is destroyed: no race with the connection's end.
    std::weak_ptr<absl::AnyInvocable<void()>> resume = resume_;
    return [mailbox = mailbox_, resume]() mutable {
      mailbox->Post([resume] {
        if (auto alive = resume.lock(); alive != nullptr && *alive) {
          (*alive)();
        }
      });
    };
  }

 private:
  uv_loop_t* loop_;
  std::shared_ptr<absl::AnyInvocable<void()>> resume_;
  std::shared_ptr<LoopMailbox> mailbox_;
};

}  // namespace

void AttachHandshakeResume(SSL* ssl, uv_loop_t* loop, absl::AnyInvocable<void()> resume) {
  if (!certs::ChecksPeersByOcsp(ssl)) {
    return;  // OCSP off, or a context that verifies no peer: nothing will ever wait
  }
  certs::SetHandshakeWaker(ssl, std::make_unique<LoopWaker>(loop, std::move(resume)));
}

}  // namespace sidecar::proxy

namespace sidecar::proxy {

CloseReason OcspCloseReason(const SSL* ssl, CloseReason otherwise) {
  if (certs::PeerCertificateRevoked(ssl)) {
    return CloseReason::kCertificateRevoked;
  }
  if (certs::PeerOcspRefused(ssl)) {
    return CloseReason::kOcspUnavailable;
  }
  return otherwise;
}

}  // namespace sidecar::proxy
