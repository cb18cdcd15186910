#include "proxy/server/port_lock.h"

#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/base/socket_address.h"

namespace sidecar::proxy {
namespace {

// Enough queued connections for a few failed starts to read the holder's pid; they are never
// accepted (SO_PEERCRED needs only the connect), so later ones just go without the pid.
constexpr int kLockBacklog = 64;

sockaddr_un LockName(const sockaddr_storage& address, socklen_t* length) {
  sockaddr_un name{};
  name.sun_family = AF_UNIX;
  // Abstract namespace: sun_path starts with a NUL and the name is not NUL-terminated.
  std::string text = absl::StrCat("tls-sidecar/port/", FormatAddress(address));
  std::memcpy(name.sun_path + 1, text.data(), text.size());
  *length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + text.size());
  return name;
}

// HolderPid asks the holder of `address`'s lock who it is: its pid, or nullopt when nobody
// holds the lock or the holder cannot tell.
std::optional<pid_t> HolderPid(const sockaddr_storage& address) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return std::nullopt;
  }
  socklen_t length = 0;
  sockaddr_un name = LockName(address, &length);
  std::optional<pid_t> pid;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&name), length) == 0) {
    ucred holder{};
    socklen_t holder_length = sizeof(holder);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &holder, &holder_length) == 0 &&
        holder.pid > 0) {
      pid = holder.pid;
    }
  }
  close(fd);
  return pid;
}

// HolderOfOverlap looks for a sidecar holding the lock of the same port on the wildcard
// address of `address`'s family (0.0.0.0 or ::), the usual overlap.
std::optional<pid_t> HolderOfOverlap(const sockaddr_storage& address) {
  sockaddr_storage wildcard{};
  wildcard.ss_family = address.ss_family;
  if (address.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&wildcard)->sin6_addr = in6addr_any;
  }
  SetAddressPort(wildcard, AddressPort(address));
  std::optional<pid_t> pid = HolderPid(wildcard);
  if (pid == getpid()) {
    return std::nullopt;  // `address` is the wildcard itself: that lock is our own
  }
  return pid;
}

absl::Status InUseBySidecar(const sockaddr_storage& address, std::optional<pid_t> pid) {
  return absl::FailedPreconditionError(absl::StrCat(
      FormatAddress(address), " is already in use (by another tls-sidecar",
      pid ? absl::StrCat(", pid ", *pid) : std::string(), ")"));
}

// ProbeBind binds a throwaway socket to `address` without SO_REUSEPORT: it fails with
// EADDRINUSE when any socket listens on an overlapping address, whoever owns it.
// SO_REUSEADDR keeps connections of an earlier run in TIME_WAIT from counting.
int ProbeBind(const sockaddr_storage& address) {
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return errno;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (address.ss_family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  socklen_t length =
      address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  int err = bind(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0 ? 0 : errno;
  close(fd);
  return err;
}

}  // namespace

absl::StatusOr<PortLock> PortLock::Claim(const sockaddr_storage& address) {
  if (AddressPort(address) == 0) {
    return PortLock();
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  PortLock lock(fd);
  socklen_t length = 0;
  sockaddr_un name = LockName(address, &length);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&name), length) != 0) {
    if (errno == EADDRINUSE) {
      return InUseBySidecar(address, HolderPid(address));
    }
    return absl::UnavailableError(absl::StrCat("cannot lock ", FormatAddress(address), ": ",
                                               std::strerror(errno)));
  }
  // listen() records our credentials for SO_PEERCRED, so a second process can name us.
  if (listen(fd, kLockBacklog) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot lock ", FormatAddress(address), ": ",
                                               std::strerror(errno)));
  }
  if (int err = ProbeBind(address); err != 0) {
    if (err == EADDRINUSE) {
      if (std::optional<pid_t> pid = HolderOfOverlap(address)) {
        return InUseBySidecar(address, pid);
      }
    }
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", FormatAddress(address), ": ", std::strerror(err)));
  }
  return lock;
}

PortLock& PortLock::operator=(PortLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      close(fd_);
    }
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

PortLock::~PortLock() {
  if (fd_ >= 0) {
    close(fd_);
  }
}

}  // namespace sidecar::proxy
