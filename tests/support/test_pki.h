// Test helpers for anything that needs TLS: a temporary directory, the throwaway PKI of
// certs/throwaway_pki.h written into it at run time (no key is ever committed), CRLs, and a
// handshake between two SSL objects over memory BIOs (BoringSSL's ssl_test.cc way of testing
// TLS without sockets).
// Single-threaded use per object.
#ifndef SIDECAR_TESTS_SUPPORT_TEST_PKI_H_
#define SIDECAR_TESTS_SUPPORT_TEST_PKI_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "certs/throwaway_pki.h"
#include "certs/tls_snapshot.h"
#include "certs/tls_settings.h"

namespace sidecar::test_support {

// TempDir is a fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction. Move-only.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // path is "" when the directory could not be made (tests then fail on their first write).
  const std::string& path() const { return path_; }
  // File returns path()/name without touching the file system.
  std::string File(const std::string& name) const;
  // Write writes `contents` to path()/name (mode 0600) and returns the full path; aborts the
  // test binary if it cannot, since every later assertion would be meaningless.
  std::string Write(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

// TestPki is the throwaway PKI (certs::MakeThrowawayPki, organization "tls-sidecar tests",
// CA "Test CA") written into its own TempDir as ca.pem, server.pem, cluster.pem, client.pem
// (certificate then key). server.pem and cluster.pem carry SANs localhost, 127.0.0.1, ::1 and
// `hosts`.
struct TestPki {
  static absl::StatusOr<std::unique_ptr<TestPki>> Create(
      const std::vector<std::string>& hosts = {});

  // Settings: the server certificate, the CA, and the cluster certificate; clients without a
  // certificate allowed (not the default).
  certs::TlsSettings Settings() const;

  // Issue makes another certificate signed by this CA (options.issuer is set here).
  absl::StatusOr<certs::GeneratedCertificate> Issue(certs::CertificateOptions options) const;

  TempDir dir;
  certs::GeneratedCertificate ca;
  certs::GeneratedCertificate server;
  certs::GeneratedCertificate cluster;
  certs::GeneratedCertificate client;
  std::string ca_file;
  std::string server_file;
  std::string cluster_file;
  std::string client_file;
};

// CrlOptions says what MakeCrl produces: a CRL signed by `issuer`, revoking the serials.
struct CrlOptions {
  std::vector<uint64_t> revoked_serials;
  absl::Duration last_update = absl::Hours(-1);       // relative to now
  absl::Duration next_update = absl::Hours(24 * 30);  // relative to now; negative: stale CRL
};

// MakeCrl returns a PEM "X509 CRL" block signed by `issuer` (its key and subject).
absl::StatusOr<std::string> MakeCrl(const certs::GeneratedCertificate& issuer,
                                    const CrlOptions& options);

// SerialOf returns the serial of `cert` (borrowed) when it fits in 64 bits, else 0.
uint64_t SerialOf(X509* cert);

// HandshakeResult is what both ends saw.
struct HandshakeResult {
  bool ok = false;         // both ends completed and neither saw an alert afterwards
  bool client_ok = false;  // the client completed its side
  bool server_ok = false;  // the server completed its side
  std::string
      client_error;  // first BoringSSL error on the client, e.g. "CERTIFICATE_VERIFY_FAILED"
  std::string server_error;  // same for the server
  std::string version;       // SSL_get_version of the client when it completed
  bool resumed = false;      // SSL_session_reused on the client
};

// Handshake runs `client` (connect state) against `server` (accept state), both borrowed,
// giving each a pair of memory BIOs and shuttling bytes until both finish or one fails.
// Afterwards the server sends one application byte, which the client reads, so TLS 1.3
// session tickets reach the client (SSL_get1_session then has something to resume) and a
// server's rejection of the client's certificate (sent after the client's Finished) shows
// up as a client error.
HandshakeResult Handshake(SSL* client, SSL* server);

// NewIngressSession returns a server-side SSL on snapshot.server_context(), in accept state,
// or null when there is no server context.
bssl::UniquePtr<SSL> NewIngressSession(const certs::TlsSnapshot& snapshot);

// NewEgressSession returns a client-side SSL on snapshot.client_context(), in connect state,
// set up by PrepareEgressSession for `host`. Error when there is no client context.
absl::StatusOr<bssl::UniquePtr<SSL>> NewEgressSession(const certs::TlsSnapshot& snapshot,
                                                      const std::string& host);

// NewClient returns an SSL in connect state on `ctx` (borrowed).
bssl::UniquePtr<SSL> NewClient(SSL_CTX* ctx);
// NewServer returns an SSL in accept state on `ctx` (borrowed).
bssl::UniquePtr<SSL> NewServer(SSL_CTX* ctx);

// NewClientContext returns a bare client context: trusts `ca_pem` when given, presents
// `cert_key_pem` (certificate then key) when given, and limits versions to [min, max].
bssl::UniquePtr<SSL_CTX> NewClientContext(const std::string& ca_pem,
                                          const std::string& cert_key_pem, uint16_t min_version,
                                          uint16_t max_version);

}  // namespace sidecar::test_support

#endif  // SIDECAR_TESTS_SUPPORT_TEST_PKI_H_
