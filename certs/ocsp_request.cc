#include "certs/ocsp_request.h"

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/mem.h>
#include <openssl/obj.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sidecar::certs {
namespace {

// Frees what BoringSSL allocated for an out-parameter (i2d_*, CBB_finish).
struct OpensslFree {
  void operator()(uint8_t* p) const { OPENSSL_free(p); }
};

// id-pkix-ocsp-nonce, 1.3.6.1.5.5.7.48.1.2, as DER OID contents.
constexpr uint8_t kNonceOid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02};
// id-pe-tlsfeature, 1.3.6.1.5.5.7.1.24 (RFC 7633).
constexpr uint8_t kTlsFeatureOid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x18};
constexpr uint64_t kStatusRequest = 5;  // TLS extension number of status_request

const EVP_MD* DigestOf(int nid) {
  switch (nid) {
    case NID_sha1:
      return EVP_sha1();
    case NID_sha256:
      return EVP_sha256();
    case NID_sha384:
      return EVP_sha384();
    case NID_sha512:
      return EVP_sha512();
    default:
      return nullptr;
  }
}

absl::StatusOr<std::string> Hash(const EVP_MD* md, const uint8_t* data, size_t size) {
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned out_size = 0;
  if (!EVP_Digest(data, size, out, &out_size, md, nullptr)) {
    return absl::InternalError("cannot hash for an OCSP CertID");
  }
  return std::string(reinterpret_cast<char*>(out), out_size);
}

// CbbToString finishes `cbb` (which must be a top-level CBB) into a string.
absl::StatusOr<std::string> CbbToString(CBB* cbb) {
  uint8_t* data = nullptr;
  size_t size = 0;
  if (!CBB_finish(cbb, &data, &size)) {
    return absl::InternalError("cannot encode DER");
  }
  std::unique_ptr<uint8_t, OpensslFree> owned(data);
  return std::string(reinterpret_cast<char*>(data), size);
}

}  // namespace

std::string OcspCertId::Key() const {
  // Length-prefixed fields, so that no two different CertIDs share a key.
  return absl::StrCat(hash_nid, ":", issuer_name_hash.size(), ":", issuer_name_hash,
                      issuer_key_hash.size(), ":", issuer_key_hash, serial);
}

absl::StatusOr<OcspCertId> MakeOcspCertId(X509* cert, X509* issuer, int hash_nid) {
  const EVP_MD* md = DigestOf(hash_nid);
  if (md == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported OCSP CertID hash ", OBJ_nid2sn(hash_nid)));
  }
  OcspCertId id;
  id.hash_nid = hash_nid;
  uint8_t* name_der = nullptr;
  int name_size = i2d_X509_NAME(X509_get_subject_name(issuer), &name_der);
  if (name_size <= 0) {
    return absl::InvalidArgumentError("cannot encode the issuer's name");
  }
  std::unique_ptr<uint8_t, OpensslFree> name_owned(name_der);
  auto name_hash = Hash(md, name_der, static_cast<size_t>(name_size));
  if (!name_hash.ok()) {
    return name_hash.status();
  }
  id.issuer_name_hash = *std::move(name_hash);
  // RFC 6960 §4.1.1: the hash of the key's BIT STRING value, without tag, length and the
  // unused-bits count.
  const ASN1_BIT_STRING* key = X509_get0_pubkey_bitstr(issuer);
  if (key == nullptr) {
    return absl::InvalidArgumentError("the issuer has no public key");
  }
  auto key_hash = Hash(md, ASN1_STRING_get0_data(key), ASN1_STRING_length(key));
  if (!key_hash.ok()) {
    return key_hash.status();
  }
  id.issuer_key_hash = *std::move(key_hash);
  uint8_t* serial_der = nullptr;
  int serial_size = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &serial_der);
  if (serial_size <= 0) {
    return absl::InvalidArgumentError("cannot encode the certificate's serial");
  }
  std::unique_ptr<uint8_t, OpensslFree> serial_owned(serial_der);
  id.serial.assign(reinterpret_cast<char*>(serial_der), static_cast<size_t>(serial_size));
  return id;
}

absl::StatusOr<std::string> BuildOcspRequest(const OcspCertId& id, std::string_view nonce) {
  if (nonce.size() > 32) {
    return absl::InvalidArgumentError("an OCSP nonce has at most 32 bytes (RFC 8954)");
  }
  bssl::ScopedCBB cbb;
  CBB request, tbs, list, one, cert_id, algorithm, null_params, exts_tag, exts, ext, ext_oid,
      ext_value, nonce_octets;
  if (!CBB_init(cbb.get(), 128) ||
      !CBB_add_asn1(cbb.get(), &request, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&request, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&list, &one, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&one, &cert_id, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&cert_id, &algorithm, CBS_ASN1_SEQUENCE) ||
      !OBJ_nid2cbb(&algorithm, id.hash_nid) ||
      !CBB_add_asn1(&algorithm, &null_params, CBS_ASN1_NULL) ||
      !CBB_add_asn1_octet_string(&cert_id,
                                 reinterpret_cast<const uint8_t*>(id.issuer_name_hash.data()),
                                 id.issuer_name_hash.size()) ||
      !CBB_add_asn1_octet_string(&cert_id,
                                 reinterpret_cast<const uint8_t*>(id.issuer_key_hash.data()),
                                 id.issuer_key_hash.size()) ||
      !CBB_add_bytes(&cert_id, reinterpret_cast<const uint8_t*>(id.serial.data()),
                     id.serial.size())) {
    return absl::InternalError("cannot encode the OCSP request");
  }
  if (!nonce.empty()) {
    // requestExtensions [2] EXPLICIT Extensions; the nonce's extnValue is an OCTET STRING
    // wrapping the DER of an OCTET STRING (RFC 8954 §2.1).
    if (!CBB_add_asn1(&tbs, &exts_tag,
                      CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 2) ||
        !CBB_add_asn1(&exts_tag, &exts, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&ext, &ext_oid, CBS_ASN1_OBJECT) ||
        !CBB_add_bytes(&ext_oid, kNonceOid, sizeof(kNonceOid)) ||
        !CBB_add_asn1(&ext, &ext_value, CBS_ASN1_OCTETSTRING) ||
        !CBB_add_asn1(&ext_value, &nonce_octets, CBS_ASN1_OCTETSTRING) ||
        !CBB_add_bytes(&nonce_octets, reinterpret_cast<const uint8_t*>(nonce.data()),
                       nonce.size())) {
      return absl::InternalError("cannot encode the OCSP nonce");
    }
  }
  return CbbToString(cbb.get());
}

std::vector<std::string> OcspResponderUrls(X509* cert) {
  std::vector<std::string> urls;
  bssl::UniquePtr<AUTHORITY_INFO_ACCESS> aia(static_cast<AUTHORITY_INFO_ACCESS*>(
      X509_get_ext_d2i(cert, NID_info_access, nullptr, nullptr)));
  if (aia == nullptr) {
    return urls;
  }
  for (size_t i = 0; i < sk_ACCESS_DESCRIPTION_num(aia.get()); ++i) {
    const ACCESS_DESCRIPTION* ad = sk_ACCESS_DESCRIPTION_value(aia.get(), i);
    if (OBJ_obj2nid(ad->method) != NID_ad_OCSP || ad->location->type != GEN_URI) {
      continue;
    }
    const ASN1_IA5STRING* uri = ad->location->d.uniformResourceIdentifier;
    std::string url(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                    static_cast<size_t>(ASN1_STRING_length(uri)));
    if (absl::StartsWithIgnoreCase(url, "http://")) {
      urls.push_back(std::move(url));
    }
  }
  return urls;
}

bool HasMustStaple(X509* cert) {
  for (int i = 0; i < X509_get_ext_count(cert); ++i) {
    X509_EXTENSION* ext = X509_get_ext(cert, i);
    const ASN1_OBJECT* obj = X509_EXTENSION_get_object(ext);
    if (OBJ_length(obj) != sizeof(kTlsFeatureOid) ||
        memcmp(OBJ_get0_data(obj), kTlsFeatureOid, sizeof(kTlsFeatureOid)) != 0) {
      continue;
    }
    // Features ::= SEQUENCE OF INTEGER
    const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(ext);
    CBS cbs, seq;
    CBS_init(&cbs, ASN1_STRING_get0_data(value), static_cast<size_t>(ASN1_STRING_length(value)));
    if (!CBS_get_asn1(&cbs, &seq, CBS_ASN1_SEQUENCE)) {
      return false;
    }
    while (CBS_len(&seq) > 0) {
      uint64_t feature = 0;
      if (!CBS_get_asn1_uint64(&seq, &feature)) {
        return false;
      }
      if (feature == kStatusRequest) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace sidecar::certs
