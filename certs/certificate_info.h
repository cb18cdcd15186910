// CertificateInfo: what operators and metrics see of a loaded certificate (SPEC §6 `status`,
// §7 tls_sidecar_certificate_expiry_timestamp_seconds), and the helpers that read it out of
// an X509. Pure functions over BoringSSL objects; safe from any thread.
#ifndef SIDECAR_CERTS_CERTIFICATE_INFO_H_
#define SIDECAR_CERTS_CERTIFICATE_INFO_H_

#include <openssl/base.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sidecar::certs {

// CertificateInfo describes one certificate. `role` is set by whoever knows why the
// certificate is loaded ("server", "cluster", "ca", "cluster_ca"); Inspect leaves it empty.
struct CertificateInfo {
  std::string role;        // "server", "cluster", "ca", "cluster_ca"
  std::string subject;     // RFC 4514 DN, e.g. "CN=node1,O=Example"
  std::string issuer;      // RFC 4514 DN
  std::string serial_hex;  // lowercase hex in whole bytes, as `openssl x509 -serial`: "01f6"
  int64_t not_before = 0;  // unix seconds
  int64_t not_after = 0;   // unix seconds
  std::string sha1_hex;    // thumbprint of the DER certificate, lowercase hex
  std::string source;      // file the certificate was read from ("" when not from a file)
};

// Inspect reads subject, issuer, serial, validity and SHA-1 thumbprint out of `cert`
// (borrowed). `role` and `source` are left empty for the caller to fill.
CertificateInfo Inspect(X509* cert);

// FormatName renders `name` (borrowed) as an RFC 4514 string, most specific RDN first
// ("CN=node1,O=Example"), UTF-8 kept as is, special characters escaped.
std::string FormatName(X509_NAME* name);

// CommonName returns the last CN attribute of `name` (borrowed), or "" when it has none.
std::string CommonName(X509_NAME* name);

// Sha1Thumbprint returns the lowercase hex SHA-1 of the DER encoding of `cert` (borrowed),
// the value `thumbprint=` selectors and `status` use.
std::string Sha1Thumbprint(X509* cert);

// AsnTimeToUnix converts an ASN1_TIME (borrowed) to unix seconds; an error for a
// malformed time.
absl::StatusOr<int64_t> AsnTimeToUnix(const ASN1_TIME* time);

// FormatUnixTime renders unix seconds as "2025-01-31T12:00:00Z" for messages.
std::string FormatUnixTime(int64_t unix_seconds);

// ExpiryWarnings returns one sentence per certificate in `certificates` that has expired or
// expires within `days` days of `now_unix` (mongod warns at 30 days), naming role, subject,
// file and the date. Empty when nothing is close to expiry.
std::vector<std::string> ExpiryWarnings(const std::vector<CertificateInfo>& certificates, int days,
                                        int64_t now_unix);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_CERTIFICATE_INFO_H_
