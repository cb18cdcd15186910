// ThrowawayPki: a CA with server, cluster and client certificates made with BoringSSL at run
// time, for `tls-sidecar certs init DIR [--hosts h1,h2]` (a PKI to try the sidecar with) and
// for the tests, which make the same one (tests/support/test_pki.h) and issue from its CA
// every further certificate they need with exactly the property under test (expired, not yet
// valid, wrong key, encrypted key, a given subject or serial). Nothing here is meant for
// production certificates. Functions are reentrant.
#ifndef SIDECAR_CERTS_THROWAWAY_PKI_H_
#define SIDECAR_CERTS_THROWAWAY_PKI_H_

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

// ThrowawayPkiOptions says what MakeThrowawayPki makes and WriteThrowawayPki writes.
struct ThrowawayPkiOptions {
  std::vector<std::string> hosts;  // extra SANs of the server and cluster certificates; IPs too
  std::string organization = "tls-sidecar test PKI";  // O= of every subject
  std::string ca_common_name = "tls-sidecar test CA";
  bool overwrite = false;  // WriteThrowawayPki: false refuses to replace existing files
  // Non-empty: the server, cluster and client certificates name this OCSP responder, and an
  // OCSP responder certificate issued by the CA (id-kp-OCSPSigning) is made too, for
  // `openssl ocsp -rsigner`, since the CA's key is not kept.
  std::string ocsp_url;
};

// ThrowawayPki is a CA (with its key, to issue more) and three certificates it signed, all
// ECDSA P-256, valid from an hour ago for a year: server and cluster (serverAuth and
// clientAuth, SANs = hosts + localhost + 127.0.0.1 + ::1, CN = the first DNS name, OU server
// or cluster) and client (clientAuth only, CN=client).
struct ThrowawayPki {
  GeneratedCertificate ca;
  GeneratedCertificate server;
  GeneratedCertificate cluster;
  GeneratedCertificate client;
  GeneratedCertificate ocsp_responder;  // only with ThrowawayPkiOptions::ocsp_url
};

// MakeThrowawayPki makes one in memory.
absl::StatusOr<ThrowawayPki> MakeThrowawayPki(const ThrowawayPkiOptions& options);

// WriteThrowawayPki makes one and writes it into `dir` (created if missing, mode 0700): ca.pem
// (certificate only; the CA key is discarded), server.pem, cluster.pem and client.pem
// (certificate then key, mode 0600), and with an OCSP URL ocsp-responder.pem. Returns the paths written, in that order. Refuses to
// replace existing files unless `options.overwrite`.
absl::StatusOr<std::vector<std::string>> WriteThrowawayPki(const std::string& dir,
                                                           const ThrowawayPkiOptions& options);

// WriteFile writes `contents` to `path` with permission `mode`, replacing it.
absl::Status WriteFile(const std::string& path, const std::string& contents, int mode = 0600);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_THROWAWAY_PKI_H_
