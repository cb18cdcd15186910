// TlsSnapshot: every TLS context the sidecar uses, built together from one TlsSettings and
// immutable afterwards; shared by all loops through shared_ptr<const TlsSnapshot>. Reload
// builds a new one off the data path and swaps the pointer; connections keep the one they
// started with (an SSL also holds its own reference on its SSL_CTX).
//
// Threading: Create may run on any thread. Afterwards every method is const and may be
// called from any loop concurrently; SSL_new on the contexts is thread-safe (BoringSSL locks
// the session cache and ticket keys internally).
//
// TLS policy (SPEC §10; mongod's semantics for the options):
//  - TLS 1.2 and 1.3 by default; `disabled_protocols` removes versions, and an empty set
//    re-enables TLS 1.0 and 1.1 together with the ECDHE-CBC-SHA suites they need.
//  - Forward-secret AEAD suites only with TLS 1.2 (ECDHE with AES-GCM or CHACHA20-POLY1305);
//    TLS 1.3 suites are fixed by BoringSSL and all AEAD with (EC)DHE.
//  - No renegotiation: a BoringSSL server never renegotiates and rejects a client's request;
//    a BoringSSL client refuses server-initiated renegotiation by default
//    (ssl_renegotiate_never). No compression: BoringSSL has no TLS compression at all.
//  - Resumption: session tickets with keys BoringSSL generates per SSL_CTX and rotates
//    every 48 hours (SSL_DEFAULT_TICKET_KEY_ROTATION_INTERVAL) because none are set here;
//    plus the server-side session cache. A reload makes new contexts, so tickets and cached
//    sessions from before it fall back to a full handshake.
#ifndef SIDECAR_CERTS_TLS_SNAPSHOT_H_
#define SIDECAR_CERTS_TLS_SNAPSHOT_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "certs/certificate_info.h"
#include "certs/tls_contexts.h"
#include "certs/ocsp_peer_verify.h"
#include "certs/ocsp_staple.h"
#include "certs/tls_settings.h"

namespace sidecar::certs {

class TlsSnapshot {
 public:
  // Create loads and validates everything `settings` names. Errors name the file (or
  // setting) and what is wrong: not found, not PEM, key does not match certificate, wrong
  // password, expired, not yet valid, CRL without CA, selector matched zero/several (listing
  // them), selector together with a key file for the same role, protocols that leave no
  // version or a gap. Settings without any server certificate yield a snapshot whose
  // server_context() is null.
  // With settings.ocsp.enabled, the server context staples what ocsp_staple() holds, and
  // peers' certificates are checked by OCSP (certs/ocsp_peer_verify.h), asking
  // `ocsp_source` (may be null: staples only) when they staple nothing.
  static absl::StatusOr<std::shared_ptr<const TlsSnapshot>> Create(
      const TlsSettings& settings, std::shared_ptr<OcspStatusSource> ocsp_source = nullptr);

  TlsSnapshot(const TlsSnapshot&) = delete;
  TlsSnapshot& operator=(const TlsSnapshot&) = delete;
  ~TlsSnapshot();

  // server_context is the ingress TLS termination context (borrowed; lives as long as the
  // snapshot, and as long as any SSL made from it). nullptr when no certificate is configured.
  // With a CAFile it requests a client certificate and verifies it against the CA (and CRL);
  // allow_connections_without_certificates decides whether none is acceptable, and
  // allow_invalid_certificates accepts a chain that fails verification.
  SSL_CTX* server_context() const { return server_context_.get(); }

  // client_context is the egress TLS origination context (borrowed): it presents the cluster
  // certificate (clusterFile / clusterCertificateSelector, default the server certificate)
  // and verifies peers against clusterCAFile (default CAFile). nullptr when there is no CA to
  // verify peers against and allow_invalid_certificates is off. Hostnames are checked per
  // connection: call PrepareEgressSession on each session.
  SSL_CTX* client_context() const { return client_context_.get(); }

  // certificates lists what was loaded, for `status` and the expiry metric: the server leaf
  // ("server"), the cluster leaf ("cluster"), every CA certificate ("ca") and, when a separate
  // clusterCAFile is set, its certificates ("cluster_ca").
  const std::vector<CertificateInfo>& certificates() const { return certificates_; }

  bool allow_invalid_hostnames() const { return settings_.allow_invalid_hostnames; }

  // server_leaf and server_issuer are the server certificate and the certificate that
  // issued it (found in the key file's chain or CAFile), borrowed; null when absent.
  X509* server_leaf() const { return server_leaf_.get(); }
  X509* server_issuer() const { return server_issuer_.get(); }

  // ocsp_staple is what the server context staples: the stapler (proxy/) fills it, any
  // thread; null when OCSP is off or there is no server certificate. Mutable by design in
  // an otherwise immutable snapshot: a refreshed response must reach handshakes on it.
  OcspStaple* ocsp_staple() const { return ocsp_staple_.get(); }

  // settings is the configuration this snapshot was built from.
  const TlsSettings& settings() const { return settings_; }

  // PrepareEgressSession configures `ssl` (borrowed, a client made from client_context())
  // for a peer named `host` (a DNS name or an IP literal, without port): sends SNI for DNS
  // names (RFC 6066 forbids IP literals there) and, unless allow_invalid_hostnames, requires
  // the peer certificate to match: SSL_set1_host for DNS names,
  // X509_VERIFY_PARAM_set1_ip_asc on SSL_get0_param for IP addresses (SSL_set1_host only
  // checks DNS names). A mismatch then fails the handshake with X509_V_ERR_HOSTNAME_MISMATCH.
  absl::Status PrepareEgressSession(SSL* ssl, const std::string& host) const;

  // MatchesServerName says whether the server certificate covers `sni` (a DNS name as sent
  // in a ClientHello), by its subjectAltName DNS entries, wildcards included, or its CN when
  // it has none. False without a server certificate. For tls_sidecar_tls_sni_total{match}.
  bool MatchesServerName(const std::string& sni) const;

  // ExpiryWarnings returns a sentence for each loaded certificate that expires within `days`
  // days (mongod warns at 30), for the start-up log and `status`.
  std::vector<std::string> ExpiryWarnings(int days) const;

 private:
  TlsSnapshot() = default;

  TlsSettings settings_;
  bssl::UniquePtr<SSL_CTX> server_context_;
  bssl::UniquePtr<SSL_CTX> client_context_;
  std::vector<CertificateInfo> certificates_;
  bssl::UniquePtr<X509> server_leaf_;  // for MatchesServerName and OCSP
  bssl::UniquePtr<X509> server_issuer_;
  std::shared_ptr<OcspStaple> ocsp_staple_;
};

// VerifiedPeerSubject returns the RFC 4514 subject of the certificate the peer of `ssl`
// (borrowed) presented, when it presented one and it verified; "" otherwise (none sent, no
// CA configured, or accepted only because of allow_invalid_certificates). It reads the
// verification that ran, BoringSSL's or the OCSP one (PeerVerifyResult).
std::string VerifiedPeerSubject(const SSL* ssl);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_TLS_SNAPSHOT_H_
