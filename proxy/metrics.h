// Metrics declares every metric of SPEC §7 in one place, built once at start. The data path
// only increments counters it reaches through fixed arrays (no label lookups, no locks of
// ours); the few label sets that come from the network (application/driver, TLS version and
// cipher) are bounded and looked up once per connection or handshake, never per byte.
// Thread-safe: prometheus-cpp's counters and gauges are atomic.
#ifndef SIDECAR_PROXY_METRICS_H_
#define SIDECAR_PROXY_METRICS_H_

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
#include <utility>

#include "proxy/close_reason.h"
#include "proxy/mode.h"

namespace sidecar::proxy {

enum class Direction : uint8_t { kIngress = 0, kEgress = 1 };
enum class Transport : uint8_t { kTls = 0, kPlaintext = 1 };
enum class FlowDirection : uint8_t { kClientToServer = 0, kServerToClient = 1 };
enum class SniMatch : uint8_t { kCertificate = 0, kOther = 1, kNone = 2 };

std::string_view DirectionName(Direction direction);
std::string_view TransportName(Transport transport);

class Metrics {
 public:
  // The number of distinct application/driver/kind label sets kept before folding into
  // application="other" (SPEC §7).
  static constexpr size_t kMaxClientLabelSets = 256;

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
  double RejectedCount(CloseReason reason) const {
    return rejected_[static_cast<int>(reason)]->Value();
  }

  // One completed handshake. `version` and `cipher` are BoringSSL's static strings.
  void Handshake(Direction direction, std::string_view version, std::string_view cipher,
                 bool resumed, double seconds);
  void Sni(SniMatch match) { sni_[static_cast<int>(match)]->Increment(); }

  // One plaintext client connection identified by its hello; bounded label sets.
  void PlaintextClient(std::string_view application, std::string_view driver, bool member);

  void SetMode(Mode mode);
  void ModeTransition(Mode from, Mode to);
  void SetModePersisted(bool persisted) { mode_persisted_->Set(persisted ? 1 : 0); }
  void UpstreamConnectFailure() { upstream_connect_failures_->Increment(); }
  void SetReady(bool ready) { ready_->Set(ready ? 1 : 0); }
  void CertificateReload(bool ok) { (ok ? reload_success_ : reload_failure_)->Increment(); }
  // Replaces every certificate expiry series with the given (role, subject, notAfter) rows.
  void SetCertificateExpiries(
      const std::vector<std::tuple<std::string, std::string, int64_t>>& certificates);

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
  prometheus::Family<prometheus::Counter>* plaintext_clients_ = nullptr;
  prometheus::Family<prometheus::Counter>* mode_transitions_ = nullptr;
  prometheus::Family<prometheus::Gauge>* certificate_expiry_ = nullptr;
  prometheus::Gauge* mode_persisted_ = nullptr;
  prometheus::Counter* upstream_connect_failures_ = nullptr;
  prometheus::Gauge* ready_ = nullptr;
  prometheus::Counter* reload_success_ = nullptr;
  prometheus::Counter* reload_failure_ = nullptr;

  // Label lookups that depend on what peers send are cached here; the mutex is taken once
  // per handshake or per identified client, never per byte.
  std::mutex mutex_;
  std::map<std::tuple<int, const char*, const char*, bool>, prometheus::Counter*>
      handshake_counters_;
  std::map<std::tuple<std::string, std::string, bool>, prometheus::Counter*> client_counters_;
  std::vector<prometheus::Gauge*> expiry_gauges_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_METRICS_H_
