#include "proxy/net/worker.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/base/socket_address.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

namespace {

constexpr int kListenBacklog = 4096;

// Accepts per readiness callback: the rest wait for the next loop iteration (the poll is
// level-triggered), so a connection storm cannot keep timers and posted tasks from running.
constexpr int kAcceptsPerWakeup = 128;

// The first retry after accept() fails; doubled at each failure in a row, up to the maximum.
constexpr uint64_t kAcceptRetryFirstMs = 10;
constexpr uint64_t kAcceptRetryMaxMs = 1000;

}  // namespace

Worker::Worker(SharedState& shared, int index) : shared_(shared), index_(index) {
  context_.loop = &loop_;
  context_.pool = &pool_;
  context_.limits.sniff_timeout_ms = shared.config.sniff_timeout_ms;
  context_.limits.handshake_timeout_ms = shared.config.handshake_timeout_ms;
  context_.limits.upstream_proxy_protocol = shared.config.upstream_proxy_protocol;
  context_.metrics = &shared.metrics;
  context_.bytes = &bytes_;
  context_.clients = &shared.clients;
  context_.mode = &shared.mode;
  context_.tls = &shared.tls;
  context_.upstream_address = &shared.upstream_address;
  context_.outbound_mark = shared.outbound_mark;
  context_.worker_index = index;
  context_.on_closed = [this](Connection& connection) { Release(connection); };
}

absl::Status Worker::Init() {
  if (int rc = uv_loop_init(&loop_); rc != 0) {
    return UvError("uv_loop_init", rc);
  }
  loop_initialised_ = true;
  auto async = UvHandle<uv_async_t>::Create(
      "uv_async_init", [&](uv_async_t* a) { return uv_async_init(&loop_, a, &Worker::OnAsync); });
  if (!async.ok()) {
    return async.status();
  }
  async_ = *std::move(async);
  async_.get()->data = this;
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&loop_, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  publish_timer_ = *std::move(timer);
  publish_timer_.get()->data = this;
  uv_timer_start(publish_timer_.get(), &Worker::OnPublishTimer, 1000, 1000);
  // The timer alone must not keep the loop running once everything else is done.
  uv_unref(publish_timer_.base());
  auto retry = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&loop_, t); });
  if (!retry.ok()) {
    return retry.status();
  }
  accept_retry_timer_ = *std::move(retry);
  accept_retry_timer_.get()->data = this;
  uv_unref(accept_retry_timer_.base());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Adopt(SharedState& shared, int index,
                                                      std::vector<ListeningSocket> sockets) {
  std::unique_ptr<Worker> worker(new Worker(shared, index));
  absl::Status status = worker->Init();
  size_t next = 0;
  for (; status.ok() && next < sockets.size(); ++next) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    getsockname(sockets[next].fd, reinterpret_cast<sockaddr*>(&address), &length);
    status = worker->Watch(sockets[next].fd, sockets[next].route, FormatAddress(address));
  }
  // Watch owns what it was given; the descriptors never reached it are closed here.
  for (; next < sockets.size(); ++next) {
    close(sockets[next].fd);
  }
  if (!status.ok()) {
    return status;
  }
  return worker;
}

std::vector<Worker::ListeningSocket> Worker::listening_sockets() const {
  std::vector<ListeningSocket> sockets;
  for (const auto& listener : listeners_) {
    sockets.push_back({listener->fd, listener->route});
  }
  return sockets;
}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(SharedState& shared, int index,
                                                        std::vector<sockaddr_storage>& addresses) {
  std::unique_ptr<Worker> worker(new Worker(shared, index));
  if (absl::Status status = worker->Init(); !status.ok()) {
    return status;
  }
  for (sockaddr_storage& address : addresses) {
    if (absl::Status status = worker->Listen(address, nullptr); !status.ok()) {
      return status;
    }
  }
  for (const EgressRoute& route : shared.egress_routes) {
    auto resolved = Resolve(route.listen.host, route.listen.port);
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("egress.peers.listen: ", resolved.status().message()));
    }
    if (absl::Status status = worker->Listen(resolved->front(), &route); !status.ok()) {
      return status;
    }
  }
  return worker;
}

absl::Status Worker::Listen(sockaddr_storage& address, const EgressRoute* route) {
  // libuv 1.44 cannot set SO_REUSEPORT itself, so the socket is made here and adopted.
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (address.ss_family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  socklen_t length =
      address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", FormatAddress(address), ": ", std::strerror(err)));
  }
  if (AddressPort(address) == 0) {
    // Port 0: every later worker binds the port the kernel chose for the first.
    sockaddr_storage bound{};
    socklen_t bound_length = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_length);
    SetAddressPort(address, AddressPort(bound));
  }
  if (::listen(fd, kListenBacklog) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("listen on ", FormatAddress(address), ": ",
                                               std::strerror(err)));
  }
  return Watch(fd, route, FormatAddress(address));
}

absl::Status Worker::Watch(int fd, const EgressRoute* route, std::string_view name) {
  auto listener = std::make_unique<Listener>();
  listener->worker = this;
  listener->fd = fd;  // closed by ~Listener from here on
  listener->route = route;
  auto poll = UvHandle<uv_poll_t>::Create(
      "uv_poll_init", [&](uv_poll_t* p) { return uv_poll_init(&loop_, p, fd); });
  if (!poll.ok()) {
    return poll.status();
  }
  listener->poll = *std::move(poll);
  listener->poll.get()->data = listener.get();
  if (int rc = uv_poll_start(listener->poll.get(), UV_READABLE, &Worker::OnListenerReadable);
      rc != 0) {
    return UvError(absl::StrCat("listen on ", std::string(name)), rc);
  }
  listeners_.push_back(std::move(listener));
  return absl::OkStatus();
}

Worker::Listener::~Listener() {
  // uv_close on a poll handle stops watching the descriptor at once, so it may close now.
  poll.Close();
  if (fd >= 0) {
    close(fd);
  }
}

Worker::~Worker() {
  if (thread_.joinable()) {
    thread_.join();
  }
  // Normally none is left; any that is must be freed through its close callbacks below.
  CloseAll(CloseReason::kShutdown);
  listeners_.clear();
  accept_retry_timer_.Close();
  publish_timer_.Close();
  {
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    finished_ = true;
    async_.Close();
  }
  if (loop_initialised_) {
    // Let close callbacks run so every handle's memory is freed before the loop goes.
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

void Worker::Start() {
  thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
}

void Worker::Join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Worker::Post(absl::AnyInvocable<void(Worker&)> task) {
  std::lock_guard<std::mutex> lock(tasks_mutex_);
  if (finished_) {
    return;  // the loop has ended: nothing is left to act on
  }
  tasks_.push_back(std::move(task));
  uv_async_send(async_.get());
}

void Worker::OnAsync(uv_async_t* async) {
  auto* self = static_cast<Worker*>(async->data);
  std::vector<absl::AnyInvocable<void(Worker&)>> tasks;
  {
    std::lock_guard<std::mutex> lock(self->tasks_mutex_);
    tasks.swap(self->tasks_);
  }
  for (auto& task : tasks) {
    task(*self);
  }
}

void Worker::OnListenerReadable(uv_poll_t* poll, int status, int events) {
  auto* listener = static_cast<Listener*>(poll->data);
  if (status < 0) {
    listener->worker->PauseAccepting(status);
    return;
  }
  if ((events & UV_READABLE) != 0) {
    listener->worker->AcceptFrom(*listener);
  }
}

void Worker::AcceptFrom(Listener& listener) {
  for (int i = 0; i < kAcceptsPerWakeup && !accept_paused_; ++i) {
    int fd = accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_backoff_ms_ = 0;
      Admit(listener, fd);
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return;
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        continue;  // that connection is gone; the next one may be fine
      default:
        // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected: accepting again at once
        // would fail again at once.
        PauseAccepting(uv_translate_sys_error(errno));
        return;
    }
  }
}

void Worker::PauseAccepting(int error) {
  if (accept_paused_ || stopping_) {
    return;
  }
  accept_paused_ = true;
  accept_backoff_ms_ = accept_backoff_ms_ == 0
                           ? kAcceptRetryFirstMs
                           : std::min(accept_backoff_ms_ * 2, kAcceptRetryMaxMs);
  for (auto& listener : listeners_) {
    uv_poll_stop(listener->poll.get());
  }
  uv_timer_start(accept_retry_timer_.get(), &Worker::OnAcceptRetry, accept_backoff_ms_, 0);
  static LogRateLimiter limiter(1);
  limiter.Log(Severity::kWarning, Component::kNetwork,
             "accept failed; accepting paused, new connections wait in the backlog",
             {{"error", uv_strerror(error)},
              {"retryMs", static_cast<int64_t>(accept_backoff_ms_)},
              {"worker", static_cast<int64_t>(index_)}});
}

void Worker::OnAcceptRetry(uv_timer_t* timer) {
  auto* self = static_cast<Worker*>(timer->data);
  self->accept_paused_ = false;
  for (auto& listener : self->listeners_) {
    uv_poll_start(listener->poll.get(), UV_READABLE, &Worker::OnListenerReadable);
  }
}

void Worker::Admit(Listener& listener, int fd) {
  auto client = UvHandle<uv_tcp_t>::Create(
      "uv_tcp_init", [&](uv_tcp_t* t) { return uv_tcp_init(&loop_, t); });
  if (!client.ok()) {
    close(fd);
    return;
  }
  if (uv_tcp_open(client->get(), fd) != 0) {
    close(fd);
    return;
  }
  // Clients and egress are limited apart: a client flood must never refuse mongod's
  // connections to its peers (replication), nor the reverse.
  const bool egress = listener.route != nullptr;
  std::atomic<int64_t>& count = egress ? shared_.egress_connections : shared_.ingress_connections;
  const int64_t limit = egress ? shared_.max_egress_connections : shared_.max_connections;
  if (count.fetch_add(1, std::memory_order_relaxed) >= limit) {
    count.fetch_sub(1, std::memory_order_relaxed);
    shared_.metrics.Rejected(egress ? CloseReason::kMaxEgressConnections
                                    : CloseReason::kMaxConnections);
    static LogRateLimiter limiter(1);
    if (egress) {
      limiter.Log(Severity::kWarning, Component::kNetwork,
                 "egress connection refused: limits.maxEgressConnections reached",
                 {{"remote", PeerAddress(client->get())}, {"maxEgressConnections", limit}});
    } else {
      limiter.Log(Severity::kWarning, Component::kNetwork,
                 "connection refused: limits.maxConnections reached",
                 {{"remote", PeerAddress(client->get())}, {"maxConnections", limit}});
    }
    return;  // the handle closes as it goes out of scope
  }
  shared_.connections.fetch_add(1, std::memory_order_relaxed);
  // The worker's index in the top bits: an id names one connection across all workers.
  uint64_t id = (static_cast<uint64_t>(index_) << 48) | ++next_sequence_;
  std::unique_ptr<Connection> connection =
      egress ? Connection::StartEgress(context_, id, *std::move(client), *listener.route)
             : Connection::StartIngress(context_, id, *std::move(client));
  connections_.emplace(id, std::move(connection));
}

void Worker::OnPublishTimer(uv_timer_t* timer) {
  static_cast<Worker*>(timer->data)->PublishBytes();
}

void Worker::PublishBytes() { bytes_.PublishTo(shared_.metrics); }

void Worker::Release(Connection& connection) {
  (connection.direction() == Direction::kEgress ? shared_.egress_connections
                                                  : shared_.ingress_connections)
      .fetch_sub(1, std::memory_order_relaxed);
  shared_.connections.fetch_sub(1, std::memory_order_relaxed);
  connections_.erase(connection.id());
  MaybeFinish();
}

Connection* Worker::FindConnection(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() || it->second->state() == Connection::State::kClosing
             ? nullptr
             : it->second.get();
}

void Worker::StopAccepting() {
  stopping_ = true;
  listeners_.clear();
  uv_timer_stop(accept_retry_timer_.get());
  MaybeFinish();
}

void Worker::CloseAll(CloseReason reason) {
  for (auto& [id, connection] : connections_) {
    connection->BeginClose(reason);
  }
}

void Worker::DrainConnections() {
  size_t waiting = 0;
  for (auto& [id, c] : connections_) {
    c->StartDrain();
    if (!c->closing()) {
      ++waiting;
    }
  }
  if (waiting > 0) {
    Log(Severity::kInfo, Component::kNetwork,
        "shutting down: waiting for the replies to requests in flight",
        {{"connections", static_cast<int64_t>(waiting)},
         {"drainSeconds", shared_.config.drain_seconds},
         {"worker", static_cast<int64_t>(index_)}});
  }
}

void Worker::OnDrainDeadline() {
  for (auto& [id, c] : connections_) {
    c->OnDrainDeadline();
  }
}

void Worker::MaybeFinish() {
  if (stopping_ && connections_.empty()) {
    // The async handle is the last thing keeping the loop alive.
    PublishBytes();
    publish_timer_.Close();
    accept_retry_timer_.Close();
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    finished_ = true;
    async_.Close();
  }
}

}  // namespace sidecar::proxy
