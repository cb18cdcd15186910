#include "proxy/base/loop_mailbox.h"

#include <utility>

namespace sidecar::proxy {

absl::StatusOr<std::shared_ptr<LoopMailbox>> LoopMailbox::Create(uv_loop_t* loop) {
  std::shared_ptr<LoopMailbox> mailbox(new LoopMailbox());
  auto async = UvHandle<uv_async_t>::Create(
      "uv_async_init", [&](uv_async_t* a) { return uv_async_init(loop, a, &OnAsync); });
  if (!async.ok()) {
    return async.status();
  }
  mailbox->async_ = *std::move(async);
  mailbox->async_.get()->data = mailbox.get();
  return mailbox;
}

void LoopMailbox::Post(absl::AnyInvocable<void()> task) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (closed_) {
    lock.unlock();
    return;  // `task` is destroyed here, outside the lock: it may hold references of its own
  }
  tasks_.push_back(std::move(task));
  uv_async_send(async_.get());
}

void LoopMailbox::Close() {
  std::vector<absl::AnyInvocable<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      return;
    }
    closed_ = true;
    dropped.swap(tasks_);
    async_.Close();
  }
}

void LoopMailbox::OnAsync(uv_async_t* async) {
  auto* self = static_cast<LoopMailbox*>(async->data);
  std::vector<absl::AnyInvocable<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    tasks.swap(self->tasks_);
  }
  for (auto& task : tasks) {
    task();
  }
}

}  // namespace sidecar::proxy
