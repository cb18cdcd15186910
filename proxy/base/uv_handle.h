// UvHandle<T> owns one libuv handle (uv_tcp_t, uv_timer_t, uv_async_t, uv_signal_t,
// uv_pipe_t, ...). Move-only. Closing is idempotent and asynchronous: Close() calls uv_close
// now and the handle's memory is freed in libuv's close callback, after which the optional
// `on_closed(context)` runs. The destructor closes a handle that is still open, so no path
// leaks one. Only the thread that runs the handle's loop may call any of this.
//
// libuv runs the callbacks of requests still pending on a stream (writes, shutdowns, with
// UV_ECANCELED) before that stream's close callback, so an owner that waits for on_closed
// of all its handles may embed its uv_write_t / uv_shutdown_t requests in itself.
#ifndef SIDECAR_PROXY_BASE_UV_HANDLE_H_
#define SIDECAR_PROXY_BASE_UV_HANDLE_H_

#include <uv.h>

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {

// UvError turns a libuv error code into a Status naming the operation.
inline absl::Status UvError(std::string_view operation, int code) {
  // Debian's Abseil has its own absl::string_view, which StrCat does not take from a std one.
  return absl::UnavailableError(absl::StrCat(std::string(operation), ": ", uv_strerror(code)));
}

template <typename T>
class UvHandle {
 public:
  using ClosedCallback = void (*)(void* context);

  UvHandle() = default;
  UvHandle(UvHandle&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
  UvHandle& operator=(UvHandle&& other) noexcept {
    if (this != &other) {
      Close();
      box_ = std::exchange(other.box_, nullptr);
    }
    return *this;
  }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  ~UvHandle() { Close(); }

  // Create allocates the handle and runs `init(T*)` (e.g. uv_tcp_init); a non-zero return
  // frees it again and becomes the error.
  template <typename Init>
  static absl::StatusOr<UvHandle> Create(std::string_view what, Init&& init) {
    UvHandle handle;
    handle.box_ = new Box();
    if (int rc = init(&handle.box_->handle); rc != 0) {
      delete handle.box_;  // never initialised, so uv_close must not see it
      handle.box_ = nullptr;
      return UvError(what, rc);
    }
    return handle;
  }

  T* get() const { return box_ ? &box_->handle : nullptr; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(get()); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(get()); }
  explicit operator bool() const { return box_ != nullptr; }

  // Close begins closing; `on_closed(context)` runs from the loop once the memory is freed.
  // Closing an empty wrapper does nothing and never calls on_closed.
  void Close(ClosedCallback on_closed = nullptr, void* context = nullptr) {
    if (box_ == nullptr) {
      return;
    }
    box_->on_closed = on_closed;
    box_->context = context;
    uv_close(reinterpret_cast<uv_handle_t*>(&box_->handle), &UvHandle::OnClose);
    box_ = nullptr;
  }

 private:
  struct Box {
    T handle{};  // first member: the uv_handle_t* that libuv hands back is the Box*
    ClosedCallback on_closed = nullptr;
    void* context = nullptr;
  };

  static void OnClose(uv_handle_t* raw) {
    Box* box = reinterpret_cast<Box*>(raw);
    ClosedCallback on_closed = box->on_closed;
    void* context = box->context;
    delete box;
    if (on_closed != nullptr) {
      on_closed(context);
    }
  }

  Box* box_ = nullptr;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_UV_HANDLE_H_
