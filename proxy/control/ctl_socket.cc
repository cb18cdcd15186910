#include "proxy/control/ctl_socket.h"

// See control_commands.cc: JSON_NOEXCEPTION and only non-throwing calls.
#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "proxy/base/concat.h"

namespace sidecar::proxy::ctl {
namespace {

// How long to wait for an answer; every command answers within milliseconds except when
// the sidecar is stuck, which is worth saying.
constexpr int kAnswerTimeoutSeconds = 30;

// FileDescriptor closes the socket however AskControlSocket returns.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) {
      close(fd);
    }
  }
};

// InPrivateDirectoryOf: the socket file at `path` and its directory belong to `uid`, and
// nobody else may write to the directory, so only `uid` (or root) can have put it there.
bool InPrivateDirectoryOf(const std::string& path, uid_t uid) {
  struct stat socket_stat {};
  struct stat directory_stat {};
  size_t slash = path.rfind('/');
  std::string directory =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  return lstat(path.c_str(), &socket_stat) == 0 && S_ISSOCK(socket_stat.st_mode) &&
         socket_stat.st_uid == uid && lstat(directory.c_str(), &directory_stat) == 0 &&
         S_ISDIR(directory_stat.st_mode) && directory_stat.st_uid == uid &&
         (directory_stat.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// Connect connects `socket` to `path` and checks who serves it; false with *error set when
// it is not to be talked to.
bool Connect(int socket, const std::string& path, std::string* error) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  if (connect(socket, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    *error = Concat("cannot reach the control socket ", path, ": ", std::strerror(errno),
                    " (is the sidecar running? --socket or --port names another one)");
    return false;
  }
  // Talk only to a sidecar run by root, by us, or by the user whose private directory holds
  // the socket (a packaged service's runtime directory): a socket given with --socket may be
  // in a directory that others can write to, where anyone could have put it.
  ucred server{};
  socklen_t length = sizeof(server);
  if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &server, &length) == 0 && server.uid != 0 &&
      server.uid != geteuid() && !InPrivateDirectoryOf(path, server.uid)) {
    *error = Concat("the control socket ", path, " is served by uid ", server.uid,
                    ", neither root nor us (uid ", geteuid(),
                    "), and it is not in a directory only that uid can write to; not talking "
                    "to it");
    return false;
  }
  timeval timeout{kAnswerTimeoutSeconds, 0};
  setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  return true;
}

bool SendAll(int socket, const std::string& path, const std::string& out, std::string* error) {
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = send(socket, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      *error = Concat("cannot send to the control socket ", path, ": ", std::strerror(errno));
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

// ReceiveLine reads until the first newline (or the end), returning what came before it.
std::optional<std::string> ReceiveLine(int socket, const std::string& path, std::string* error) {
  std::string in;
  char buffer[4096];
  while (in.find('\n') == std::string::npos) {
    ssize_t n = recv(socket, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      *error = Concat("no answer on the control socket ", path, ": ",
                      errno == EAGAIN ? "timed out" : std::strerror(errno));
      return std::nullopt;
    }
    if (n == 0) {
      if (in.empty()) {
        *error = Concat("the control socket ", path, " closed without answering");
        return std::nullopt;
      }
      break;
    }
    in.append(buffer, static_cast<size_t>(n));
  }
  return in.substr(0, in.find('\n'));
}

}  // namespace

std::optional<CtlAnswer> AskControlSocket(const std::string& path, const Json& request,
                                          std::string* error) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    *error = Concat("cannot reach the control socket ", path, ": the path is too long");
    return std::nullopt;
  }
  FileDescriptor socket_fd{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (socket_fd.fd < 0) {
    *error = Concat("socket: ", std::strerror(errno));
    return std::nullopt;
  }
  if (!Connect(socket_fd.fd, path, error) ||
      !SendAll(socket_fd.fd, path, request.dump() + "\n", error)) {
    return std::nullopt;
  }
  std::optional<std::string> line = ReceiveLine(socket_fd.fd, path, error);
  if (!line.has_value()) {
    return std::nullopt;
  }
  CtlAnswer answer;
  answer.line = *std::move(line);
  answer.json = Json::parse(answer.line, nullptr, false);
  if (answer.json.is_discarded() || !answer.json.is_object() || !answer.json.contains("ok") ||
      !answer.json["ok"].is_boolean()) {
    *error = Concat("the control socket ", path,
                    " answered something that is not a control "
                    "answer: ",
                    answer.line.substr(0, 200));
    return std::nullopt;
  }
  return answer;
}

}  // namespace sidecar::proxy::ctl
