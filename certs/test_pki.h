// Certificate generation with BoringSSL, for `tls-sidecar certs init DIR [--hosts h1,h2]`
// (a throwaway PKI to try the sidecar) and for tests, which generate every certificate they
// need at run time with exactly the property under test (expired, not yet valid, wrong key,
// encrypted key, revoked, a given subject or serial). Nothing here is meant for production
// certificates. Functions are reentrant.
#ifndef SIDECAR_CERTS_TEST_PKI_H_
#define SIDECAR_CERTS_TEST_PKI_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sidecar::certs {

enum class KeyType { kEcdsaP256, kRsa2048 };

// GeneratedCertificate owns a freshly made certificate and its key, plus their PEM text.
struct GeneratedCertificate {
  bssl::UniquePtr<EVP_PKEY> key;
  bssl::UniquePtr<X509> cert;
  std::string cert_pem;  // one CERTIFICATE block
  std::string key_pem;   // PKCS#8, encrypted when CertificateOptions::key_password is set

  // CertificateKeyPem is what certificateKeyFile expects: certificate, then key.
  std::string CertificateKeyPem() const { return cert_pem + key_pem; }
};

// CertificateOptions says what MakeCertificate produces. The defaults make an ECDSA P-256
// end-entity certificate for CN=localhost valid from an hour ago for a year, usable for
// both serverAuth and clientAuth (mongod member certificates need both).
struct CertificateOptions {
  std::string common_name = "localhost";
  // Further subject attributes by short name, written before the CN, so that
  // {{"O", "Example"}} gives the RFC 4514 subject "CN=<common_name>,O=Example".
  std::vector<std::pair<std::string, std::string>> subject_attributes;
  std::vector<std::string> dns_names;     // subjectAltName dNSName entries
  std::vector<std::string> ip_addresses;  // subjectAltName iPAddress entries ("127.0.0.1", "::1")
  KeyType key_type = KeyType::kEcdsaP256;
  uint64_t serial = 0;  // 0: a random positive 63-bit serial
  // Validity relative to now: notBefore = now + valid_from, notAfter = notBefore + lifetime.
  // Expired: valid_from = -48h, lifetime = 24h. Not yet valid: valid_from = +24h.
  absl::Duration valid_from = absl::Hours(-1);
  absl::Duration lifetime = absl::Hours(24 * 365);
  bool is_ca = false;  // basicConstraints CA:TRUE, keyCertSign|cRLSign
  bool server_auth = true;
  bool client_auth = true;
  // Signs with this issuer's key and names it as issuer; null for a self-signed certificate.
  const GeneratedCertificate* issuer = nullptr;
  // Non-empty: key_pem is PKCS#8 encrypted (AES-256-CBC) with this password.
  std::string key_password;
  // Non-null: use this key (borrowed, a reference is taken) instead of generating one, e.g. to
  // reissue a certificate for the same key.
  EVP_PKEY* reuse_key = nullptr;
  // Non-empty: an Authority Information Access extension naming this OCSP responder.
  std::string ocsp_url;
  // The id-kp-OCSPSigning extended key usage: a delegated OCSP responder (RFC 6960 §4.2.2.2).
  bool ocsp_signing = false;
  // The TLS feature extension with status_request: must-staple (RFC 7633).
  bool must_staple = false;
};

// MakeKey generates a private key of `type`.
absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> MakeKey(KeyType type);

// MakeCertificate generates a key (unless reused) and a certificate as `options` say.
absl::StatusOr<GeneratedCertificate> MakeCertificate(const CertificateOptions& options);

// CrlOptions says what MakeCrl produces: a CRL signed by `issuer`, revoking the serials.
struct CrlOptions {
  std::vector<uint64_t> revoked_serials;
  absl::Duration last_update = absl::Hours(-1);       // relative to now
  absl::Duration next_update = absl::Hours(24 * 30);  // relative to now; negative: stale CRL
};

// MakeCrl returns a PEM "X509 CRL" block signed by `issuer` (its key and subject).
absl::StatusOr<std::string> MakeCrl(const GeneratedCertificate& issuer, const CrlOptions& options);

// SerialOf returns the serial of `cert` (borrowed) when it fits in 64 bits, else 0.
uint64_t SerialOf(X509* cert);

// TestPkiOptions adjusts WriteTestPki.
struct TestPkiOptions {
  std::vector<std::string> hosts;  // extra SANs of server.pem and cluster.pem; IPs accepted
  bool overwrite = false;          // false: refuse to replace existing files
  // Non-empty: the server, cluster and client certificates name this OCSP responder, and an
  // OCSP responder certificate+key issued by the CA (ocsp-responder.pem, id-kp-OCSPSigning)
  // is written too, for `openssl ocsp -rsigner`, since the CA's key is not kept.
  std::string ocsp_url;
};

// WriteTestPki writes into `dir` (created if missing, mode 0700) a throwaway CA (ca.pem,
// certificate only; its key is discarded), a server certificate+key (server.pem, SANs =
// hosts + localhost + 127.0.0.1 + ::1), a cluster certificate+key (cluster.pem, same SANs)
// and a client certificate+key (client.pem, clientAuth only), all ECDSA P-256, valid from
// an hour ago for a year; with an OCSP URL, ocsp-responder.pem after them. Files holding keys are mode 0600. Returns the paths written, in
// that order. Refuses to replace existing files unless `options.overwrite`.
// WriteTestPki(dir, {}) stays unambiguous because the options form has its own name.
absl::StatusOr<std::vector<std::string>> WriteTestPki(const std::string& dir,
                                                      const std::vector<std::string>& hosts);
absl::StatusOr<std::vector<std::string>> WriteTestPkiWithOptions(const std::string& dir,
                                                                 const TestPkiOptions& options);

// WriteFile writes `contents` to `path` with permission `mode`, replacing it.
absl::Status WriteFile(const std::string& path, const std::string& contents, int mode = 0600);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_TEST_PKI_H_
