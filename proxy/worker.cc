#include "proxy/worker.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/log.h"
#include "proxy/socket_address.h"

namespace sidecar::proxy {

namespace {

constexpr int kListenBacklog = 4096;

}  // namespace

Worker::Worker(SharedState& shared, int index) : shared_(shared), index_(index) {}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(SharedState& shared, int index,
                                                        std::vector<sockaddr_storage>& addresses) {
  std::unique_ptr<Worker> worker(new Worker(shared, index));
  if (int rc = uv_loop_init(&worker->loop_); rc != 0) {
    return UvError("uv_loop_init", rc);
  }
  worker->loop_initialised_ = true;
  auto async = UvHandle<uv_async_t>::Create("uv_async_init", [&](uv_async_t* a) {
    return uv_async_init(&worker->loop_, a, &Worker::OnAsync);
  });
  if (!async.ok()) {
    return async.status();
  }
  worker->async_ = *std::move(async);
  worker->async_.get()->data = worker.get();
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&worker->loop_, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  worker->publish_timer_ = *std::move(timer);
  worker->publish_timer_.get()->data = worker.get();
  uv_timer_start(worker->publish_timer_.get(), &Worker::OnPublishTimer, 1000, 1000);
  // The timer alone must not keep the loop running once everything else is done.
  uv_unref(worker->publish_timer_.base());
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
  auto handle = UvHandle<uv_tcp_t>::Create(
      "uv_tcp_init", [&](uv_tcp_t* t) { return uv_tcp_init(&loop_, t); });
  if (!handle.ok()) {
    close(fd);
    return handle.status();
  }
  if (int rc = uv_tcp_open(handle->get(), fd); rc != 0) {
    close(fd);
    return UvError("uv_tcp_open", rc);
  }
  handle->get()->data = this;
  if (int rc = uv_listen(handle->stream(), kListenBacklog, &Worker::OnAccept); rc != 0) {
    return UvError(absl::StrCat("listen on ", FormatAddress(address)), rc);
  }
  listeners_.push_back(*std::move(handle));
  listener_routes_.push_back(route);
  return absl::OkStatus();
}

Worker::~Worker() {
  if (thread_.joinable()) {
    thread_.join();
  }
  listeners_.clear();
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

void Worker::OnAccept(uv_stream_t* server, int status) {
  auto* self = static_cast<Worker*>(server->data);
  if (status != 0) {
    // EMFILE and friends: libuv already sheds the pending connection so we do not spin.
    static LogRateLimiter limiter(1);
    limiter.Log(Severity::kWarning, Component::kNetwork, "accept failed",
               {{"error", uv_strerror(status)}});
    return;
  }
  auto client = UvHandle<uv_tcp_t>::Create(
      "uv_tcp_init", [&](uv_tcp_t* t) { return uv_tcp_init(&self->loop_, t); });
  if (!client.ok()) {
    return;
  }
  if (uv_accept(server, client->stream()) != 0) {
    return;
  }
  SharedState& shared = self->shared_;
  if (shared.connections.fetch_add(1, std::memory_order_relaxed) >=
      shared.config.max_connections) {
    shared.connections.fetch_sub(1, std::memory_order_relaxed);
    shared.metrics.Rejected(CloseReason::kMaxConnections);
    static LogRateLimiter limiter(1);
    limiter.Log(Severity::kWarning, Component::kNetwork,
               "connection refused: limits.maxConnections reached",
               {{"remote", PeerAddress(client->get())},
                {"maxConnections", shared.config.max_connections}});
    return;  // the handle closes as it goes out of scope
  }
  const EgressRoute* route = nullptr;
  for (size_t i = 0; i < self->listeners_.size(); ++i) {
    if (self->listeners_[i].stream() == server) {
      route = self->listener_routes_[i];
    }
  }
  Connection* connection = route == nullptr
                               ? Connection::StartIngress(self, *std::move(client))
                               : Connection::StartEgress(self, *std::move(client), *route);
  connection->next = self->connections_;
  if (self->connections_ != nullptr) {
    self->connections_->prev = connection;
  }
  self->connections_ = connection;
  ++self->connection_count_;
}

void Worker::OnPublishTimer(uv_timer_t* timer) {
  static_cast<Worker*>(timer->data)->PublishBytes();
}

void Worker::PublishBytes() {
  for (int i = 0; i < 8; ++i) {
    if (pending_bytes_[i] == 0) {
      continue;
    }
    shared_.metrics.Bytes(static_cast<Direction>(i >> 2), static_cast<Transport>((i >> 1) & 1),
                          static_cast<FlowDirection>(i & 1), pending_bytes_[i]);
    pending_bytes_[i] = 0;
  }
}

void Worker::Release(Connection* connection) {
  if (connection->prev != nullptr) {
    connection->prev->next = connection->next;
  } else {
    connections_ = connection->next;
  }
  if (connection->next != nullptr) {
    connection->next->prev = connection->prev;
  }
  --connection_count_;
  shared_.connections.fetch_sub(1, std::memory_order_relaxed);
  delete connection;
  MaybeFinish();
}

void Worker::StopAccepting() {
  stopping_ = true;
  listeners_.clear();
  listener_routes_.clear();
  MaybeFinish();
}

void Worker::CloseAll(CloseReason reason) {
  for (Connection* c = connections_; c != nullptr; c = c->next) {
    c->BeginClose(reason);
  }
}

void Worker::DrainConnections() {
  size_t waiting = 0;
  for (Connection* c = connections_; c != nullptr; c = c->next) {
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
  for (Connection* c = connections_; c != nullptr; c = c->next) {
    c->OnDrainDeadline();
  }
}

void Worker::MaybeFinish() {
  if (stopping_ && connection_count_ == 0) {
    // The async handle is the last thing keeping the loop alive.
    PublishBytes();
    publish_timer_.Close();
    std::lock_guard<std::mutex> lock(tasks_mutex_);
    finished_ = true;
    async_.Close();
  }
}

void Worker::OnConnectionClosing(const Connection& connection, CloseReason reason) {
  if (!IsRejection(reason)) {
    return;
  }
  shared_.metrics.Rejected(reason);
  if (reason == CloseReason::kPlaintextInRequireTls) {
    // After the switch the refused clients are the ones left to move: list them where the
    // plaintext clients are listed (SPEC §6, §7), by the hello's names when it was read.
    const protocol::HelloMetadata& hello = connection.metadata();
    shared_.clients.Refused(connection.peer_address(), hello.application, hello.driver,
                            hello.internal_client);
    shared_.metrics.PlaintextClientRefused(hello.application, hello.driver);
  }
  // Per-connection lines are rate-limited so a flood cannot fill a disk (SPEC §9).
  static LogRateLimiter limiter(20);
  limiter.Log(Severity::kInfo, Component::kNetwork, "connection rejected",
             {{"reason", CloseReasonName(reason)},
              {"remote", connection.peer_address()},
              {"application", connection.metadata().application},
              {"driver", connection.metadata().driver},
              {"clientSubject", connection.client_subject()}});
}

void Worker::OnUndecodableRequest(const Connection& connection, std::string_view why) {
  static LogRateLimiter limiter(5);
  limiter.Log(Severity::kInfo, Component::kNetwork,
             "first request not decoded; forwarding it untouched",
             {{"remote", connection.peer_address()}, {"why", why}});
}

void Worker::LogConnection(const Connection& connection, std::string_view what,
                           std::string_view detail) {
  static LogRateLimiter limiter(20);
  limiter.Log(Severity::kInfo, Component::kNetwork, what,
             {{"remote", connection.peer_address()}, {"detail", detail}});
}

}  // namespace sidecar::proxy
