// HandshakeResume lets a TLS handshake that waits for an OCSP answer
// (certs/ocsp_peer_verify.h: ssl_verify_retry) be resumed on the loop that runs it: when
// the answer is in, the resume callback runs on that loop, where the connection drives the
// handshake again. It is the data path's whole share of OCSP: one per TLS endpoint.
//
// It is held inline by its endpoint and costs no allocation until a check actually waits
// (rare): then a mailbox is made, through which the OCSP fetcher's thread reaches the loop.
// Loop thread only, except the callable MakeWake returns. The callback never runs after
// this object is destroyed; a wake that arrives later finds a closed mailbox and is dropped.
#ifndef SIDECAR_PROXY_OCSP_HANDSHAKE_RESUME_H_
#define SIDECAR_PROXY_OCSP_HANDSHAKE_RESUME_H_

#include <openssl/ssl.h>
#include <uv.h>

#include <memory>

#include "absl/functional/any_invocable.h"
#include "certs/ocsp_peer_verify.h"
#include "proxy/base/close_reason.h"

namespace sidecar::proxy {

class HandshakeResume final : public certs::HandshakeWaker {
 public:
  HandshakeResume() = default;
  ~HandshakeResume() override;
  HandshakeResume(const HandshakeResume&) = delete;
  HandshakeResume& operator=(const HandshakeResume&) = delete;

  // Attach makes checks of `ssl`'s peer that wait resume through `resume`, run on `loop`.
  // Does nothing when `ssl` checks no peer by OCSP (nothing will ever wait). `ssl` must be
  // freed before this object, as the endpoint that holds both ensures.
  void Attach(SSL* ssl, uv_loop_t* loop, absl::AnyInvocable<void()> resume);

  absl::AnyInvocable<void()> MakeWake() override;

 private:
  struct Waiting;  // made by the first MakeWake: the mailbox, and whether we still exist

  uv_loop_t* loop_ = nullptr;
  absl::AnyInvocable<void()> resume_;
  std::shared_ptr<Waiting> waiting_;
};

// OcspCloseReason is why a failed handshake on `ssl` closes: certificate_revoked when OCSP
// said the peer's certificate is revoked, ocsp_unavailable when hard-fail refused it for
// want of an answer, else `otherwise`.
CloseReason OcspCloseReason(const SSL* ssl, CloseReason otherwise);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_HANDSHAKE_RESUME_H_
