#include "proxy/ocsp/handshake_resume.h"

#include <memory>
#include <utility>

#include "certs/ocsp_peer_verify.h"
#include "proxy/base/loop_mailbox.h"

namespace sidecar::proxy {

struct HandshakeResume::Waiting {
  std::shared_ptr<LoopMailbox> mailbox;
  HandshakeResume* owner;  // read and cleared on the loop thread only
};

HandshakeResume::~HandshakeResume() {
  if (waiting_ != nullptr) {
    waiting_->owner = nullptr;
    waiting_->mailbox->Close();  // on the loop thread, where the SSL is freed
  }
}

void HandshakeResume::Attach(SSL* ssl, uv_loop_t* loop, absl::AnyInvocable<void()> resume) {
  if (!certs::ChecksPeersByOcsp(ssl)) {
    return;  // OCSP off, or a context that verifies no peer: nothing will ever wait
  }
  loop_ = loop;
  resume_ = std::move(resume);
  certs::SetHandshakeWaker(ssl, this);
}

absl::AnyInvocable<void()> HandshakeResume::MakeWake() {
  if (waiting_ == nullptr) {
    auto mailbox = LoopMailbox::Create(loop_);
    if (!mailbox.ok()) {
      return nullptr;  // the check then soft-fails instead of waiting
    }
    waiting_ = std::make_shared<Waiting>(Waiting{*std::move(mailbox), this});
  }
  // The owner is looked at on the loop thread, where it is destroyed: no race with the
  // connection's end. The mailbox is set once, before any wake can be called.
  return [waiting = waiting_]() mutable {
    waiting->mailbox->Post([waiting] {
      if (waiting->owner != nullptr && waiting->owner->resume_) {
        waiting->owner->resume_();
      }
    });
  };
}


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
