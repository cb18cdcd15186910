// UniqueFd: ownership of a plain descriptor, for the few places that use sockets outside
// libuv (blocking probes, descriptor passing); libuv handles have UvHandle instead.
#ifndef SIDECAR_PROXY_BASE_UNIQUE_FD_H_
#define SIDECAR_PROXY_BASE_UNIQUE_FD_H_

namespace sidecar::proxy {

// UniqueFd owns one descriptor and closes it when it goes; move-only. Any thread.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  // release gives the descriptor up to the caller.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_UNIQUE_FD_H_
