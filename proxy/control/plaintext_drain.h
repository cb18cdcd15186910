// Draining plaintext clients (SPEC §6 `drainPlaintext`): the open plaintext client
// connections are closed one by one, spread evenly over a window, so that driver pools
// reconnect (now over TLS) without a storm. Cluster members go last.
//
// PlanDrain is the pure schedule. DrainScheduler runs a schedule on the main loop: when a
// close is due it hands the connections due to a callback that posts them to the worker that
// owns them; the worker closes those still open (counted as drained_plaintext).
// Nothing here holds a Connection: the worker loops own them.
#ifndef SIDECAR_PROXY_CONTROL_PLAINTEXT_DRAIN_H_
#define SIDECAR_PROXY_CONTROL_PLAINTEXT_DRAIN_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/base/uv_handle.h"

namespace sidecar::proxy {

// ConnectionRef names a connection across loop hops without holding it: the id its worker
// gave it (never reused, so a connection closed meanwhile is simply not found) and the
// client's address (ip:port), for grouping and display.
struct ConnectionRef {
  uint64_t id = 0;
  std::string peer;

  friend bool operator==(const ConnectionRef&, const ConnectionRef&) = default;
};

// DrainCandidate is one open plaintext client connection and the worker that owns it.
struct DrainCandidate {
  int worker = 0;
  ConnectionRef connection;
  bool member = false;
};

struct PlannedClose {
  uint64_t delay_ms = 0;  // from the start of the drain
  int worker = 0;
  ConnectionRef connection;
};

// PlanDrain orders application clients before cluster members (keeping the given order
// otherwise) and spaces the n closes evenly: the i-th (from 0) at over_ms * i / n, so the
// first goes at once and the last one interval before the window ends. Pure; any thread.
std::vector<PlannedClose> PlanDrain(std::vector<DrainCandidate> candidates, uint64_t over_ms);

// DrainScheduler runs one plan at a time on one loop (the main loop). Loop thread only.
class DrainScheduler {
 public:
  // CloseBatch is called on the loop with the connections due now that belong to `worker`.
  using CloseBatch = std::function<void(int worker, std::vector<ConnectionRef> connections)>;

  static absl::StatusOr<std::unique_ptr<DrainScheduler>> Create(uv_loop_t* loop, CloseBatch close);

  // Start runs `plan` from now, replacing a plan still in progress. Returns how many closes
  // of the replaced plan were still pending (the new plan covers the connections that are
  // still open). Closes due at once run before Start returns.
  size_t Start(std::vector<PlannedClose> plan);

  // pending is the number of closes not yet handed out.
  size_t pending() const { return plan_.size() - next_; }

  // Stop drops the plan and closes the timer; the scheduler does nothing afterwards.
  void Stop();

 private:
  explicit DrainScheduler(CloseBatch close) : close_(std::move(close)) {}
  static void OnTimer(uv_timer_t* timer);
  void RunDue();

  CloseBatch close_;
  uv_loop_t* loop_ = nullptr;
  UvHandle<uv_timer_t> timer_;
  std::vector<PlannedClose> plan_;
  size_t next_ = 0;
  uint64_t started_ms_ = 0;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_PLAINTEXT_DRAIN_H_
