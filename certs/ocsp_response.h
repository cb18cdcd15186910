// OcspResponse: a DER OCSPResponse (RFC 6960 §4.2) parsed with BoringSSL's CBS, strictly
// DER, every length checked against its container. Parsing checks form only; whether the
// response may be believed (signature, signer, times, nonce) is VerifyOcspResponse's job
// (certs/ocsp_verify.h). Pure functions, reentrant.
#ifndef SIDECAR_CERTS_OCSP_RESPONSE_H_
#define SIDECAR_CERTS_OCSP_RESPONSE_H_

#include <openssl/x509.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "certs/ocsp_request.h"

namespace sidecar::certs {

// OCSPResponseStatus (RFC 6960 §4.2.1); 4 is unused.
enum class OcspResponseStatus {
  kSuccessful = 0,
  kMalformedRequest = 1,
  kInternalError = 2,
  kTryLater = 3,
  kSigRequired = 5,
  kUnauthorized = 6,
};
const char* OcspResponseStatusName(OcspResponseStatus status);

enum class OcspCertStatus { kGood, kRevoked, kUnknown };
const char* OcspCertStatusName(OcspCertStatus status);

// OcspSingleResponse is one SingleResponse: the status of one certificate.
struct OcspSingleResponse {
  OcspCertId cert_id;
  OcspCertStatus status = OcspCertStatus::kUnknown;
  absl::Time this_update;
  absl::Time next_update = absl::InfiniteFuture();  // absent: InfiniteFuture
  absl::Time revocation_time = absl::InfinitePast();  // set for kRevoked
};

// OcspResponse is a parsed OCSPResponse. For a status other than kSuccessful there are no
// response bytes and every other field is empty.
struct OcspResponse {
  OcspResponseStatus response_status = OcspResponseStatus::kInternalError;
  std::string tbs_response_data;  // the DER ResponseData, exactly as signed
  int signature_nid = 0;          // NID of signatureAlgorithm
  std::string signature;          // BIT STRING contents without the unused-bits byte
  std::vector<bssl::UniquePtr<X509>> certs;  // certs [0]: a delegated responder's chain
  std::string responder_name;     // ResponderID byName: the DER Name; or empty
  std::string responder_key_hash; // ResponderID byKey: SHA-1 of the responder's key; or empty
  absl::Time produced_at;
  std::vector<OcspSingleResponse> responses;
  bool has_nonce = false;
  std::string nonce;              // the nonce extension's value, when has_nonce
};

// ParseOcspResponse parses `der`. Error (InvalidArgument, naming the part) for anything
// that is not a DER OCSPResponse carrying, when successful, an id-pkix-ocsp-basic response.
// Trailing bytes after the OCSPResponse are an error.
absl::StatusOr<OcspResponse> ParseOcspResponse(std::string_view der);

// ParseGeneralizedTime reads the contents of a DER GeneralizedTime ("YYYYMMDDHHMMSSZ",
// RFC 5280 §4.1.2.5.2: UTC, seconds, no fraction). Error for any other form.
absl::StatusOr<absl::Time> ParseGeneralizedTime(std::string_view text);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_OCSP_RESPONSE_H_
