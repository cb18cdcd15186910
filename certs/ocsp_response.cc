#include "certs/ocsp_response.h"

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/obj.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"

namespace sidecar::certs {
namespace {

constexpr unsigned kContext0 = CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0;
constexpr unsigned kContext1 = CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1;
constexpr unsigned kContext2 = CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 2;
// CertStatus choices (RFC 6960 §4.2.1, IMPLICIT tags): good [0] NULL, revoked [1]
// RevokedInfo (a SEQUENCE, so constructed), unknown [2] NULL.
constexpr unsigned kGoodTag = CBS_ASN1_CONTEXT_SPECIFIC | 0;
constexpr unsigned kRevokedTag = CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1;
constexpr unsigned kUnknownTag = CBS_ASN1_CONTEXT_SPECIFIC | 2;

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed OCSP response: ", what));
}

std::string Str(const CBS& cbs) {
  return std::string(reinterpret_cast<const char*>(CBS_data(&cbs)), CBS_len(&cbs));
}

absl::StatusOr<absl::Time> GetTime(CBS* cbs, absl::string_view what) {
  CBS time;
  if (!CBS_get_asn1(cbs, &time, CBS_ASN1_GENERALIZEDTIME)) {
    return Malformed(absl::StrCat(what, " is not a GeneralizedTime"));
  }
  auto parsed = ParseGeneralizedTime(Str(time));
  if (!parsed.ok()) {
    return Malformed(absl::StrCat(what, ": ", parsed.status().message()));
  }
  return *parsed;
}

// ParseCertId reads a CertID SEQUENCE.
absl::Status ParseCertId(CBS* in, OcspCertId* id) {
  CBS cert_id, algorithm, oid, name_hash, key_hash, serial;
  if (!CBS_get_asn1(in, &cert_id, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&cert_id, &algorithm, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&algorithm, &oid, CBS_ASN1_OBJECT) ||
      !CBS_get_asn1(&cert_id, &name_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&cert_id, &key_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1_element(&cert_id, &serial, CBS_ASN1_INTEGER) || CBS_len(&cert_id) != 0) {
    return Malformed("bad CertID");
  }
  // The parameters are NULL or absent; either way they carry nothing we use.
  id->hash_nid = OBJ_cbs2nid(&oid);
  id->issuer_name_hash = Str(name_hash);
  id->issuer_key_hash = Str(key_hash);
  id->serial = Str(serial);
  return absl::OkStatus();
}

absl::StatusOr<OcspSingleResponse> ParseSingleResponse(CBS* in) {
  OcspSingleResponse single;
  CBS seq;
  if (!CBS_get_asn1(in, &seq, CBS_ASN1_SEQUENCE)) {
    return Malformed("bad SingleResponse");
  }
  if (absl::Status s = ParseCertId(&seq, &single.cert_id); !s.ok()) {
    return s;
  }
  CBS status;
  unsigned tag = 0;
  if (!CBS_get_any_asn1(&seq, &status, &tag)) {
    return Malformed("bad certStatus");
  }
  switch (tag) {
    case kGoodTag:
      if (CBS_len(&status) != 0) {
        return Malformed("certStatus good is not NULL");
      }
      single.status = OcspCertStatus::kGood;
      break;
    case kRevokedTag: {
      single.status = OcspCertStatus::kRevoked;
      auto when = GetTime(&status, "revocationTime");
      if (!when.ok()) {
        return when.status();
      }
      single.revocation_time = *when;
      // revocationReason [0] EXPLICIT CRLReason OPTIONAL: informative only.
      if (!CBS_get_optional_asn1(&status, nullptr, nullptr, kContext0) ||
          CBS_len(&status) != 0) {
        return Malformed("bad RevokedInfo");
      }
      break;
    }
    case kUnknownTag:
      if (CBS_len(&status) != 0) {
        return Malformed("certStatus unknown is not NULL");
      }
      single.status = OcspCertStatus::kUnknown;
      break;
    default:
      return Malformed("unknown certStatus choice");
  }
  auto this_update = GetTime(&seq, "thisUpdate");
  if (!this_update.ok()) {
    return this_update.status();
  }
  single.this_update = *this_update;
  CBS next;
  int has_next = 0;
  if (!CBS_get_optional_asn1(&seq, &next, &has_next, kContext0)) {
    return Malformed("bad nextUpdate");
  }
  if (has_next) {
    auto next_update = GetTime(&next, "nextUpdate");
    if (!next_update.ok()) {
      return next_update.status();
    }
    if (CBS_len(&next) != 0) {
      return Malformed("trailing bytes after nextUpdate");
    }
    single.next_update = *next_update;
  }
  if (!CBS_get_optional_asn1(&seq, nullptr, nullptr, kContext1) || CBS_len(&seq) != 0) {
    return Malformed("bad singleExtensions");
  }
  return single;
}

// ParseExtensions reads responseExtensions and keeps the nonce (RFC 8954 §2.1: extnValue is
// an OCTET STRING holding the DER of an OCTET STRING; older responders put the raw bytes).
absl::Status ParseExtensions(CBS* exts_tagged, OcspResponse* response) {
  CBS exts;
  if (!CBS_get_asn1(exts_tagged, &exts, CBS_ASN1_SEQUENCE) || CBS_len(exts_tagged) != 0) {
    return Malformed("bad responseExtensions");
  }
  while (CBS_len(&exts) > 0) {
    CBS ext, oid, value;
    if (!CBS_get_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&ext, &oid, CBS_ASN1_OBJECT) ||
        !CBS_get_optional_asn1(&ext, nullptr, nullptr, CBS_ASN1_BOOLEAN) ||
        !CBS_get_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) || CBS_len(&ext) != 0) {
      return Malformed("bad extension");
    }
    if (OBJ_cbs2nid(&oid) != NID_id_pkix_OCSP_Nonce) {
      continue;
    }
    CBS copy = value, inner;
    response->has_nonce = true;
    if (CBS_get_asn1(&copy, &inner, CBS_ASN1_OCTETSTRING) && CBS_len(&copy) == 0) {
      response->nonce = Str(inner);
    } else {
      response->nonce = Str(value);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseResponseData(CBS* in, OcspResponse* response) {
  CBS element;
  if (!CBS_get_asn1_element(in, &element, CBS_ASN1_SEQUENCE)) {
    return Malformed("bad ResponseData");
  }
  response->tbs_response_data = Str(element);
  CBS data;
  CBS_get_asn1(&element, &data, CBS_ASN1_SEQUENCE);  // cannot fail: just read as an element
  CBS version;
  int has_version = 0;
  if (!CBS_get_optional_asn1(&data, &version, &has_version, kContext0)) {
    return Malformed("bad version");
  }
  if (has_version) {
    uint64_t v = 0;
    if (!CBS_get_asn1_uint64(&version, &v) || v != 0 || CBS_len(&version) != 0) {
      return Malformed("unsupported ResponseData version");
    }
  }
  CBS responder;
  unsigned tag = 0;
  if (!CBS_get_any_asn1(&data, &responder, &tag)) {
    return Malformed("bad ResponderID");
  }
  if (tag == kContext1) {
    CBS name;
    if (!CBS_get_asn1_element(&responder, &name, CBS_ASN1_SEQUENCE) || CBS_len(&responder)) {
      return Malformed("bad ResponderID byName");
    }
    response->responder_name = Str(name);
  } else if (tag == kContext2) {
    CBS key_hash;
    if (!CBS_get_asn1(&responder, &key_hash, CBS_ASN1_OCTETSTRING) || CBS_len(&responder)) {
      return Malformed("bad ResponderID byKey");
    }
    response->responder_key_hash = Str(key_hash);
  } else {
    return Malformed("unknown ResponderID choice");
  }
  auto produced_at = GetTime(&data, "producedAt");
  if (!produced_at.ok()) {
    return produced_at.status();
  }
  response->produced_at = *produced_at;
  CBS responses;
  if (!CBS_get_asn1(&data, &responses, CBS_ASN1_SEQUENCE)) {
    return Malformed("bad responses");
  }
  while (CBS_len(&responses) > 0) {
    auto single = ParseSingleResponse(&responses);
    if (!single.ok()) {
      return single.status();
    }
    response->responses.push_back(*std::move(single));
  }
  CBS exts;
  int has_exts = 0;
  if (!CBS_get_optional_asn1(&data, &exts, &has_exts, kContext1)) {
    return Malformed("bad responseExtensions");
  }
  if (has_exts) {
    if (absl::Status s = ParseExtensions(&exts, response); !s.ok()) {
      return s;
    }
  }
  if (CBS_len(&data) != 0) {
    return Malformed("trailing bytes in ResponseData");
  }
  return absl::OkStatus();
}

absl::Status ParseBasicResponse(CBS* in, OcspResponse* response) {
  CBS basic;
  if (!CBS_get_asn1(in, &basic, CBS_ASN1_SEQUENCE) || CBS_len(in) != 0) {
    return Malformed("bad BasicOCSPResponse");
  }
  if (absl::Status s = ParseResponseData(&basic, response); !s.ok()) {
    return s;
  }
  CBS algorithm, oid, signature;
  uint8_t unused_bits = 0;
  if (!CBS_get_asn1(&basic, &algorithm, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&algorithm, &oid, CBS_ASN1_OBJECT) ||
      !CBS_get_asn1(&basic, &signature, CBS_ASN1_BITSTRING) ||
      !CBS_get_u8(&signature, &unused_bits) || unused_bits != 0) {
    return Malformed("bad signature");
  }
  response->signature_nid = OBJ_cbs2nid(&oid);
  response->signature = Str(signature);
  CBS certs_tagged;
  int has_certs = 0;
  if (!CBS_get_optional_asn1(&basic, &certs_tagged, &has_certs, kContext0)) {
    return Malformed("bad certs");
  }
  if (has_certs) {
    CBS certs;
    if (!CBS_get_asn1(&certs_tagged, &certs, CBS_ASN1_SEQUENCE) || CBS_len(&certs_tagged)) {
      return Malformed("bad certs");
    }
    while (CBS_len(&certs) > 0) {
      CBS cert;
      if (!CBS_get_asn1_element(&certs, &cert, CBS_ASN1_SEQUENCE)) {
        return Malformed("bad certificate in certs");
      }
      const uint8_t* p = CBS_data(&cert);
      bssl::UniquePtr<X509> x509(d2i_X509(nullptr, &p, static_cast<long>(CBS_len(&cert))));
      if (x509 == nullptr || p != CBS_data(&cert) + CBS_len(&cert)) {
        ERR_clear_error();
        return Malformed("unparsable certificate in certs");
      }
      response->certs.push_back(std::move(x509));
    }
  }
  if (CBS_len(&basic) != 0) {
    return Malformed("trailing bytes in BasicOCSPResponse");
  }
  return absl::OkStatus();
}

}  // namespace

const char* OcspResponseStatusName(OcspResponseStatus status) {
  switch (status) {
    case OcspResponseStatus::kSuccessful:
      return "successful";
    case OcspResponseStatus::kMalformedRequest:
      return "malformedRequest";
    case OcspResponseStatus::kInternalError:
      return "internalError";
    case OcspResponseStatus::kTryLater:
      return "tryLater";
    case OcspResponseStatus::kSigRequired:
      return "sigRequired";
    case OcspResponseStatus::kUnauthorized:
      return "unauthorized";
  }
  return "?";
}

const char* OcspCertStatusName(OcspCertStatus status) {
  switch (status) {
    case OcspCertStatus::kGood:
      return "good";
    case OcspCertStatus::kRevoked:
      return "revoked";
    case OcspCertStatus::kUnknown:
      return "unknown";
  }
  return "?";
}

absl::StatusOr<absl::Time> ParseGeneralizedTime(std::string_view text) {
  if (text.size() != 15 || text[14] != 'Z') {
    return absl::InvalidArgumentError("time is not of the form YYYYMMDDHHMMSSZ");
  }
  int64_t fields[6];
  const size_t widths[6] = {4, 2, 2, 2, 2, 2};
  size_t pos = 0;
  for (int i = 0; i < 6; ++i) {
    int64_t value = 0;
    for (size_t j = 0; j < widths[i]; ++j, ++pos) {
      if (text[pos] < '0' || text[pos] > '9') {
        return absl::InvalidArgumentError("time has a non-digit");
      }
      value = value * 10 + (text[pos] - '0');
    }
    fields[i] = value;
  }
  // Range checks before CivilSecond, which would normalise 2024-02-31 into March.
  static constexpr int kDays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (fields[1] < 1 || fields[1] > 12 || fields[2] < 1 || fields[2] > kDays[fields[1] - 1] ||
      fields[3] > 23 || fields[4] > 59 || fields[5] > 59) {
    return absl::InvalidArgumentError("time out of range");
  }
  absl::CivilSecond civil(fields[0], static_cast<int>(fields[1]), static_cast<int>(fields[2]),
                          static_cast<int>(fields[3]), static_cast<int>(fields[4]),
                          static_cast<int>(fields[5]));
  if (civil.month() != fields[1] || civil.day() != fields[2]) {
    return absl::InvalidArgumentError("time out of range");  // 29 February of a common year
  }
  return absl::FromCivil(civil, absl::UTCTimeZone());
}

absl::StatusOr<OcspResponse> ParseOcspResponse(std::string_view der) {
  OcspResponse response;
  CBS in, outer;
  CBS_init(&in, reinterpret_cast<const uint8_t*>(der.data()), der.size());
  uint64_t status = 0;
  CBS status_cbs;
  if (!CBS_get_asn1(&in, &outer, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
      !CBS_get_asn1(&outer, &status_cbs, CBS_ASN1_ENUMERATED) || CBS_len(&status_cbs) != 1) {
    return Malformed("not an OCSPResponse");
  }
  status = CBS_data(&status_cbs)[0];
  if (status > 6 || status == 4) {
    return Malformed(absl::StrCat("unknown responseStatus ", status));
  }
  response.response_status = static_cast<OcspResponseStatus>(status);
  CBS bytes_tagged;
  int has_bytes = 0;
  if (!CBS_get_optional_asn1(&outer, &bytes_tagged, &has_bytes, kContext0) ||
      CBS_len(&outer) != 0) {
    return Malformed("bad responseBytes");
  }
  if (response.response_status != OcspResponseStatus::kSuccessful) {
    if (has_bytes) {
      return Malformed("responseBytes in an unsuccessful response");
    }
    return response;
  }
  CBS bytes, type, body;
  if (!has_bytes || !CBS_get_asn1(&bytes_tagged, &bytes, CBS_ASN1_SEQUENCE) ||
      CBS_len(&bytes_tagged) != 0 || !CBS_get_asn1(&bytes, &type, CBS_ASN1_OBJECT) ||
      !CBS_get_asn1(&bytes, &body, CBS_ASN1_OCTETSTRING) || CBS_len(&bytes) != 0) {
    return Malformed("successful response without responseBytes");
  }
  if (OBJ_cbs2nid(&type) != NID_id_pkix_OCSP_basic) {
    return Malformed("responseType is not id-pkix-ocsp-basic");
  }
  if (absl::Status s = ParseBasicResponse(&body, &response); !s.ok()) {
    return s;
  }
  return response;
}

}  // namespace sidecar::certs
