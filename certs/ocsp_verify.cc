#include "certs/ocsp_verify.h"

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/x509v3.h>

#include <ctime>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sidecar::certs {
namespace {

// Frees what BoringSSL allocated for an out-parameter (i2d_*, CBB_finish).
struct OpensslFree {
  void operator()(uint8_t* p) const { OPENSSL_free(p); }
};

absl::Status Unusable(absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat("OCSP response rejected: ", why));
}

std::string NameDer(X509* cert) {
  uint8_t* der = nullptr;
  int size = i2d_X509_NAME(X509_get_subject_name(cert), &der);
  if (size <= 0) {
    return "";
  }
  std::unique_ptr<uint8_t, OpensslFree> owned(der);
  return std::string(reinterpret_cast<char*>(der), static_cast<size_t>(size));
}

std::string KeySha1(X509* cert) {
  const ASN1_BIT_STRING* key = X509_get0_pubkey_bitstr(cert);
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned size = 0;
  if (key == nullptr || !EVP_Digest(ASN1_STRING_get0_data(key), ASN1_STRING_length(key), out,
                                    &size, EVP_sha1(), nullptr)) {
    return "";
  }
  return std::string(reinterpret_cast<char*>(out), size);
}

// IsResponder says whether the ResponderID of `response` names `cert`.
bool IsResponder(const OcspResponse& response, X509* cert) {
  if (!response.responder_key_hash.empty()) {
    return response.responder_key_hash == KeySha1(cert);
  }
  return !response.responder_name.empty() && response.responder_name == NameDer(cert);
}

bool ValidAt(X509* cert, absl::Time now) {
  time_t t = absl::ToTimeT(now);
  return X509_cmp_time(X509_get0_notBefore(cert), &t) <= 0 &&
         X509_cmp_time(X509_get0_notAfter(cert), &t) >= 0;
}

bool SignedBy(X509* cert, X509* issuer) {
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(issuer));
  bool ok = key != nullptr &&
            X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(issuer)) == 0 &&
            X509_verify(cert, key.get()) == 1;
  ERR_clear_error();
  return ok;
}

// FindSigner returns the certificate whose key must have signed `response`: the issuer
// itself, or a delegated responder certificate that the issuer authorised (§4.2.2.2).
absl::StatusOr<X509*> FindSigner(const OcspResponse& response, X509* issuer, absl::Time now) {
  if (IsResponder(response, issuer)) {
    return issuer;
  }
  for (const auto& candidate : response.certs) {
    X509* cert = candidate.get();
    if (!IsResponder(response, cert)) {
      continue;
    }
    if (!SignedBy(cert, issuer)) {
      return Unusable("the responder certificate is not issued by the certificate's issuer");
    }
    // X509_get_extended_key_usage also computes the cached extension flags; a certificate
    // without the EKU extension returns all bits, so check that it has one.
    uint32_t eku = X509_get_extended_key_usage(cert);
    if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) == 0 || (eku & XKU_OCSP_SIGN) == 0) {
      return Unusable("the responder certificate lacks the OCSP signing extended key usage");
    }
    if (!ValidAt(cert, now)) {
      return Unusable("the responder certificate is expired or not yet valid");
    }
    return cert;
  }
  return Unusable("signed by neither the issuer nor an authorised responder");
}

absl::Status CheckSignature(const OcspResponse& response, X509* signer) {
  int digest_nid = NID_undef, pkey_nid = NID_undef;
  if (!OBJ_find_sigid_algs(response.signature_nid, &digest_nid, &pkey_nid)) {
    return Unusable(absl::StrCat("unsupported signature algorithm ",
                                 OBJ_nid2sn(response.signature_nid)));
  }
  // Ed25519 signs the message itself (no digest); everything else names its digest.
  const EVP_MD* md = digest_nid == NID_undef ? nullptr : EVP_get_digestbynid(digest_nid);
  if (md == nullptr && pkey_nid != NID_ED25519) {
    return Unusable("unsupported signature digest");
  }
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(signer));
  if (key == nullptr || EVP_PKEY_id(key.get()) != pkey_nid) {
    ERR_clear_error();
    return Unusable("the signature algorithm does not match the signer's key");
  }
  bssl::ScopedEVP_MD_CTX ctx;
  bool ok = EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) &&
            EVP_DigestVerify(ctx.get(),
                             reinterpret_cast<const uint8_t*>(response.signature.data()),
                             response.signature.size(),
                             reinterpret_cast<const uint8_t*>(response.tbs_response_data.data()),
                             response.tbs_response_data.size());
  ERR_clear_error();
  if (!ok) {
    return Unusable("bad signature");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OcspVerdict> VerifyOcspResponse(const OcspResponse& response, X509* cert,
                                               X509* issuer, const OcspVerifyOptions& options) {
  if (response.response_status != OcspResponseStatus::kSuccessful) {
    return Unusable(absl::StrCat("the responder answered ",
                                 OcspResponseStatusName(response.response_status)));
  }
  const OcspSingleResponse* single = nullptr;
  for (const auto& candidate : response.responses) {
    auto id = MakeOcspCertId(cert, issuer, candidate.cert_id.hash_nid);
    if (id.ok() && *id == candidate.cert_id) {
      single = &candidate;
      break;
    }
  }
  if (single == nullptr) {
    return Unusable("it holds no answer for this certificate");
  }
  auto signer = FindSigner(response, issuer, options.now);
  if (!signer.ok()) {
    return signer.status();
  }
  if (absl::Status s = CheckSignature(response, *signer); !s.ok()) {
    return s;
  }
  if (single->this_update > options.now + options.skew) {
    return Unusable("thisUpdate is in the future");
  }
  if (single->next_update < options.now - options.skew) {
    return Unusable(absl::StrCat("stale: nextUpdate ",
                                 absl::FormatTime(absl::RFC3339_sec, single->next_update,
                                                  absl::UTCTimeZone()),
                                 " has passed"));
  }
  if (!options.nonce.empty() && response.has_nonce && response.nonce != options.nonce) {
    return Unusable("the nonce does not match the request's");
  }
  OcspVerdict verdict;
  verdict.status = single->status;
  verdict.this_update = single->this_update;
  verdict.next_update = single->next_update;
  verdict.revocation_time = single->revocation_time;
  return verdict;
}

absl::StatusOr<OcspVerdict> ParseAndVerifyOcspResponse(std::string_view der, X509* cert,
                                                       X509* issuer,
                                                       const OcspVerifyOptions& options) {
  auto response = ParseOcspResponse(der);
  if (!response.ok()) {
    return response.status();
  }
  return VerifyOcspResponse(*response, cert, issuer, options);
}

}  // namespace sidecar::certs
