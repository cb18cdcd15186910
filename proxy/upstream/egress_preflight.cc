#include "proxy/upstream/egress_preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "certs/ocsp_peer_verify.h"
#include "proxy/base/socket_address.h"
#include "proxy/base/unique_fd.h"
#include "proxy/net/chunk.h"
#include "proxy/net/tls_session.h"

namespace sidecar::proxy {

namespace {

using Clock = std::chrono::steady_clock;

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
  UniqueFd owned(fd);
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

// VerifyResult is the chain and name verification's outcome, or X509_V_OK when the peer
// sent no certificate yet (BoringSSL answers "invalid call" until it has verified one).
// PeerVerifyResult reads whichever verification ran, BoringSSL's or the OCSP-checking one.
long VerifyResult(const SSL* ssl) {
  return SSL_get0_peer_certificates(ssl) == nullptr ? X509_V_OK : certs::PeerVerifyResult(ssl);
}

constexpr char kTimedOut[] =
    "no TLS answer before the deadline: the peer does not speak TLS on this port "
    "(a plaintext-only listener?)";
constexpr char kClosedDuringHandshake[] =
    "the peer closed the connection during the TLS handshake: it does not accept "
    "TLS on this port (a plaintext-only listener, or a sidecar in disabled mode?)";

// HandshakeFailure names why the session's handshake failed (kError), in the terms an
// operator acts on.
std::string HandshakeFailure(const TlsSession& session) {
  if (long verify = VerifyResult(session.ssl()); verify != X509_V_OK) {
    return absl::StrCat("the peer's certificate was not accepted: ",
                        X509_verify_cert_error_string(verify));
  }
  uint32_t code = session.error_code();
  if (code == 0) {
    return session.error();
  }
  std::string reason = ERR_reason_error_string(code) ? ERR_reason_error_string(code) : "";
  if (reason.find("HANDSHAKE_FAILURE") != std::string::npos) {
    return absl::StrCat("the peer refused the TLS handshake (", session.error(),
                        "): a sidecar in disabled mode answers TLS this way");
  }
  if (reason.find("WRONG_VERSION_NUMBER") != std::string::npos ||
      reason.find("UNEXPECTED_RECORD") != std::string::npos) {
    return absl::StrCat("the peer answered with something that is not TLS (", session.error(),
                        "): a plaintext-only listener?");
  }
  return session.error();
}

// Flush writes everything the session queued to `fd` before the deadline; on failure it
// returns why.
std::optional<std::string> Flush(int fd, ChunkQueue& out, Clock::time_point deadline) {
  while (!out.empty()) {
    Chunk* chunk = out.front();
    ssize_t n = send(fd, chunk->head(), chunk->size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.Consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd, POLLOUT, deadline)) {
        return std::string(kTimedOut);
      }
      continue;
    }
    return absl::StrCat("sending to the peer: ", strerror(errno));
  }
  return std::nullopt;
}

// Receive feeds what `fd` has to the session, waiting for it until `deadline`. kOk: bytes
// fed; kWantRead: the deadline passed; kPeerClosed: the peer closed (or reset) the
// connection, with `why` set for a reset.
TlsSession::Status Receive(int fd, TlsSession& session, ChunkPool& pool, Clock::time_point deadline,
                           std::string* why) {
  while (true) {
    if (!WaitFor(fd, POLLIN, deadline)) {
      return TlsSession::Status::kWantRead;
    }
    Chunk* chunk = pool.Take();
    ssize_t n = recv(fd, chunk->tail(), chunk->space(), 0);
    if (n > 0) {
      chunk->end += static_cast<size_t>(n);
      session.Feed(chunk);
      return TlsSession::Status::kOk;
    }
    pool.Give(chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      continue;
    }
    if (n < 0) {
      *why = strerror(errno);
    }
    return TlsSession::Status::kPeerClosed;
  }
}

// DriveHandshake runs `session`'s handshake to its end over `fd`; returns why it failed, or
// "" when it completed.
std::string DriveHandshake(int fd, TlsSession& session, ChunkPool& pool,
                           ChunkQueue& ciphertext_out, Clock::time_point deadline) {
  while (true) {
    TlsSession::Status status = session.Handshake();
    // What the session queued (our flight, or an alert explaining a failure) goes out first.
    if (std::optional<std::string> failed = Flush(fd, ciphertext_out, deadline);
        failed.has_value() && status != TlsSession::Status::kError) {
      return *failed;
    }
    if (status == TlsSession::Status::kOk) {
      return "";
    }
    if (status == TlsSession::Status::kError) {
      return HandshakeFailure(session);
    }
    if (status == TlsSession::Status::kPeerClosed) {
      return kClosedDuringHandshake;
    }
    std::string why;
    switch (Receive(fd, session, pool, deadline, &why)) {
      case TlsSession::Status::kOk:
        break;
      case TlsSession::Status::kWantRead:
        return kTimedOut;
      default:
        return why.empty() ? std::string(kClosedDuringHandshake)
                           : absl::StrCat(kClosedDuringHandshake, " (", why, ")");
    }
  }
}

// RefusedAfterHandshake waits briefly for the alert of a server that rejects our certificate:
// with TLS 1.3 the client finishes first, and the server says so right after (a sidecar never
// sends data first). Returns the refusal, or "" when the peer kept the connection.
std::string RefusedAfterHandshake(int fd, TlsSession& session, ChunkPool& pool,
                                  Clock::time_point deadline) {
  Clock::time_point settle = std::min(deadline, Clock::now() + std::chrono::milliseconds(300));
  ChunkQueue plaintext(&pool);
  while (true) {
    std::string why;
    TlsSession::Status received = Receive(fd, session, pool, settle, &why);
    if (received == TlsSession::Status::kWantRead) {
      return "";  // quiet: the peer kept the connection
    }
    TlsSession::Status status = received == TlsSession::Status::kOk
                                    ? session.ReadPlaintext(plaintext, 1)
                                    : TlsSession::Status::kPeerClosed;
    if (status == TlsSession::Status::kOk) {
      return "";  // the peer sent data: it took our certificate
    }
    if (status == TlsSession::Status::kWantRead) {
      continue;  // a session ticket
    }
    std::string detail = status == TlsSession::Status::kError && session.error_code() != 0
                             ? session.error()
                             : "the peer closed the connection right after the handshake";
    return absl::StrCat("the peer refused our cluster certificate after the handshake (", detail,
                        ")");
  }
}

// Handshake runs a TLS client handshake with the same TlsSession over memory BIOs that
// egress connections use, doing the socket I/O around it here, blocking with deadlines. It
// fills row.handshake, verification, version and error.
void Handshake(int fd, const PreflightTarget& target, const certs::TlsSnapshot* snapshot,
               Clock::time_point deadline, PeerPreflight& row) {
  SSL_CTX* context = snapshot != nullptr ? snapshot->client_context() : nullptr;
  if (context == nullptr) {
    row.error =
        "no cluster certificate or CA is loaded, so egress TLS is impossible (set "
        "net.tls.CAFile or clusterCAFile)";
    return;
  }
  ChunkPool pool;
  ChunkQueue ciphertext_out(&pool);
  auto created = TlsSession::Create(context, TlsSession::Role::kClient, &pool, &ciphertext_out);
  if (!created.ok()) {
    row.error = std::string(created.status().message());
    return;
  }
  std::unique_ptr<TlsSession> session = *std::move(created);
  if (absl::Status status = snapshot->PrepareEgressSession(session->ssl(), target.host);
      !status.ok()) {
    row.error = std::string(status.message());
    return;
  }
  row.error = DriveHandshake(fd, *session, pool, ciphertext_out, deadline);
  long verify = VerifyResult(session->ssl());
  if (verify != X509_V_OK) {
    row.verification = X509_verify_cert_error_string(verify);
  }
  if (!row.error.empty()) {
    return;
  }
  row.error = RefusedAfterHandshake(fd, *session, pool, deadline);
  if (!row.error.empty()) {
    return;
  }
  row.handshake = true;
  row.verification = "ok";
  row.version = std::string(session->version());
  session->SendCloseNotify();
  Flush(fd, ciphertext_out, std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
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
  UniqueFd owned(fd);
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
