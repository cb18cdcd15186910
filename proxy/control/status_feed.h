// StatusFeed keeps the status page and tls_sidecar_next_mode_ready current: every
// `interval` it samples the open ingress connections by transport into a ring (the chart's
// last kMixSamples points), asks the same readiness as `ctl readiness` for the next step,
// and publishes it all, with the clients, the peers' last preflight, the certificates and
// the recent mode changes, to the StatusBoard the metrics endpoint renders from.
//
// Made and closed by the control plane; main loop only. `target`, `memory` and `metrics`
// must outlive it; a readiness answer that arrives after Close is dropped.
#ifndef SIDECAR_PROXY_CONTROL_STATUS_FEED_H_
#define SIDECAR_PROXY_CONTROL_STATUS_FEED_H_

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>

#include "absl/status/statusor.h"
#include "proxy/base/uv_handle.h"
#include "proxy/control/control_commands.h"
#include "proxy/control/readiness_check.h"
#include "proxy/observe/metrics.h"
#include "proxy/observe/status_board.h"

namespace sidecar::proxy {

class StatusFeed {
 public:
  // Ten minutes of samples at the default interval.
  static constexpr size_t kMixSamples = 200;
  static constexpr std::chrono::milliseconds kDefaultInterval{3000};

  static absl::StatusOr<std::unique_ptr<StatusFeed>> Create(
      uv_loop_t* loop, ControlTarget& target, const ControlMemory& memory, Metrics& metrics,
      std::shared_ptr<StatusBoard> board, std::chrono::milliseconds interval = kDefaultInterval);
  ~StatusFeed() { Close(); }
  StatusFeed(const StatusFeed&) = delete;
  StatusFeed& operator=(const StatusFeed&) = delete;

  // Close stops the timer. Idempotent.
  void Close();

 private:
  StatusFeed(ControlTarget& target, const ControlMemory& memory, Metrics& metrics,
             std::shared_ptr<StatusBoard> board)
      : target_(target), memory_(memory), metrics_(metrics), board_(std::move(board)) {}
  static void OnTick(uv_timer_t* timer);
  void Tick();
  void Publish(const ReadinessReport& report);

  ControlTarget& target_;
  const ControlMemory& memory_;
  Metrics& metrics_;
  std::shared_ptr<StatusBoard> board_;
  UvHandle<uv_timer_t> timer_;
  std::deque<MixSample> mix_;
  bool gathering_ = false;  // a readiness answer is still owed: skip a tick, never pile up
  // Dropped by Close: a readiness answer holding only a weak reference then goes nowhere.
  std::shared_ptr<StatusFeed*> alive_ = std::make_shared<StatusFeed*>(this);
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_STATUS_FEED_H_
