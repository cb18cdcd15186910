// Metrics declares every metric of SPEC §7 in one place, built once at start. The data path
// only increments counters it reaches through fixed arrays (no label lookups, no locks of
// ours); the few label sets that come from the network (application/driver, TLS version and
// cipher) are bounded and looked up once per connection or handshake, never per byte.
// Thread-safe: prometheus-cpp's counters and gauges are atomic.
#ifndef SIDECAR_PROXY_OBSERVE_METRICS_H_
#define SIDECAR_PROXY_OBSERVE_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "proxy/base/close_reason.h"
#include "proxy/base/mode.h"
#include "proxy/base/vocabulary.h"

namespace sidecar::proxy {

enum class SniMatch : uint8_t { kCertificate = 0, kOther = 1, kNone = 2 };

class Metrics {
 public:
  // At most this many distinct application/driver pairs label
  // tls_sidecar_plaintext_client_connections_total, "other"/"other" included (SPEC §7), and
  // as many, counted apart, label tls_sidecar_plaintext_client_refusals_total: the
  // first kMaxClientLabelSets - 1 pairs seen keep their names, later ones are folded into
  // application="other", driver="other". With the two kinds that is at most
  // kMaxClientLabelSets + 1 series whatever clients send.
  static constexpr size_t kMaxClientLabelSets = 256;
  static constexpr std::string_view kOtherLabel = "other";

  explicit Metrics(std::string_view version, std::string_view tls_library);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Connections admitted (the mode let them in) and closed.
  void ConnectionOpened(Direction direction, Transport transport) {
    accepted_[Index(direction, transport)]->Increment();
    active_[Index(direction, transport)]->Increment();
  }
  void ConnectionClosed(Direction direction, Transport transport) {
    active_[Index(direction, transport)]->Decrement();
  }
  void Rejected(CloseReason reason) { rejected_[static_cast<int>(reason)]->Increment(); }
  void Bytes(Direction direction, Transport transport, FlowDirection flow, uint64_t n) {
    bytes_[(Index(direction, transport) << 1) | static_cast<int>(flow)]->Increment(
        static_cast<double>(n));
  }
  double ActiveConnections(Direction direction, Transport transport) const {
    return active_[Index(direction, transport)]->Value();
  }

  // One completed handshake. `version` and `cipher` are BoringSSL's static strings.
  void Handshake(Direction direction, std::string_view version, std::string_view cipher,
                 bool resumed, double seconds);
  void Sni(SniMatch match) { sni_[static_cast<int>(match)]->Increment(); }

  // PlaintextClient counts one plaintext client connection identified by its hello.
  // `application` and `driver` must already be sanitised (protocol::SanitizeLabel, which
  // InspectFirstRequest applies). Takes a mutex once per connection; any thread.
  void PlaintextClient(std::string_view application, std::string_view driver, bool member);
  // PlaintextClientLabelSets is how many label sets the family holds now (for tests).
  size_t PlaintextClientLabelSets() const;
  // PlaintextClientRefused counts one plaintext client refused in requireTLS in
  // tls_sidecar_plaintext_client_refusals_total{application,driver}, under the same cap and
  // fold into "other" as PlaintextClient (sanitised labels; "" when the hello was not read).
  // Takes a mutex once per refusal; any thread.
  void PlaintextClientRefused(std::string_view application, std::string_view driver);
  size_t PlaintextClientRefusalLabelSets() const;

  // SetMode sets tls_sidecar_mode to 1 for `mode` and 0 for the other three.
  void SetMode(Mode mode);
  // ModeTransition counts from -> to and sets the mode gauge to `to`. Every from/to pair is
  // exported at 0 from the start, so that increase() sees the first transition.
  void ModeTransition(Mode from, Mode to);
  void SetModePersisted(bool persisted) { mode_persisted_->Set(persisted ? 1 : 0); }
  void UpstreamConnectFailure() { upstream_connect_failures_->Increment(); }
  void SetReady(bool ready) { ready_->Set(ready ? 1 : 0); }
  double ReadyValue() const { return ready_->Value(); }
  void CertificateReload(bool ok) { (ok ? reload_success_ : reload_failure_)->Increment(); }
  // Restarted counts tls_sidecar_restarts_total{kind="takeover"}: `n` hot restarts onto a new
  // binary that this process continues (the ones before it, carried over, plus its own).
  void Restarted(double n) { takeover_restarts_->Increment(n); }
  double TakeoverRestarts() const { return takeover_restarts_->Value(); }
  // SetCertificateExpiries replaces every certificate expiry series with the given
  // (role, subject, notAfter) rows: called at start and after each successful reload, so a
  // replaced certificate's series goes away.
  void SetCertificateExpiries(
      const std::vector<std::tuple<std::string, std::string, int64_t>>& certificates);
  // SetNextModeReady keeps one tls_sidecar_next_mode_ready{next_mode,reason} series: 1 when
  // the next step may be taken, else 0 with the first gate's code as the reason (a fixed
  // set: none, not_one_step, no_certificate, plaintext_clients, no_preflight). A change of
  // labels replaces the series. Any thread.
  void SetNextModeReady(std::string_view next_mode, std::string_view reason, bool ready);

 private:
  static int Index(Direction direction, Transport transport) {
    return (static_cast<int>(direction) << 1) | static_cast<int>(transport);
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::array<prometheus::Counter*, 4> accepted_{};
  std::array<prometheus::Gauge*, 4> active_{};
  std::array<prometheus::Counter*, kCloseReasonCount> rejected_{};
  std::array<prometheus::Counter*, 8> bytes_{};
  std::array<prometheus::Counter*, 3> sni_{};
  std::array<prometheus::Histogram*, 2> handshake_duration_{};
  std::array<prometheus::Gauge*, 4> mode_{};
  prometheus::Family<prometheus::Counter>* handshakes_ = nullptr;
  std::array<std::array<prometheus::Counter*, 4>, 4> mode_transitions_{};
  prometheus::Family<prometheus::Gauge>* certificate_expiry_ = nullptr;
  prometheus::Gauge* mode_persisted_ = nullptr;
  prometheus::Counter* upstream_connect_failures_ = nullptr;
  prometheus::Gauge* ready_ = nullptr;
  prometheus::Counter* reload_success_ = nullptr;
  prometheus::Counter* reload_failure_ = nullptr;
  prometheus::Counter* takeover_restarts_ = nullptr;
  prometheus::Family<prometheus::Gauge>* next_mode_ready_ = nullptr;
  prometheus::Gauge* next_mode_series_ = nullptr;  // under mutex_
  std::pair<std::string, std::string> next_mode_labels_;

  // Label lookups that depend on what peers send are cached here; the mutex is taken once
  // per handshake or per identified client, never per byte.
  mutable std::mutex mutex_;
  std::map<std::tuple<int, const char*, const char*, bool>, prometheus::Counter*>
      handshake_counters_;
  // One capped family labelled by what a client's hello names. `kind` is -1 for a family
  // without the kind label, else 0 (client) or 1 (member).
  struct ClientCounters {
    prometheus::Family<prometheus::Counter>* family = nullptr;
    std::map<std::tuple<std::string, std::string, int>, prometheus::Counter*> counters;
    size_t named = 0;  // entries of `counters` that are not the fold target
  };
  // ClientCounter finds or adds the counter for the labels, folding past the cap; the
  // caller holds mutex_.
  static prometheus::Counter* ClientCounter(ClientCounters& table, std::string_view application,
                                            std::string_view driver, int kind);
  ClientCounters plaintext_clients_;
  ClientCounters plaintext_refusals_;
  std::vector<prometheus::Gauge*> expiry_gauges_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_METRICS_H_
