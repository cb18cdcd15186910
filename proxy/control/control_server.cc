#include "proxy/control/control_server.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <utility>

#include "absl/status/status.h"
#include "proxy/base/concat.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

namespace {

constexpr int kBacklog = 128;

// After a refusal the peer's further bytes are read and dropped until it closes (closing
// with unread bytes would reset the connection and could destroy the answer before the peer
// reads it), but not forever.
constexpr size_t kMaxDiscardedBytes = 1 << 20;

// The uids allowed on the socket besides root: the sidecar's own.
bool UidAllowed(uid_t uid) { return uid == 0 || uid == geteuid(); }

// ClearStaleSocket removes a socket file left at `path` by a sidecar that died; a live one
// (something accepts on it) or a file that is not a socket is an error.
absl::Status ClearStaleSocket(const std::string& path) {
  struct stat existing {};
  if (lstat(path.c_str(), &existing) != 0) {
    return absl::OkStatus();
  }
  if (!S_ISSOCK(existing.st_mode)) {
    return absl::FailedPreconditionError(Concat(
        "control socket ", path, " exists and is not a socket; remove it or set control.socket"));
  }
  // A socket file: live if something accepts on it, stale (left by a sidecar that died)
  // if the connection is refused.
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    return absl::UnavailableError(
        Concat("control socket ", path, ": socket: ", std::strerror(errno)));
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  int rc = connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  int err = errno;
  close(probe);
  if (rc == 0 || err == EAGAIN) {
    return absl::FailedPreconditionError(
        Concat("control socket ", path,
               " is in use: another process (another tls-sidecar on the same port?) answers "
               "on it; stop it, or give this sidecar its own --control-socket"));
  }
  if (err != ECONNREFUSED) {
    return absl::UnavailableError(Concat(
        "control socket ", path, ": cannot tell whether it is in use: ", std::strerror(err)));
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::UnavailableError(
        Concat("control socket ", path,
               ": cannot remove the stale socket file: ", std::strerror(errno)));
  }
  Log(Severity::kInfo, Component::kControl, "removed a stale control socket", {{"path", path}});
  return absl::OkStatus();
}

}  // namespace

struct ControlServer::Peer {
  ControlServer* server = nullptr;
  uint64_t id = 0;
  uid_t uid = 0;
  UvHandle<uv_pipe_t> pipe;
  std::string input;                 // bytes of the request not yet ended by '\n'
  std::deque<std::string> requests;  // complete lines waiting for their turn
  bool busy = false;                 // a request is being answered
  bool dispatching = false;          // Dispatch is on the stack (answers may come inline)
  bool finished = false;             // the peer sent EOF: no more requests
  bool close_after_writes = false;   // a write failed: close once the others are done
  bool refused = false;              // answered ok:false for good: FIN after it, then discard
  bool shutdown_started = false;
  size_t discarded = 0;  // bytes read and dropped since the refusal
  int writes_in_flight = 0;
  uv_shutdown_t shutdown_req{};
  char read_buffer[4096];
};

namespace {

// A write owns its bytes while libuv holds it; it finds its peer again by id, and only if
// the server is still there.
struct WriteRequest {
  uv_write_t req{};
  std::string data;
  std::weak_ptr<ControlServer*> alive;
  uint64_t peer_id = 0;
};

}  // namespace

ControlServer::ControlServer(uv_loop_t* loop, std::string path, ControlCommands& commands)
    : loop_(loop),
      path_(std::move(path)),
      commands_(commands),
      alive_(std::make_shared<ControlServer*>(this)) {}

ControlServer::~ControlServer() { Close(); }

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Create(uv_loop_t* loop,
                                                                     const std::string& path,
                                                                     ControlCommands& commands) {
  if (path.empty()) {
    return absl::InvalidArgumentError("control.socket: the path is empty");
  }
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(Concat("control.socket: ", path, " is too long (",
                                             path.size(), " bytes; a UNIX socket path has at most ",
                                             sizeof(sockaddr_un{}.sun_path) - 1, ")"));
  }

  if (absl::Status status = ClearStaleSocket(path); !status.ok()) {
    return status;
  }

  std::unique_ptr<ControlServer> server(new ControlServer(loop, path, commands));
  auto listener = UvHandle<uv_pipe_t>::Create(
      "uv_pipe_init", [&](uv_pipe_t* p) { return uv_pipe_init(loop, p, 0); });
  if (!listener.ok()) {
    return listener.status();
  }
  server->listener_ = *std::move(listener);
  server->listener_.get()->data = server.get();

  // Created 0600 from the start (umask around bind), so there is no moment when another
  // user could connect; chmod afterwards in case the file system ignores the umask.
  mode_t old_umask = umask(0177);
  int rc = uv_pipe_bind(server->listener_.get(), path.c_str());
  umask(old_umask);
  if (rc != 0) {
    return absl::UnavailableError(Concat("control socket ", path, ": ", uv_strerror(rc)));
  }
  if (chmod(path.c_str(), 0600) != 0) {
    int err = errno;
    unlink(path.c_str());
    return absl::UnavailableError(Concat("control socket ", path, ": chmod: ", std::strerror(err)));
  }
  struct stat created {};
  if (stat(path.c_str(), &created) == 0) {
    server->socket_dev_ = created.st_dev;
    server->socket_ino_ = created.st_ino;
  }
  if (int listen_rc = uv_listen(server->listener_.stream(), kBacklog, &OnConnection);
      listen_rc != 0) {
    unlink(path.c_str());
    return absl::UnavailableError(
        Concat("control socket ", path, ": listen: ", uv_strerror(listen_rc)));
  }
  Log(Severity::kInfo, Component::kControl, "control socket listening", {{"path", path}});
  return server;
}

void ControlServer::Close() {
  if (!alive_) {
    return;
  }
  alive_.reset();
  listener_.Close();
  while (!peers_.empty()) {
    ClosePeer(peers_.begin()->first);
  }
  // Remove the file only if it is still the one we made: a newer sidecar may own the path.
  struct stat current {};
  if (stat(path_.c_str(), &current) == 0 && current.st_dev == socket_dev_ &&
      current.st_ino == socket_ino_) {
    unlink(path_.c_str());
  }
}

void ControlServer::OnConnection(uv_stream_t* listener, int status) {
  auto* self = static_cast<ControlServer*>(listener->data);
  if (status != 0) {
    static LogRateLimiter limiter(1);
    limiter.Log(Severity::kWarning, Component::kControl, "control socket accept failed",
                {{"error", uv_strerror(status)}});
    return;
  }
  self->Accept();
}

void ControlServer::Accept() {
  auto pipe = UvHandle<uv_pipe_t>::Create("uv_pipe_init",
                                          [&](uv_pipe_t* p) { return uv_pipe_init(loop_, p, 0); });
  if (!pipe.ok()) {
    return;
  }
  if (uv_accept(listener_.stream(), pipe->stream()) != 0) {
    return;
  }
  auto peer = std::make_unique<Peer>();
  peer->server = this;
  peer->id = next_peer_id_++;
  peer->pipe = *std::move(pipe);
  peer->pipe.get()->data = peer.get();

  uv_os_fd_t fd = -1;
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  bool known = uv_fileno(peer->pipe.base(), &fd) == 0 &&
               getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0;
  peer->uid = credentials.uid;
  Peer& accepted = *peer;
  peers_.emplace(accepted.id, std::move(peer));

  if (!known) {
    Refuse(accepted, "Cannot tell which user is connecting (SO_PEERCRED failed); refused.");
    return;
  }
  if (!UidAllowed(credentials.uid)) {
    static LogRateLimiter limiter(5);
    limiter.Log(Severity::kWarning, Component::kControl, "control socket: peer refused",
                {{"uid", static_cast<int64_t>(credentials.uid)},
                 {"pid", static_cast<int64_t>(credentials.pid)}});
    Refuse(accepted,
           Concat("uid ", credentials.uid, " may not use this control socket: only root and uid ",
                  geteuid(), " (the sidecar's own) may."));
    return;
  }
  if (peers_.size() > kMaxConnections) {
    Refuse(accepted, Concat("Too many control connections are open (at most ", kMaxConnections,
                            "); try again later."));
    return;
  }
  if (int rc = uv_read_start(accepted.pipe.stream(), &OnAlloc, &OnRead); rc != 0) {
    ClosePeer(accepted.id);
  }
}

void ControlServer::OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* peer = static_cast<Peer*>(handle->data);
  *buf = uv_buf_init(peer->read_buffer, sizeof(peer->read_buffer));
}

void ControlServer::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* peer = static_cast<Peer*>(stream->data);
  ControlServer* self = peer->server;
  if (nread > 0) {
    self->OnBytes(*peer, std::string_view(buf->base, static_cast<size_t>(nread)));
  } else if (nread == UV_EOF) {
    self->OnPeerFinished(*peer);
  } else if (nread < 0) {
    self->ClosePeer(peer->id);
  }
}

void ControlServer::OnBytes(Peer& peer, std::string_view bytes) {
  if (peer.refused || peer.close_after_writes) {
    peer.discarded += bytes.size();
    if (peer.discarded > kMaxDiscardedBytes) {
      ClosePeer(peer.id);
    }
    return;
  }
  while (!bytes.empty()) {
    size_t newline = bytes.find('\n');
    std::string_view piece = bytes.substr(0, newline);
    if (peer.input.size() + piece.size() > kMaxLineBytes) {
      Refuse(peer, Concat("Request too long: more than ", kMaxLineBytes,
                          " bytes without a newline; send one JSON object per line."));
      return;
    }
    peer.input.append(piece);
    if (newline == std::string_view::npos) {
      break;
    }
    bytes.remove_prefix(newline + 1);
    std::string line = std::exchange(peer.input, {});
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.find_first_not_of(" \t") == std::string::npos) {
      continue;  // blank lines are not requests
    }
    if (peer.requests.size() >= kMaxQueuedRequests) {
      Refuse(peer, Concat("Too many requests sent ahead (more than ", kMaxQueuedRequests,
                          "); wait for each answer."));
      return;
    }
    peer.requests.push_back(std::move(line));
  }
  Dispatch(peer);
}

void ControlServer::OnPeerFinished(Peer& peer) {
  peer.finished = true;
  uv_read_stop(peer.pipe.stream());
  if (peer.refused) {
    MaybeClose(peer);
    return;
  }
  // A last request without its newline still counts (printf '...' | nc -U).
  if (!peer.close_after_writes && peer.input.find_first_not_of(" \t\r") != std::string::npos) {
    peer.requests.push_back(std::exchange(peer.input, {}));
  }
  Dispatch(peer);
}

void ControlServer::Dispatch(Peer& peer) {
  if (peer.dispatching) {
    return;  // an answer came inline: the loop below goes on with the next request
  }
  peer.dispatching = true;
  while (!peer.busy && !peer.refused && !peer.close_after_writes && !peer.requests.empty()) {
    std::string line = std::move(peer.requests.front());
    peer.requests.pop_front();
    peer.busy = true;
    std::weak_ptr<ControlServer*> alive = alive_;
    uint64_t id = peer.id;
    commands_.Handle(line, peer.uid, [alive, id](std::string answer) {
      std::shared_ptr<ControlServer*> server = alive.lock();
      if (!server) {
        return;  // closed meanwhile
      }
      ControlServer* self = *server;
      auto it = self->peers_.find(id);
      if (it == self->peers_.end()) {
        return;  // the peer went away before its answer
      }
      Peer& waiting = *it->second;
      waiting.busy = false;
      answer.push_back('\n');
      self->Send(waiting, std::move(answer));
      self->Dispatch(waiting);
    });
  }
  peer.dispatching = false;
  MaybeClose(peer);
}

void ControlServer::Send(Peer& peer, std::string line) {
  auto* request = new WriteRequest();
  request->data = std::move(line);
  request->alive = alive_;
  request->peer_id = peer.id;
  uv_buf_t buf = uv_buf_init(request->data.data(), static_cast<unsigned>(request->data.size()));
  if (int rc = uv_write(&request->req, peer.pipe.stream(), &buf, 1, &OnWrite); rc != 0) {
    delete request;
    peer.close_after_writes = true;
    return;
  }
  ++peer.writes_in_flight;
}

void ControlServer::OnWrite(uv_write_t* req, int status) {
  std::unique_ptr<WriteRequest> request(reinterpret_cast<WriteRequest*>(req));
  std::shared_ptr<ControlServer*> server = request->alive.lock();
  if (!server) {
    return;
  }
  ControlServer* self = *server;
  auto it = self->peers_.find(request->peer_id);
  if (it == self->peers_.end()) {
    return;
  }
  Peer& peer = *it->second;
  --peer.writes_in_flight;
  if (status != 0) {
    peer.close_after_writes = true;
  }
  self->MaybeClose(peer);
}

void ControlServer::Refuse(Peer& peer, std::string_view sentence) {
  peer.requests.clear();
  peer.input.clear();
  peer.refused = true;
  Send(peer, ControlCommands::ErrorAnswer(sentence) + "\n");
  if (!peer.finished) {
    // Keep reading (and dropping) so that the close is orderly; see kMaxDiscardedBytes.
    if (uv_read_start(peer.pipe.stream(), &OnAlloc, &OnRead) != 0 &&
        !uv_is_active(peer.pipe.base())) {
      peer.close_after_writes = true;
    }
  }
  MaybeClose(peer);
}

void ControlServer::MaybeClose(Peer& peer) {
  if (peer.dispatching || peer.writes_in_flight > 0) {
    return;
  }
  bool done = peer.close_after_writes ||
              (peer.finished && (peer.refused || (!peer.busy && peer.requests.empty())));
  if (done) {
    ClosePeer(peer.id);
    return;
  }
  if (peer.refused && !peer.shutdown_started) {
    // The answer is out: send FIN, and close when the peer closes its side.
    peer.shutdown_started = true;
    if (uv_shutdown(&peer.shutdown_req, peer.pipe.stream(), [](uv_shutdown_t*, int) {}) != 0) {
      ClosePeer(peer.id);
    }
  }
}

void ControlServer::ClosePeer(uint64_t id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) {
    return;
  }
  // The peer is freed by its handle's close callback: pending writes are cancelled before
  // it, and find no peer by then.
  Peer* peer = it->second.release();
  peers_.erase(it);
  peer->pipe.Close([](void* context) { delete static_cast<Peer*>(context); }, peer);
}

}  // namespace sidecar::proxy
