// Readiness says whether the sidecar can serve (SPEC §8): its listeners are bound, its
// certificates are loaded, the upstream mongod answered hello, and its mode lets some client
// in with the certificates it has (requireTLS without a server certificate serves nobody,
// SPEC §6; computed from the mode and the certificate, never assumed). /ready and
// tls_sidecar_ready both read it. Owned by Server; the main loop writes it, the metrics
// endpoint's threads read it. Thread-safe.
#ifndef SIDECAR_PROXY_OBSERVE_READINESS_H_
#define SIDECAR_PROXY_OBSERVE_READINESS_H_

#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "proxy/base/mode.h"
#include "proxy/observe/metrics.h"

namespace sidecar::proxy {

class Readiness {
 public:
  // Starts not ready: nothing bound, no certificates, upstream not asked yet. `metrics`
  // must outlive this object; tls_sidecar_ready follows every change.
  explicit Readiness(Metrics& metrics);
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  void SetListenersBound(bool bound);
  void SetCertificatesLoaded(bool loaded);
  // SetUpstream records the last hello probe: OK when the upstream answered, else why not
  // (the message is shown by /ready, e.g. "127.0.0.1:27018: connection refused").
  void SetUpstream(const absl::Status& status);
  // SetServing records the running mode and whether a server certificate is loaded, after
  // start, every mode change and every reload.
  void SetServing(Mode mode, bool server_certificate);
  // SetDraining: SIGTERM closed the listeners; not ready from now on.
  void SetDraining();

  struct State {
    bool ready = false;
    // "ready", or every unmet condition, one per line ("upstream mongod ...").
    std::string text;
  };
  State Get() const;

 private:
  void UpdateLocked();       // needs mu_
  bool ReadyLocked() const;  // needs mu_

  Metrics& metrics_;
  mutable std::mutex mu_;
  bool listeners_bound_ = false;
  bool certificates_loaded_ = false;
  bool draining_ = false;
  Mode mode_ = Mode::kDisabled;
  bool server_certificate_ = false;
  absl::Status upstream_ = absl::UnavailableError("has not answered hello yet");
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_READINESS_H_
