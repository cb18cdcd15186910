// VerifyOcspResponse decides whether a parsed OCSP response (certs/ocsp_response.h) is a
// trustworthy statement about one certificate, as RFC 6960 §3.2 asks of a client:
//  - the response is `successful` and holds a SingleResponse for the certificate's CertID;
//  - it is signed by the certificate's issuer, or by a delegated responder certificate
//    carried in the response that the issuer signed, that has the id-kp-OCSPSigning
//    extended key usage and that is valid now (§4.2.2.2);
//  - thisUpdate is not in the future and nextUpdate not in the past, allowing `skew` for
//    clocks that disagree (mongod and OpenSSL allow 5 minutes);
//  - when we sent a nonce and the response carries one, they are equal. A response without
//    a nonce is accepted: responders commonly serve pre-signed responses (RFC 5019 §2.1).
// Pure function, reentrant; certificates are borrowed.
#ifndef SIDECAR_CERTS_OCSP_VERIFY_H_
#define SIDECAR_CERTS_OCSP_VERIFY_H_

#include <openssl/x509.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "certs/ocsp_response.h"

namespace sidecar::certs {

struct OcspVerifyOptions {
  absl::Time now = absl::Now();
  absl::Duration skew = absl::Minutes(5);
  std::string_view nonce;  // what the request carried; empty: none was sent
};

// OcspVerdict is what a verified response says about the certificate.
struct OcspVerdict {
  OcspCertStatus status = OcspCertStatus::kUnknown;
  absl::Time this_update;
  absl::Time next_update = absl::InfiniteFuture();  // InfiniteFuture when absent
  absl::Time revocation_time = absl::InfinitePast();
};

// VerifyOcspResponse checks `response` for `cert` issued by `issuer`. Error
// (FailedPrecondition for a response that is well-formed but unusable, naming why: not
// successful, no answer for this certificate, bad signature, unauthorised signer, stale,
// not yet valid, nonce mismatch).
absl::StatusOr<OcspVerdict> VerifyOcspResponse(const OcspResponse& response, X509* cert,
                                               X509* issuer, const OcspVerifyOptions& options);

// ParseAndVerifyOcspResponse is ParseOcspResponse then VerifyOcspResponse.
absl::StatusOr<OcspVerdict> ParseAndVerifyOcspResponse(std::string_view der, X509* cert,
                                                       X509* issuer,
                                                       const OcspVerifyOptions& options);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_OCSP_VERIFY_H_
