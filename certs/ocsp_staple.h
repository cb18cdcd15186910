// OcspStaple is the OCSP response the server currently staples, shared between the
// TlsSnapshot whose server context sends it and the stapler that refreshes it. The
// snapshot's certificate callback reads it in every handshake that asks for a status
// (status_request), and SSL_set_ocsp_response copies it into that connection; so a refresh
// reaches the next handshake without touching the immutable SSL_CTX and without a lock
// held across a handshake.
//
// Thread-safe: Set from the control loop, Get from any data loop.
#ifndef SIDECAR_CERTS_OCSP_STAPLE_H_
#define SIDECAR_CERTS_OCSP_STAPLE_H_

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

#include "absl/time/time.h"
#include "certs/ocsp_response.h"

namespace sidecar::certs {

// StapledResponse is one verified response and what it says.
struct StapledResponse {
  std::string der;
  OcspCertStatus status = OcspCertStatus::kUnknown;
  absl::Time this_update;
  absl::Time next_update = absl::InfiniteFuture();
  absl::Time fetched_at;
};

// OcspStapleState is what `status` and the status page say about stapling.
struct OcspStapleState {
  bool enabled = false;       // ocspEnabled and a server certificate
  std::string responder;      // the URL asked, "" when the certificate names none
  bool must_staple = false;   // the certificate demands a staple (RFC 7633)
  std::string status;         // "good", "revoked", "unknown", or "none" (nothing stapled)
  int64_t this_update = 0;    // unix seconds of the stapled response, 0 without one
  int64_t next_update = 0;
  int64_t next_refresh = 0;   // when the next fetch is due, 0 when none is planned
  std::string last_error;     // the last fetch's failure, "" after a success
};

class OcspStaple {
 public:
  // Get returns the current response, or null when none is stapled.
  std::shared_ptr<const StapledResponse> Get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  // Set replaces the current response (null: staple nothing).
  void Set(std::shared_ptr<const StapledResponse> response) {
    std::lock_guard<std::mutex> lock(mutex_);
    current_ = std::move(response);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const StapledResponse> current_;
};

// InstallStapling makes `ctx` (borrowed, a server context) staple what `staple` holds in
// every handshake whose client asks for it; the context keeps a reference to `staple`.
absl::Status InstallStapling(SSL_CTX* ctx, std::shared_ptr<OcspStaple> staple);

// FindIssuer returns the certificate among `candidates` (borrowed) that issued `cert`
// (its subject is cert's issuer and its key verifies cert's signature), or null.
bssl::UniquePtr<X509> FindIssuer(X509* cert, const std::vector<X509*>& candidates);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_OCSP_STAPLE_H_
