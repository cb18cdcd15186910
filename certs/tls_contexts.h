// The TLS contexts of a snapshot (tls_snapshot.h), by role: the protocol versions and
// cipher suites the sidecar allows, the ingress context that presents the server certificate
// and verifies clients as mongod does, and the egress context that presents the cluster
// certificate and verifies peers. Pure functions over loaded material; any thread.
#ifndef SIDECAR_CERTS_TLS_CONTEXTS_H_
#define SIDECAR_CERTS_TLS_CONTEXTS_H_

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "certs/ocsp_peer_verify.h"
#include "certs/pem_file.h"
#include "certs/tls_settings.h"

namespace sidecar::certs {

// ProtocolVersionRange returns BoringSSL's min and max versions (TLS1_VERSION ...
// TLS1_3_VERSION) left by `disabled`. Error when nothing is left, or when the versions left
// are not contiguous (BoringSSL negotiates a range, it cannot skip a version).
absl::StatusOr<std::pair<uint16_t, uint16_t>> ProtocolVersionRange(
    const std::set<TlsProtocol>& disabled);

// CipherListFor returns the TLS 1.0-1.2 cipher list for a minimum version `min_version`:
// forward-secret AEAD suites, plus the ECDHE-CBC-SHA suites when TLS 1.0 or 1.1 is enabled.
std::string CipherListFor(uint16_t min_version);

// NewServerContext returns the ingress context: it presents `server`; with `cas` it asks
// every client for a certificate that chains to them (and is not revoked by `crls`), which
// settings.allow_connections_without_certificates makes optional; without, it asks none.
absl::StatusOr<bssl::UniquePtr<SSL_CTX>> NewServerContext(
    const TlsSettings& settings, std::pair<uint16_t, uint16_t> versions,
    const CertificateKeyPair& server, const std::vector<bssl::UniquePtr<X509>>& cas,
    const std::vector<bssl::UniquePtr<X509_CRL>>& crls,
    const std::shared_ptr<OcspStatusSource>& ocsp_source);

// With settings.ocsp.enabled both verify peers through certs/ocsp_peer_verify.h (revocation
// checks answered by `ocsp_source`, or staples only when it is null).
// NewClientContext returns the egress context: it presents `cluster` (borrowed; none when
// null) and verifies peers against `cluster_cas` (read from `cas_source`) and `crls`.
// Hostnames are checked per session (TlsSnapshot::PrepareEgressSession).
absl::StatusOr<bssl::UniquePtr<SSL_CTX>> NewClientContext(
    const TlsSettings& settings, std::pair<uint16_t, uint16_t> versions,
    const CertificateKeyPair* cluster, const std::vector<bssl::UniquePtr<X509>>& cluster_cas,
    const std::string& cas_source, const std::vector<bssl::UniquePtr<X509_CRL>>& crls,
    const std::shared_ptr<OcspStatusSource>& ocsp_source);

// OpenSslError returns the first queued BoringSSL error in words and clears the queue.
std::string OpenSslError();

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_TLS_CONTEXTS_H_
