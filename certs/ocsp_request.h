// OCSP requests (RFC 6960 §4.1) and what a certificate says about OCSP: the CertID that
// names a certificate to a responder, the DER OCSPRequest asking for it, the responder URLs
// of the Authority Information Access extension and the TLS feature "status_request"
// (must-staple, RFC 7633). Built on BoringSSL's CBB, since BoringSSL has no OCSP module.
// Pure functions, reentrant; certificates are borrowed.
#ifndef SIDECAR_CERTS_OCSP_REQUEST_H_
#define SIDECAR_CERTS_OCSP_REQUEST_H_

#include <openssl/x509.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sidecar::certs {

// OcspCertId identifies one certificate to a responder: hashes of its issuer's name and
// public key, and its serial. Byte strings, compared exactly.
struct OcspCertId {
  int hash_nid = 0;               // NID of hashAlgorithm (NID_sha1 in what we send)
  std::string issuer_name_hash;   // hash of the DER issuer Name
  std::string issuer_key_hash;    // hash of the issuer's subjectPublicKey BIT STRING value
  std::string serial;             // the serialNumber INTEGER, whole DER element

  bool operator==(const OcspCertId& other) const {
    return hash_nid == other.hash_nid && issuer_name_hash == other.issuer_name_hash &&
           issuer_key_hash == other.issuer_key_hash && serial == other.serial;
  }
  // Key is a byte string unique per CertID, for caches.
  std::string Key() const;
};

// MakeOcspCertId computes the CertID of `cert` issued by `issuer` with the hash `hash_nid`
// (NID_sha1, as RFC 5019 requires of lightweight clients, or a SHA-2 NID when matching a
// response that used one). Error when the hash is not supported or the DER cannot be made.
absl::StatusOr<OcspCertId> MakeOcspCertId(X509* cert, X509* issuer, int hash_nid = NID_sha1);

// BuildOcspRequest returns a DER OCSPRequest for `id`, unsigned, with a nonce extension
// (id-pkix-ocsp-nonce, RFC 8954: 1 to 32 bytes) when `nonce` is not empty.
absl::StatusOr<std::string> BuildOcspRequest(const OcspCertId& id, std::string_view nonce = {});

// OcspResponderUrls returns the id-ad-ocsp URIs of `cert`'s Authority Information Access
// extension that use plain http:// (RFC 6960 Appendix A: OCSP over HTTP), in order; empty
// when it names none.
std::vector<std::string> OcspResponderUrls(X509* cert);

// HasMustStaple says whether `cert` carries the TLS feature extension (1.3.6.1.5.5.7.1.24)
// listing status_request (5): a server presenting it must staple a response.
bool HasMustStaple(X509* cert);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_OCSP_REQUEST_H_
