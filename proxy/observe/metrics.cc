#include "proxy/observe/metrics.h"

#include <prometheus/counter.h>

#include <string>
#include <tuple>

namespace sidecar::proxy {

namespace {

constexpr std::array<Direction, 2> kDirections = {Direction::kIngress, Direction::kEgress};
constexpr std::array<Transport, 2> kTransports = {Transport::kTls, Transport::kPlaintext};

}  // namespace

Metrics::Metrics(std::string_view version, std::string_view tls_library)
    : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& accepted = BuildCounter()
                       .Name("tls_sidecar_connections_accepted_total")
                       .Help("Connections admitted, by direction and transport.")
                       .Register(*registry_);
  auto& active = BuildGauge()
                     .Name("tls_sidecar_connections_active")
                     .Help("Connections open now, by direction and transport.")
                     .Register(*registry_);
  auto& bytes = BuildCounter()
                    .Name("tls_sidecar_bytes_total")
                    .Help("Application bytes carried, by direction, transport and flow.")
                    .Register(*registry_);
  auto& duration = BuildHistogram()
                       .Name("tls_sidecar_tls_handshake_duration_seconds")
                       .Help("Time from the first TLS byte to the completed handshake.")
                       .Register(*registry_);
  for (Direction d : kDirections) {
    for (Transport t : kTransports) {
      prometheus::Labels labels = {{"direction", std::string(DirectionName(d))},
                                   {"transport", std::string(TransportName(t))}};
      accepted_[Index(d, t)] = &accepted.Add(labels);
      active_[Index(d, t)] = &active.Add(labels);
      for (FlowDirection flow : {FlowDirection::kClientToServer, FlowDirection::kServerToClient}) {
        auto flow_labels = labels;
        flow_labels["flow"] =
            flow == FlowDirection::kClientToServer ? "client_to_server" : "server_to_client";
        bytes_[(Index(d, t) << 1) | static_cast<int>(flow)] = &bytes.Add(flow_labels);
      }
    }
    handshake_duration_[static_cast<int>(d)] = &duration.Add(
        {{"direction", std::string(DirectionName(d))}},
        prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  }
  auto& rejected = BuildCounter()
                       .Name("tls_sidecar_connections_rejected_total")
                       .Help("Connections refused or cut by the sidecar, by reason.")
                       .Register(*registry_);
  for (int i = 0; i < kCloseReasonCount; ++i) {
    auto reason = static_cast<CloseReason>(i);
    if (IsRejection(reason)) {
      rejected_[i] = &rejected.Add({{"reason", std::string(CloseReasonName(reason))}});
    } else {
      // Not exported: ordinary endings. A private counter keeps Rejected() branch-free.
      static prometheus::Counter unexported;
      rejected_[i] = &unexported;
    }
  }
  handshakes_ = &BuildCounter()
                     .Name("tls_sidecar_tls_handshakes_total")
                     .Help("Completed TLS handshakes, by direction, version, cipher, resumption.")
                     .Register(*registry_);
  plaintext_clients_.family =
      &BuildCounter()
           .Name("tls_sidecar_plaintext_client_connections_total")
           .Help(
               "Plaintext client connections by the application and driver "
               "their hello named (at most 256 application/driver pairs; the rest are \"other\").")
           .Register(*registry_);
  plaintext_refusals_.family =
      &BuildCounter()
           .Name("tls_sidecar_plaintext_client_refusals_total")
           .Help(
               "Plaintext clients refused in requireTLS by the application and driver their "
               "hello named (at most 256 application/driver pairs; the rest are \"other\").")
           .Register(*registry_);
  auto& sni = BuildCounter()
                  .Name("tls_sidecar_tls_sni_total")
                  .Help("TLS handshakes by whether the SNI matched the server certificate.")
                  .Register(*registry_);
  sni_[static_cast<int>(SniMatch::kCertificate)] = &sni.Add({{"match", "certificate"}});
  sni_[static_cast<int>(SniMatch::kOther)] = &sni.Add({{"match", "other"}});
  sni_[static_cast<int>(SniMatch::kNone)] = &sni.Add({{"match", "none"}});
  auto& mode = BuildGauge()
                   .Name("tls_sidecar_mode")
                   .Help("1 for the running mode, 0 for the others.")
                   .Register(*registry_);
  for (Mode m : kAllModes) {
    mode_[static_cast<int>(m)] = &mode.Add({{"mode", std::string(ModeName(m))}});
  }
  auto& transitions = BuildCounter()
                          .Name("tls_sidecar_mode_transitions_total")
                          .Help("Mode changes, by from and to.")
                          .Register(*registry_);
  for (Mode from : kAllModes) {
    for (Mode to : kAllModes) {
      if (from != to) {
        mode_transitions_[static_cast<int>(from)][static_cast<int>(to)] = &transitions.Add(
            {{"from", std::string(ModeName(from))}, {"to", std::string(ModeName(to))}});
      }
    }
  }
  mode_persisted_ = &BuildGauge()
                         .Name("tls_sidecar_mode_persisted")
                         .Help("0 while the running mode differs from the configuration file's.")
                         .Register(*registry_)
                         .Add({});
  mode_persisted_->Set(1);
  certificate_expiry_ = &BuildGauge()
                             .Name("tls_sidecar_certificate_expiry_timestamp_seconds")
                             .Help("notAfter of each loaded certificate, as a Unix time.")
                             .Register(*registry_);
  auto& reloads = BuildCounter()
                      .Name("tls_sidecar_certificate_reloads_total")
                      .Help("Certificate reloads, by result.")
                      .Register(*registry_);
  reload_success_ = &reloads.Add({{"result", "success"}});
  reload_failure_ = &reloads.Add({{"result", "failure"}});
  // Exported at 0 from the start, so that increase() sees the first takeover.
  takeover_restarts_ = &BuildCounter()
                            .Name("tls_sidecar_restarts_total")
                            .Help("Hot restarts onto a new binary (tls-sidecar --takeover) that "
                                  "this process continues, by kind.")
                            .Register(*registry_)
                            .Add({{"kind", "takeover"}});
  upstream_connect_failures_ = &BuildCounter()
                                    .Name("tls_sidecar_upstream_connect_failures_total")
                                    .Help("Failed connections to the upstream mongod.")
                                    .Register(*registry_)
                                    .Add({});
  ready_ = &BuildGauge()
                .Name("tls_sidecar_ready")
                .Help(
                    "1 when listeners are bound, certificates loaded and the upstream "
                    "answered hello.")
                .Register(*registry_)
                .Add({});
  next_mode_ready_ = &BuildGauge()
                          .Name("tls_sidecar_next_mode_ready")
                          .Help(
                              "1 when the next step of the rolling upgrade (next_mode) may be "
                              "taken now, 0 when a setMode gate stands in the way (reason).")
                          .Register(*registry_);
  BuildGauge()
      .Name("tls_sidecar_build_info")
      .Help("Build information.")
      .Register(*registry_)
      .Add({{"version", std::string(version)}, {"tls_library", std::string(tls_library)}})
      .Set(1);
}

void Metrics::SetNextModeReady(std::string_view next_mode, std::string_view reason, bool ready) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::pair<std::string, std::string> labels{std::string(next_mode), std::string(reason)};
  if (next_mode_series_ == nullptr || labels != next_mode_labels_) {
    if (next_mode_series_ != nullptr) {
      next_mode_ready_->Remove(next_mode_series_);
    }
    next_mode_series_ =
        &next_mode_ready_->Add({{"next_mode", labels.first}, {"reason", labels.second}});
    next_mode_labels_ = std::move(labels);
  }
  next_mode_series_->Set(ready ? 1 : 0);
}

void Metrics::Handshake(Direction direction, std::string_view version, std::string_view cipher,
                        bool resumed, double seconds) {
  handshake_duration_[static_cast<int>(direction)]->Observe(seconds);
  // BoringSSL returns static strings for both, so their addresses identify them.
  auto key = std::make_tuple(static_cast<int>(direction), version.data(), cipher.data(), resumed);
  prometheus::Counter* counter;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = handshake_counters_.find(key);
    if (it == handshake_counters_.end()) {
      counter = &handshakes_->Add({{"direction", std::string(DirectionName(direction))},
                                   {"version", std::string(version)},
                                   {"cipher", std::string(cipher)},
                                   {"resumed", resumed ? "true" : "false"}});
      handshake_counters_.emplace(key, counter);
    } else {
      counter = it->second;
    }
  }
  counter->Increment();
}

prometheus::Counter* Metrics::ClientCounter(ClientCounters& table, std::string_view application,
                                            std::string_view driver, int kind) {
  auto key = std::make_tuple(std::string(application), std::string(driver), kind);
  auto it = table.counters.find(key);
  if (it == table.counters.end() && table.named + 1 >= kMaxClientLabelSets) {
    // Full: fold into the one "other" pair, so a client that invents names cannot grow the
    // series (and the scrape) without bound.
    key = std::make_tuple(std::string(kOtherLabel), std::string(kOtherLabel), kind);
    it = table.counters.find(key);
  } else if (it == table.counters.end()) {
    ++table.named;
  }
  if (it != table.counters.end()) {
    return it->second;
  }
  prometheus::Labels labels = {{"application", std::get<0>(key)}, {"driver", std::get<1>(key)}};
  if (kind >= 0) {
    labels["kind"] = kind == 1 ? "member" : "client";
  }
  prometheus::Counter* counter = &table.family->Add(labels);
  table.counters.emplace(std::move(key), counter);
  return counter;
}

void Metrics::PlaintextClient(std::string_view application, std::string_view driver, bool member) {
  prometheus::Counter* counter;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counter = ClientCounter(plaintext_clients_, application, driver, member ? 1 : 0);
  }
  counter->Increment();
}

size_t Metrics::PlaintextClientLabelSets() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return plaintext_clients_.counters.size();
}

void Metrics::PlaintextClientRefused(std::string_view application, std::string_view driver) {
  prometheus::Counter* counter;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counter = ClientCounter(plaintext_refusals_, application, driver, -1);
  }
  counter->Increment();
}

size_t Metrics::PlaintextClientRefusalLabelSets() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return plaintext_refusals_.counters.size();
}

void Metrics::SetMode(Mode mode) {
  for (Mode m : kAllModes) {
    mode_[static_cast<int>(m)]->Set(m == mode ? 1 : 0);
  }
}

void Metrics::ModeTransition(Mode from, Mode to) {
  if (prometheus::Counter* counter =
          mode_transitions_[static_cast<int>(from)][static_cast<int>(to)];
      counter != nullptr) {
    counter->Increment();
  }
  SetMode(to);
}

void Metrics::SetCertificateExpiries(
    const std::vector<std::tuple<std::string, std::string, int64_t>>& certificates) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (prometheus::Gauge* gauge : expiry_gauges_) {
    certificate_expiry_->Remove(gauge);
  }
  expiry_gauges_.clear();
  for (const auto& [role, subject, not_after] : certificates) {
    prometheus::Gauge& gauge = certificate_expiry_->Add({{"role", role}, {"subject", subject}});
    gauge.Set(static_cast<double>(not_after));
    expiry_gauges_.push_back(&gauge);
  }
}

}  // namespace sidecar::proxy
