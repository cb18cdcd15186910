#include "certs/certificate_info.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/x509.h>

#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sidecar::certs {

std::string FormatName(X509_NAME* name) {
  if (name == nullptr) {
    return "";
  }
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  // XN_FLAG_RFC2253 without ASN1_STRFLGS_ESC_MSB: escape what RFC 4514 requires but keep
  // UTF-8 readable, so a subject typed into a selector compares equal to what we print.
  constexpr unsigned long kFlags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB;
  if (bio == nullptr || X509_NAME_print_ex(bio.get(), name, 0, kFlags) < 0) {
    return "";
  }
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(bio.get(), &data, &len)) {
    return "";
  }
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::string CommonName(X509_NAME* name) {
  if (name == nullptr) {
    return "";
  }
  std::string result;
  int index = -1;
  while ((index = X509_NAME_get_index_by_NID(name, NID_commonName, index)) >= 0) {
    ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
    uint8_t* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, value);
    if (len >= 0) {
      result.assign(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
      OPENSSL_free(utf8);
    }
  }
  return result;
}

std::string Sha1Thumbprint(X509* cert) {
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned digest_len = 0;
  if (cert == nullptr || !X509_digest(cert, EVP_sha1(), digest, &digest_len)) {
    return "";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), digest_len));
}

absl::StatusOr<int64_t> AsnTimeToUnix(const ASN1_TIME* time) {
  if (time == nullptr) {
    return absl::InvalidArgumentError("missing time");
  }
  // This BoringSSL has no ASN1_TIME_to_posix; the difference from the epoch is exact.
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (epoch == nullptr || !ASN1_TIME_diff(&days, &seconds, epoch.get(), time)) {
    return absl::InvalidArgumentError("malformed time");
  }
  return static_cast<int64_t>(days) * 86400 + seconds;
}

std::string FormatUnixTime(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

CertificateInfo Inspect(X509* cert) {
  CertificateInfo info;
  if (cert == nullptr) {
    return info;
  }
  info.subject = FormatName(X509_get_subject_name(cert));
  info.issuer = FormatName(X509_get_issuer_name(cert));
  bssl::UniquePtr<BIGNUM> serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (serial != nullptr) {
    char* hex = BN_bn2hex(serial.get());
    if (hex != nullptr) {
      info.serial_hex = absl::AsciiStrToLower(hex);
      OPENSSL_free(hex);
    }
  }
  if (absl::StatusOr<int64_t> t = AsnTimeToUnix(X509_get0_notBefore(cert)); t.ok()) {
    info.not_before = *t;
  }
  if (absl::StatusOr<int64_t> t = AsnTimeToUnix(X509_get0_notAfter(cert)); t.ok()) {
    info.not_after = *t;
  }
  info.sha1_hex = Sha1Thumbprint(cert);
  return info;
}

std::vector<std::string> ExpiryWarnings(const std::vector<CertificateInfo>& certificates, int days,
                                        int64_t now_unix) {
  std::vector<std::string> warnings;
  const int64_t horizon = now_unix + static_cast<int64_t>(days) * 86400;
  for (const CertificateInfo& info : certificates) {
    std::string where = info.source.empty() ? "" : absl::StrCat(" (", info.source, ")");
    if (info.not_after <= now_unix) {
      warnings.push_back(absl::StrCat("the ", info.role, " certificate ", info.subject, where,
                                      " expired on ", FormatUnixTime(info.not_after)));
    } else if (info.not_after <= horizon) {
      int64_t left_days = (info.not_after - now_unix) / 86400;
      warnings.push_back(absl::StrCat("the ", info.role, " certificate ", info.subject, where,
                                      " expires on ", FormatUnixTime(info.not_after), ", in ",
                                      left_days, left_days == 1 ? " day" : " days"));
    }
  }
  return warnings;
}

}  // namespace sidecar::certs
