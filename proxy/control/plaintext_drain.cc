#include "proxy/control/plaintext_drain.h"

#include <algorithm>
#include <map>

namespace sidecar::proxy {

std::vector<PlannedClose> PlanDrain(std::vector<DrainCandidate> candidates, uint64_t over_ms) {
  std::stable_partition(candidates.begin(), candidates.end(),
                        [](const DrainCandidate& c) { return !c.member; });
  std::vector<PlannedClose> plan;
  plan.reserve(candidates.size());
  const uint64_t n = candidates.size();
  for (uint64_t i = 0; i < n; ++i) {
    // over_ms * i / n without overflow for any window a request can ask for (≤ 1 day).
    uint64_t delay = static_cast<uint64_t>(static_cast<long double>(over_ms) * i / n);
    plan.push_back({delay, candidates[i].worker, std::move(candidates[i].connection)});
  }
  return plan;
}

absl::StatusOr<std::unique_ptr<DrainScheduler>> DrainScheduler::Create(uv_loop_t* loop,
                                                                       CloseBatch close) {
  std::unique_ptr<DrainScheduler> scheduler(new DrainScheduler(std::move(close)));
  auto timer = UvHandle<uv_timer_t>::Create("uv_timer_init",
                                            [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  scheduler->loop_ = loop;
  scheduler->timer_ = *std::move(timer);
  scheduler->timer_.get()->data = scheduler.get();
  return scheduler;
}

size_t DrainScheduler::Start(std::vector<PlannedClose> plan) {
  size_t replaced = pending();
  plan_ = std::move(plan);
  next_ = 0;
  if (!timer_) {
    return replaced;
  }
  uv_timer_stop(timer_.get());
  uv_update_time(loop_);
  started_ms_ = uv_now(loop_);
  RunDue();
  return replaced;
}

void DrainScheduler::Stop() {
  plan_.clear();
  next_ = 0;
  timer_.Close();
}

void DrainScheduler::OnTimer(uv_timer_t* timer) {
  static_cast<DrainScheduler*>(timer->data)->RunDue();
}

void DrainScheduler::RunDue() {
  uint64_t elapsed = uv_now(loop_) - started_ms_;
  std::map<int, std::vector<ConnectionRef>> due;
  while (next_ < plan_.size() && plan_[next_].delay_ms <= elapsed) {
    due[plan_[next_].worker].push_back(std::move(plan_[next_].connection));
    ++next_;
  }
  for (auto& [worker, connections] : due) {
    close_(worker, std::move(connections));
  }
  if (next_ < plan_.size()) {
    uv_timer_start(timer_.get(), &DrainScheduler::OnTimer, plan_[next_].delay_ms - elapsed, 0);
  } else {
    plan_.clear();
    next_ = 0;
  }
}

}  // namespace sidecar::proxy
