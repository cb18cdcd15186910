#include "proxy/egress_preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/socket_address.h"

namespace sidecar::proxy {

namespace {

using Clock = std::chrono::steady_clock;

// Fd closes a descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// WaitFor polls `fd` for `events` until the deadline: true when ready.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, RemainingMs(deadline));
    if (rc > 0) {
      return true;
    }
    if (rc == 0 || errno != EINTR) {
      return false;
    }
  }
}

// Connect makes the TCP connection and returns the descriptor, which the caller owns; on
// failure it fills row.error and returns -1.
int Connect(const PreflightTarget& target, uint32_t mark, Clock::time_point deadline,
            PeerPreflight& row) {
  int fd = socket(target.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    row.error = absl::StrCat("socket: ", strerror(errno));
    return -1;
  }
  Fd owned(fd);
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    row.error = absl::StrCat("setting SO_MARK ", mark, ": ", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  socklen_t length =
      target.address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&target.address), length) != 0) {
    if (errno != EINPROGRESS) {
      row.error =
          absl::StrCat("connecting to ", FormatAddress(target.address), ": ", strerror(errno));
      return -1;
    }
    if (!WaitFor(fd, POLLOUT, deadline)) {
      row.error = absl::StrCat("connecting to ", FormatAddress(target.address), ": timed out");
      return -1;
    }
    int error = 0;
    socklen_t size = sizeof(error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error != 0) {
      row.error =
          absl::StrCat("connecting to ", FormatAddress(target.address), ": ", strerror(error));
      return -1;
    }
  }
  row.connected = true;
  return owned.release();
}

// TlsFailure names why the handshake failed, in the terms an operator acts on.
// VerifyResult is the chain and name verification's outcome, or X509_V_OK when the peer
// sent no certificate yet (BoringSSL answers "invalid call" until it has verified one).
long VerifyResult(const SSL* ssl) {
  return SSL_get0_peer_certificates(ssl) == nullptr ? X509_V_OK : SSL_get_verify_result(ssl);
}

std::string TlsFailure(SSL* ssl, int ret, bool timed_out) {
  if (timed_out) {
    return "no TLS answer before the deadline: the peer does not speak TLS on this port "
           "(a plaintext-only listener?)";
  }
  int err = SSL_get_error(ssl, ret);
  if (long verify = VerifyResult(ssl); verify != X509_V_OK) {
    return absl::StrCat("the peer's certificate was not accepted: ",
                        X509_verify_cert_error_string(verify));
  }
  if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
    return "the peer closed the connection during the TLS handshake: it does not accept "
           "TLS on this port (a plaintext-only listener, or a sidecar in disabled mode?)";
  }
  uint32_t code = ERR_peek_last_error();
  if (code == 0) {
    return absl::StrCat("TLS error ", err);
  }
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  std::string reason = ERR_reason_error_string(code) ? ERR_reason_error_string(code) : "";
  if (reason.find("HANDSHAKE_FAILURE") != std::string::npos) {
    return absl::StrCat("the peer refused the TLS handshake (", buf,
                        "): a sidecar in disabled mode answers TLS this way");
  }
  if (reason.find("WRONG_VERSION_NUMBER") != std::string::npos ||
      reason.find("UNEXPECTED_RECORD") != std::string::npos) {
    return absl::StrCat("the peer answered with something that is not TLS (", buf,
                        "): a plaintext-only listener?");
  }
  return buf;
}

// Handshake runs a TLS client handshake over `fd`, filling row.handshake, verification,
// version and error.
void Handshake(int fd, const PreflightTarget& target, const certs::TlsSnapshot* snapshot,
               Clock::time_point deadline, PeerPreflight& row) {
  SSL_CTX* context = snapshot != nullptr ? snapshot->client_context() : nullptr;
  if (context == nullptr) {
    row.error =
        "no cluster certificate or CA is loaded, so egress TLS is impossible (set "
        "net.tls.CAFile or clusterCAFile)";
    return;
  }
  bssl::UniquePtr<SSL> ssl(SSL_new(context));
  if (!ssl) {
    row.error = "SSL_new failed";
    return;
  }
  if (absl::Status status = snapshot->PrepareEgressSession(ssl.get(), target.host); !status.ok()) {
    row.error = std::string(status.message());
    return;
  }
  SSL_set_fd(ssl.get(), fd);
  SSL_set_connect_state(ssl.get());
  while (true) {
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl.get());
    if (ret == 1) {
      break;
    }
    int err = SSL_get_error(ssl.get(), ret);
    short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
      row.error = TlsFailure(ssl.get(), ret, false);
      break;
    }
    if (!WaitFor(fd, events, deadline)) {
      row.error = TlsFailure(ssl.get(), ret, true);
      break;
    }
  }
  long verify = VerifyResult(ssl.get());
  if (verify != X509_V_OK) {
    row.verification = X509_verify_cert_error_string(verify);
  }
  if (!row.error.empty()) {
    return;
  }
  // With TLS 1.3 the client finishes first; a server that rejects our certificate says so
  // with an alert right after. Wait briefly for it (a sidecar never sends data first).
  Clock::time_point settle = std::min(deadline, Clock::now() + std::chrono::milliseconds(300));
  while (WaitFor(fd, POLLIN, settle)) {
    char byte;
    ERR_clear_error();
    int ret = SSL_peek(ssl.get(), &byte, 1);
    if (ret > 0) {
      break;
    }
    int err = SSL_get_error(ssl.get(), ret);
    if (err == SSL_ERROR_WANT_READ) {
      continue;  // a session ticket
    }
    uint32_t code = ERR_peek_last_error();
    char buf[256] = "the peer closed the connection right after the handshake";
    if (code != 0) {
      ERR_error_string_n(code, buf, sizeof(buf));
    }
    row.error =
        absl::StrCat("the peer refused our cluster certificate after the handshake (", buf, ")");
    return;
  }
  row.handshake = true;
  row.verification = "ok";
  row.version = SSL_get_version(ssl.get());
  SSL_shutdown(ssl.get());
}

PeerPreflight DialOne(const PreflightTarget& target, const certs::TlsSnapshot* snapshot, bool tls,
                      uint32_t mark, std::chrono::milliseconds timeout) {
  PeerPreflight row;
  row.target = target.name;
  Clock::time_point deadline = Clock::now() + timeout;
  PreflightTarget resolved = target;
  if (resolved.address.ss_family == AF_UNSPEC) {
    auto addresses = Resolve(target.host, target.port);
    if (!addresses.ok()) {
      row.error = std::string(addresses.status().message());
      return row;
    }
    resolved.address = addresses->front();
  }
  int fd = Connect(resolved, mark, deadline, row);
  if (fd < 0) {
    return row;
  }
  Fd owned(fd);
  if (tls) {
    Handshake(fd, resolved, snapshot, deadline, row);
  }
  return row;
}

}  // namespace

std::vector<PeerPreflight> DialPeers(const std::vector<PreflightTarget>& targets,
                                     std::shared_ptr<const certs::TlsSnapshot> snapshot, bool tls,
                                     uint32_t mark, std::chrono::milliseconds timeout) {
  std::vector<PeerPreflight> rows(targets.size());
  std::vector<std::thread> threads;
  threads.reserve(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    threads.emplace_back(
        [&, i] { rows[i] = DialOne(targets[i], snapshot.get(), tls, mark, timeout); });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  return rows;
}

}  // namespace sidecar::proxy
