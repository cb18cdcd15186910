// AttachHandshakeResume lets a TLS handshake that waits for an OCSP answer
// (certs/ocsp_peer_verify.h: ssl_verify_retry) be resumed on the loop that runs it: when
// the answer is in, `resume` runs on `loop`, where the connection drives the handshake
// again. It is the data path's whole share of OCSP: one call per TLS session.
//
// Loop thread only. `resume` is destroyed with the SSL and never runs after that; a wake
// that arrives later finds a closed mailbox and is dropped.
#ifndef SIDECAR_PROXY_OCSP_HANDSHAKE_RESUME_H_
#define SIDECAR_PROXY_OCSP_HANDSHAKE_RESUME_H_

#include <openssl/ssl.h>
#include <uv.h>

#include "absl/functional/any_invocable.h"
#include "proxy/base/close_reason.h"

namespace sidecar::proxy {

void AttachHandshakeResume(SSL* ssl, uv_loop_t* loop, absl::AnyInvocable<void()> resume);

// OcspCloseReason is why a failed handshake on `ssl` closes: certificate_revoked when OCSP
// said the peer's certificate is revoked, ocsp_unavailable when hard-fail refused it for
// want of an answer, else `otherwise`.
CloseReason OcspCloseReason(const SSL* ssl, CloseReason otherwise);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_HANDSHAKE_RESUME_H_
