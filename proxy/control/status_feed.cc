#include "proxy/control/status_feed.h"

#include <utility>
#include <vector>

#include "proxy/control/ctl_main.h"
#include "proxy/control/readiness_command.h"

namespace sidecar::proxy {

absl::StatusOr<std::unique_ptr<StatusFeed>> StatusFeed::Create(
    uv_loop_t* loop, ControlTarget& target, const ControlMemory& memory, Metrics& metrics,
    std::shared_ptr<StatusBoard> board, std::chrono::milliseconds interval) {
  std::unique_ptr<StatusFeed> feed(new StatusFeed(target, memory, metrics, std::move(board)));
  auto timer = UvHandle<uv_timer_t>::Create("uv_timer_init",
                                            [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  feed->timer_ = *std::move(timer);
  feed->timer_.get()->data = feed.get();
  auto ms = static_cast<uint64_t>(interval.count());
  uv_timer_start(feed->timer_.get(), &StatusFeed::OnTick, 0, ms);
  // The page is a convenience: it must never keep a draining sidecar's loop alive.
  uv_unref(feed->timer_.base());
  return feed;
}

void StatusFeed::Close() {
  timer_.Close();
  alive_.reset();
}

void StatusFeed::OnTick(uv_timer_t* timer) { static_cast<StatusFeed*>(timer->data)->Tick(); }

void StatusFeed::Tick() {
  if (gathering_) {
    return;
  }
  gathering_ = true;
  GatherReadiness(target_, std::nullopt,
                  [weak = std::weak_ptr<StatusFeed*>(alive_)](ReadinessReport report) {
                    if (std::shared_ptr<StatusFeed*> self = weak.lock()) {
                      (*self)->gathering_ = false;
                      (*self)->Publish(report);
                    }
                  });
}

void StatusFeed::Publish(const ReadinessReport& report) {
  StatusFacts facts = target_.Facts();
  mix_.push_back({facts.now_unix, facts.active.tls, facts.active.plaintext});
  while (mix_.size() > kMixSamples) {
    mix_.pop_front();
  }
  const bool last_step = !NextMode(report.from).has_value();
  metrics_.SetNextModeReady(last_step ? "none" : ModeName(report.to), MetricReason(report),
                            report.ready);

  StatusPageData data;
  data.version = facts.version;
  data.now_unix = facts.now_unix;
  data.uptime_seconds = facts.uptime_seconds;
  data.mode = ModeName(report.from);
  data.next_mode = ModeName(report.to);
  data.verdict = report.Verdict();
  // The page is read by the person who will type the commands: ctl's words, not the
  // protocol's ("add `--force`", "`tls-sidecar ctl drain-plaintext SECONDS`").
  for (const ReadinessItem& item : report.reasons) {
    data.reasons.push_back(CliWording(item.sentence));
  }
  for (const ReadinessItem& item : report.warnings) {
    data.warnings.push_back(CliWording(item.sentence));
  }
  data.note = report.note;
  data.mix.assign(mix_.begin(), mix_.end());
  data.clients = target_.Clients(Transport::kPlaintext);
  data.egress_peers = target_.egress_peer_count();
  data.preflight = memory_.preflight;
  data.certificates = std::move(facts.certificates);
  data.changes.assign(memory_.changes.begin(), memory_.changes.end());
  board_->Publish(std::move(data));
}

}  // namespace sidecar::proxy
