// LoopMailbox runs tasks on one libuv loop on behalf of any thread: worker loops hand their
// answers to the main loop through it. Created and closed on the loop's thread; shared by
// shared_ptr so that a task posted from a worker after shutdown finds a closed mailbox (and
// is dropped) instead of a freed one.
#ifndef SIDECAR_PROXY_BASE_LOOP_MAILBOX_H_
#define SIDECAR_PROXY_BASE_LOOP_MAILBOX_H_

#include <uv.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "proxy/base/uv_handle.h"

namespace sidecar::proxy {

class LoopMailbox {
 public:
  // Create makes the mailbox on `loop`; loop thread only.
  static absl::StatusOr<std::shared_ptr<LoopMailbox>> Create(uv_loop_t* loop);

  LoopMailbox(const LoopMailbox&) = delete;
  LoopMailbox& operator=(const LoopMailbox&) = delete;
  // Must have been closed on the loop thread (or never opened) by then.
  ~LoopMailbox() = default;

  // Post runs `task` on the loop soon. Any thread. After Close the task is destroyed
  // unrun, on the calling thread.
  void Post(absl::AnyInvocable<void()> task);

  // Close stops the mailbox: tasks not yet run are dropped. Loop thread only; idempotent.
  void Close();

 private:
  LoopMailbox() = default;
  static void OnAsync(uv_async_t* async);

  std::mutex mutex_;
  bool closed_ = false;  // guarded by mutex_
  std::vector<absl::AnyInvocable<void()>> tasks_;
  UvHandle<uv_async_t> async_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_LOOP_MAILBOX_H_
