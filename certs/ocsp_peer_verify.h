// Revocation checks of the certificates the sidecar receives — client certificates on
// ingress, peer certificates on egress — by OCSP, as mongod 4.4+ does, inside BoringSSL's
// certificate verification.
//
// InstallOcspPeerVerify replaces a context's verification with our own custom verify
// callback (SSL_CTX_set_custom_verify). The callback first verifies the chain exactly as
// BoringSSL's default would (X509_verify_cert over the context's store and the connection's
// verify parameters: CAs, CRLs, host names), then, for a chain that verified and whose leaf
// names an OCSP responder:
//  - uses the stapled response the peer sent, when it verifies (certs/ocsp_verify.h);
//  - else asks the OcspStatusSource, which answers from its cache or starts a fetch; the
//    callback then returns ssl_verify_retry, the handshake pauses with
//    SSL_ERROR_WANT_CERTIFICATE_VERIFY, and the HandshakeWaker of the connection resumes it
//    on its loop once the answer (or the timeout) is in;
//  - revoked: the handshake fails with a certificate_revoked alert;
//  - unknown, no answer or an unusable answer: soft-fail (accepted, reported to the source
//    for counting and a warning) unless hard_fail, which refuses.
// The verification result stays readable through PeerVerifyFailure and
// PeerCertificateRevoked, since BoringSSL records only "application verification failure"
// for a custom callback.
#ifndef SIDECAR_CERTS_OCSP_PEER_VERIFY_H_
#define SIDECAR_CERTS_OCSP_PEER_VERIFY_H_

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "certs/ocsp_request.h"

namespace sidecar::certs {

// OcspCheckResult is the outcome of one revocation check; the names are metric labels.
enum class OcspCheckResult { kGood, kRevoked, kUnknown, kError, kTimeout };
const char* OcspCheckResultName(OcspCheckResult result);

struct OcspAnswer {
  OcspCheckResult result = OcspCheckResult::kError;
  std::string detail;  // why, for kError/kTimeout; the responder's words otherwise
  absl::Time next_update = absl::InfiniteFuture();
};

// OcspQuery is what a check is about. Certificates are shared references.
struct OcspQuery {
  bssl::UniquePtr<X509> cert;
  bssl::UniquePtr<X509> issuer;
  OcspCertId id;
  std::string url;      // the first http:// responder of the certificate's AIA
  std::string subject;  // RFC 4514, for logs
};

// OcspStatusSource answers revocation questions for the callback; proxy/ implements it with
// a cache and an HTTP fetcher. Any thread may call it (the data loops do).
class OcspStatusSource {
 public:
  virtual ~OcspStatusSource() = default;
  // Lookup returns the cached answer for `query`, or nullopt after making sure a fetch is
  // under way; `wake` (may be null) is then called exactly once, from any thread, when the
  // answer is in the cache (or the fetch failed or timed out, which is an answer too).
  virtual std::optional<OcspAnswer> Lookup(const OcspQuery& query,
                                           absl::AnyInvocable<void()> wake) = 0;
  // Record reports the decision about one peer certificate: the answer, whether it came
  // from the peer's staple, and whether the handshake goes on (false: refused).
  virtual void Record(const OcspQuery& query, const OcspAnswer& answer, bool stapled,
                      bool accepted) = 0;
};

// HandshakeWaker belongs to one SSL (SetHandshakeWaker) and knows how to resume its
// handshake on the loop that runs it.
class HandshakeWaker {
 public:
  virtual ~HandshakeWaker() = default;
  // MakeWake is called on the SSL's loop thread; the callable it returns may be called
  // from any thread, at most once, to have the handshake driven again on that loop (and is
  // harmless after the SSL is gone).
  virtual absl::AnyInvocable<void()> MakeWake() = 0;
};

// SetHandshakeWaker lends `waker` to `ssl`: it must outlive the SSL's handshake (or be
// unset with nullptr first). Without one, a check that would wait soft-fails at once (the
// fetch still fills the cache).
void SetHandshakeWaker(SSL* ssl, HandshakeWaker* waker);

struct OcspPeerPolicy {
  std::shared_ptr<OcspStatusSource> source;  // null: use staples only
  bool hard_fail = false;
  bool allow_invalid_certificates = false;
  absl::Duration skew = absl::Minutes(5);
};

// InstallOcspPeerVerify sets the custom verification on `ctx` (borrowed) with `mode`
// (SSL_VERIFY_PEER, optionally | SSL_VERIFY_FAIL_IF_NO_PEER_CERT); the policy lives as long
// as the context. On a client context it also asks servers to staple.
absl::Status InstallOcspPeerVerify(SSL_CTX* ctx, int mode, OcspPeerPolicy policy);

// ChecksPeersByOcsp says whether `ssl`'s context verifies peers with OCSP (so a
// HandshakeWaker is worth attaching).
bool ChecksPeersByOcsp(const SSL* ssl);

// PeerVerifyFailure describes why the peer's certificate of `ssl` was refused ("" when it
// was not): the X509 verification error (whichever verification ran), or the OCSP verdict.
std::string PeerVerifyFailure(const SSL* ssl);

// PeerVerifyResult is the X509 verification result of the peer's chain (X509_V_OK when it
// verified), whichever verification ran; X509_V_ERR_INVALID_CALL before any.
long PeerVerifyResult(const SSL* ssl);

// PeerCertificateRevoked says whether OCSP said the peer's certificate is revoked.
bool PeerCertificateRevoked(const SSL* ssl);

// PeerOcspRefused says whether the handshake was refused for want of an OCSP answer
// (hard-fail mode).
bool PeerOcspRefused(const SSL* ssl);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_OCSP_PEER_VERIFY_H_
