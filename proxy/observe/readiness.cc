#include "proxy/observe/readiness.h"

#include "absl/strings/str_cat.h"
#include "proxy/base/concat.h"

namespace sidecar::proxy {

Readiness::Readiness(Metrics& metrics) : metrics_(metrics) {
  std::lock_guard<std::mutex> lock(mu_);
  UpdateLocked();
}

void Readiness::SetListenersBound(bool bound) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_bound_ = bound;
  UpdateLocked();
}

void Readiness::SetCertificatesLoaded(bool loaded) {
  std::lock_guard<std::mutex> lock(mu_);
  certificates_loaded_ = loaded;
  UpdateLocked();
}

void Readiness::SetUpstream(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  upstream_ = status;
  UpdateLocked();
}

void Readiness::SetServing(Mode mode, bool server_certificate) {
  std::lock_guard<std::mutex> lock(mu_);
  mode_ = mode;
  server_certificate_ = server_certificate;
  UpdateLocked();
}

void Readiness::SetDraining() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
  UpdateLocked();
}

Readiness::State Readiness::Get() const {
  State state;
  std::lock_guard<std::mutex> lock(mu_);
  state.ready = ReadyLocked();
  if (state.ready) {
    state.text = "ready\n";
    return state;
  }
  if (draining_) {
    absl::StrAppend(&state.text, "shutting down: listeners closed\n");
  }
  if (!listeners_bound_) {
    absl::StrAppend(&state.text, "listeners not bound\n");
  }
  if (!certificates_loaded_) {
    absl::StrAppend(&state.text, "certificates not loaded\n");
  }
  if (!upstream_.ok()) {
    absl::StrAppend(&state.text, "upstream mongod ", upstream_.message(), "\n");
  }
  if (!CanServeAnyClient(mode_, server_certificate_)) {
    ConcatAppend(&state.text, "no client can be served: ", ModeName(mode_),
                 " refuses plaintext and no server certificate is loaded "
                 "(net.tls.certificateKeyFile or net.tls.certificateSelector)\n");
  }
  return state;
}

bool Readiness::ReadyLocked() const {
  return !draining_ && listeners_bound_ && certificates_loaded_ && upstream_.ok() &&
         CanServeAnyClient(mode_, server_certificate_);
}

void Readiness::UpdateLocked() { metrics_.SetReady(ReadyLocked()); }

}  // namespace sidecar::proxy
