// DataPathTest, the fixture of the data path tests: one Worker on a loop run by the test
// thread (never Start()ed), one upstream listener, and helpers to connect, accept, run the
// loop until something holds, and read the metrics. TearDown closes every connection and
// checks what uv_loop_close checks (no handle left, no request in flight), and that no
// connection attempted a change of state outside the table (connection_state.h).
#ifndef SIDECAR_TESTS_PROXY_DATA_PATH_FIXTURE_H_
#define SIDECAR_TESTS_PROXY_DATA_PATH_FIXTURE_H_

#include "proxy/net/connection_state.h"
#include "tests/proxy/data_path_peers.h"

namespace sidecar::proxy::data_path {

// ---------------------------------------------------------------------------------------
// The fixture: one Worker on a loop run by the test thread, one upstream listener.

// ServerContext is a TLS server presenting `certificate` (borrowed), as a peer sidecar.
inline bssl::UniquePtr<SSL_CTX> ServerContext(const certs::GeneratedCertificate& certificate) {
  bssl::UniquePtr<SSL_CTX> context(SSL_CTX_new(TLS_method()));
  SSL_CTX_use_certificate(context.get(), certificate.cert.get());  // takes a reference
  SSL_CTX_use_PrivateKey(context.get(), certificate.key.get());    // takes a reference
  return context;
}

// ReservePort binds a socket to a free loopback port and returns it, without listening: the
// port stays out of the kernel's hands for the test (the worker, which binds with
// SO_REUSEPORT, shares it; connections go to the listening socket only).
inline int ReservePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in any_port = Loopback(0);
  bind(fd, reinterpret_cast<sockaddr*>(&any_port), sizeof(any_port));
  return fd;
}

struct Options {
  Mode mode = Mode::kAllowTls;
  bool egress = false;  // an [[egress.peers]] route to the upstream listener (at 127.0.0.1)
  int64_t sniff_timeout_ms = 10000;
  int64_t handshake_timeout_ms = 10000;
  bool upstream_refuses = false;  // nothing listens on the upstream port
  int64_t max_connections = 65536;
  int64_t max_egress_connections = 4096;
};

class DataPathTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = test_support::TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = pki->release();
    client_context_ =
        test_support::NewClientContext(pki_->ca.cert_pem, "", TLS1_2_VERSION, TLS1_3_VERSION)
            .release();
  }
  static void TearDownTestSuite() {
    SSL_CTX_free(client_context_);
    delete pki_;
  }

  void Start(const Options& options) {
    config_.mode = options.mode;
    config_.sniff_timeout_ms = options.sniff_timeout_ms;
    config_.handshake_timeout_ms = options.handshake_timeout_ms;
    config_.max_connections = options.max_connections;
    config_.max_egress_connections = options.max_egress_connections;
    config_.tls = pki_->Settings();
    shared_ = std::make_unique<SharedState>(config_, metrics_);
    shared_->mode.store(options.mode);
    auto snapshot = certs::TlsSnapshot::Create(config_.tls);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    shared_->tls.store(*snapshot);

    upstream_listener_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in any_port = Loopback(0);
    ASSERT_EQ(bind(upstream_listener_, reinterpret_cast<sockaddr*>(&any_port), sizeof(any_port)),
              0);
    sockaddr_in upstream = Loopback(BoundPort(upstream_listener_));
    // With upstream_refuses the socket stays bound (so no one else takes the port) but does
    // not listen: connecting to it gets ECONNREFUSED.
    if (!options.upstream_refuses) {
      ASSERT_EQ(listen(upstream_listener_, 64), 0);
    }
    std::memcpy(&shared_->upstream_address, &upstream, sizeof(upstream));
    if (options.egress) {
      EgressRoute route;
      egress_reservation_ = ReservePort();
      egress_port_ = BoundPort(egress_reservation_);
      route.listen = {"127.0.0.1", egress_port_};
      route.target = {"127.0.0.1", ntohs(upstream.sin_port)};
      sockaddr_storage target{};
      std::memcpy(&target, &upstream, sizeof(upstream));
      route.target_address = target;
      shared_->egress_routes.push_back(route);
    }

    std::vector<sockaddr_storage> addresses(1);
    sockaddr_in listen_address = Loopback(0);
    std::memcpy(&addresses[0], &listen_address, sizeof(listen_address));
    auto worker = Worker::Create(*shared_, 0, addresses);
    ASSERT_TRUE(worker.ok()) << worker.status();
    worker_ = *std::move(worker);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&addresses[0])->sin_port);
  }

  void TearDown() override {
    if (worker_ == nullptr) {
      return;
    }
    for (auto& peer : peers_) {
      peer->Close();
    }
    worker_->StopAccepting();
    worker_->CloseAll(CloseReason::kShutdown);
    uv_loop_t* loop = worker_->loop();
    EXPECT_TRUE(RunUntil([&] { return uv_loop_alive(loop) == 0; }))
        << "handles still open at the end of the test";
    // The same test uv_loop_close makes before it agrees to close (EBUSY otherwise): no
    // request in flight and no handle left, closing or not.
    int handles = 0;
    uv_walk(
        loop, [](uv_handle_t*, void* count) { ++*static_cast<int*>(count); }, &handles);
    EXPECT_EQ(handles, 0);
    EXPECT_EQ(loop->active_reqs.count, 0u);
    EXPECT_EQ(shared_->connections.load(), 0);
    EXPECT_EQ(IllegalTransitionCount(), 0u) << "a connection left the transition table";
    worker_.reset();
    close(upstream_listener_);
    if (egress_reservation_ >= 0) {
      close(egress_reservation_);
    }
  }

  // RunUntil runs the worker's loop and reads the test's sockets until `done` holds or the
  // deadline passes; returns `done`'s last answer.
  bool RunUntil(const std::function<bool()>& done, milliseconds deadline = kDeadline) {
    if (worker_ == nullptr) {
      return false;  // Start failed and said why
    }
    Clock::time_point end = Clock::now() + deadline;
    for (;;) {
      uv_run(worker_->loop(), UV_RUN_NOWAIT);
      for (auto& peer : peers_) {
        peer->TryWrite();
        peer->Pump();
      }
      for (TlsClient* tls : tls_clients_) {
        tls->Pump();
      }
      if (done()) {
        return true;
      }
      if (Clock::now() >= end) {
        return false;
      }
      // Sleep until the loop or a socket of ours has something, at most a few ms (the
      // loop's own timers are not in the poll set).
      std::vector<pollfd> fds;
      fds.push_back({uv_backend_fd(worker_->loop()), POLLIN, 0});
      for (auto& peer : peers_) {
        if (peer->fd >= 0) {
          short events = peer->reading ? POLLIN : 0;
          if (peer->Left() > 0) {
            events |= POLLOUT;
          }
          fds.push_back({peer->fd, events, 0});
        }
      }
      int timeout = uv_backend_timeout(worker_->loop());
      timeout = timeout < 0 || timeout > 5 ? 5 : timeout;
      poll(fds.data(), fds.size(), timeout);
    }
  }

  // LoopIdle: the worker's loop has no socket event waiting. On loopback a write() has
  // reached the receiving socket when it returns, so after one it means the sidecar has
  // read what was sent.
  bool LoopIdle() {
    pollfd backend{uv_backend_fd(worker_->loop()), POLLIN, 0};
    return poll(&backend, 1, 0) == 0;
  }

  // RunFor runs the loop for `span`, for tests that show something does not happen.
  void RunFor(milliseconds span) {
    RunUntil([] { return false; }, span);
  }

  // Connect opens a client connection to the sidecar's port (or, with `egress`, the local
  // mongod's connection to the egress listener) and waits until the worker has it.
  Peer& Connect(bool egress = false) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = Loopback(egress ? egress_port_ : port_);
    size_t before = Connections();
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    peers_.push_back(std::make_unique<Peer>(fd));
    Peer& peer = *peers_.back();
    // Accepting it is the worker's job: wait until the connection exists.
    RunUntil([&] { return Connections() > before || peer.eof || peer.error != 0; });
    return peer;
  }

  // AcceptUpstream waits for the sidecar to dial the upstream and returns that socket.
  Peer* AcceptUpstream() {
    int fd = -1;
    RunUntil([&] {
      fd = accept4(upstream_listener_, nullptr, nullptr, SOCK_CLOEXEC);
      return fd >= 0;
    });
    if (fd < 0) {
      return nullptr;
    }
    peers_.push_back(std::make_unique<Peer>(fd));
    return peers_.back().get();
  }

  // UpstreamDialled: whether a connection to the upstream is waiting to be accepted.
  bool UpstreamDialled() {
    pollfd fd{upstream_listener_, POLLIN, 0};
    return poll(&fd, 1, 0) == 1;
  }

  TlsClient& NewTlsClient(Peer& peer) {
    tls_storage_.push_back(std::make_unique<TlsClient>(peer, client_context_));
    tls_clients_.push_back(tls_storage_.back().get());
    return *tls_storage_.back();
  }

  size_t Connections() {
    size_t n = 0;
    worker_->ForEachConnection([&](Connection&) { ++n; });
    return n;
  }
  // States lists the open connections' states.
  std::vector<Connection::State> States() {
    std::vector<Connection::State> states;
    worker_->ForEachConnection([&](Connection& c) { states.push_back(c.state()); });
    return states;
  }
  bool AllClosed() { return Connections() == 0; }

  // Metric reads one series from the registry: NaN when it does not exist.
  double Metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const prometheus::MetricFamily& family : metrics_.registry()->Collect()) {
      if (family.name != name) {
        continue;
      }
      for (const prometheus::ClientMetric& metric : family.metric) {
        size_t matched = 0;
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          auto it = labels.find(label.name);
          if (it != labels.end() && it->second == label.value) {
            ++matched;
          }
        }
        if (matched == labels.size()) {
          return family.type == prometheus::MetricType::Gauge ? metric.gauge.value
                                                              : metric.counter.value;
        }
      }
    }
    return std::nan("");
  }
  double Rejected(CloseReason reason) {
    return Metric("tls_sidecar_connections_rejected_total",
                  {{"reason", std::string(CloseReasonName(reason))}});
  }
  double RejectedTotal() {
    double total = 0;
    for (int i = 0; i < kCloseReasonCount; ++i) {
      double value = Rejected(static_cast<CloseReason>(i));
      total += std::isnan(value) ? 0 : value;
    }
    return total;
  }
  double Accepted(std::string_view transport) {
    return Metric("tls_sidecar_connections_accepted_total",
                  {{"direction", "ingress"}, {"transport", std::string(transport)}});
  }
  double Active(std::string_view transport, std::string_view direction = "ingress") {
    return Metric("tls_sidecar_connections_active",
                  {{"direction", std::string(direction)}, {"transport", std::string(transport)}});
  }
  double EgressAccepted(std::string_view transport) {
    return Metric("tls_sidecar_connections_accepted_total",
                  {{"direction", "egress"}, {"transport", std::string(transport)}});
  }

  // ProxiedPair opens a plaintext connection and its upstream, with one request and reply
  // passed through so the connection is identified and idle.
  std::pair<Peer*, Peer*> ProxiedPair() {
    Peer& client = Connect();
    client.pending = OpMsgHello(1);
    Peer* upstream = AcceptUpstream();
    if (upstream == nullptr) {
      ADD_FAILURE() << "the sidecar never dialled the upstream";
      return {&client, nullptr};
    }
    EXPECT_TRUE(RunUntil([&] { return upstream->received.size() == OpMsgHello(1).size(); }));
    upstream->pending = OpMsgReply(1);
    EXPECT_TRUE(RunUntil([&] { return client.received.size() == OpMsgReply(1).size(); }));
    client.received.clear();
    upstream->received.clear();
    return {&client, upstream};
  }

  inline static test_support::TestPki* pki_ = nullptr;
  inline static SSL_CTX* client_context_ = nullptr;

  Metrics metrics_{"test", "BoringSSL"};
  Config config_;
  std::unique_ptr<SharedState> shared_;
  std::unique_ptr<Worker> worker_;
  uint16_t port_ = 0;
  uint16_t egress_port_ = 0;
  int egress_reservation_ = -1;
  int upstream_listener_ = -1;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::vector<std::unique_ptr<TlsClient>> tls_storage_;
  std::vector<TlsClient*> tls_clients_;
};


}  // namespace sidecar::proxy::data_path

#endif  // SIDECAR_TESTS_PROXY_DATA_PATH_FIXTURE_H_
