// PortLock keeps a second tls-sidecar process from joining a port that one already listens
// on (SPEC §8). Each worker loop binds its own SO_REUSEPORT listener so the kernel spreads
// connections across loops; the kernel would let another process of the same user join that
// group just as silently and take a share of the traffic. So before binding, the sidecar
// claims every listening address:
//
//   - an abstract UNIX socket named after the address ("\0tls-sidecar/port/127.0.0.1:27017")
//     is the lock: the name is unique per network namespace, exactly the scope of the TCP
//     port, whoever the user and whatever the runtime directory; the kernel frees it when the
//     process ends, so a crash leaves nothing stale; and a process that finds it taken learns
//     the holder's pid from SO_PEERCRED.
//   - a probe bind without SO_REUSEPORT then finds any other listener whose address overlaps
//     (0.0.0.0 against 127.0.0.1, another user's sidecar, any other program).
//
// A hand-over to a new binary (takeover.h) passes the listening sockets and these locks.
#ifndef SIDECAR_PROXY_SERVER_PORT_LOCK_H_
#define SIDECAR_PROXY_SERVER_PORT_LOCK_H_

#include <sys/socket.h>

#include <string>

#include "absl/status/statusor.h"

namespace sidecar::proxy {

class PortLock {
 public:
  // Claim takes the lock of `address` and checks that nothing else listens on it. The error
  // reads "127.0.0.1:27017 is already in use (by another tls-sidecar, pid 1234)" or
  // "cannot listen on 127.0.0.1:27017: Address already in use". An address with port 0 needs
  // no claim (the kernel picks a free port) and gets an empty lock.
  static absl::StatusOr<PortLock> Claim(const sockaddr_storage& address);

  // Adopt holds a lock handed over by the sidecar this process takes over from (its claim
  // socket, received with SCM_RIGHTS): the name stays bound throughout, so the claim never
  // lapses. Takes ownership of `fd`.
  static PortLock Adopt(int fd) { return PortLock(fd); }

  PortLock() = default;
  PortLock(PortLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  PortLock& operator=(PortLock&& other) noexcept;
  PortLock(const PortLock&) = delete;
  PortLock& operator=(const PortLock&) = delete;
  ~PortLock();

  // fd is the claim socket (-1 for an empty lock), still owned by the lock: for handing over.
  int fd() const { return fd_; }

 private:
  explicit PortLock(int fd) : fd_(fd) {}
  int fd_ = -1;  // the listening abstract socket that holds the name
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_PORT_LOCK_H_
