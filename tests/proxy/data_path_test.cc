// The data path driven whole, with real sockets on 127.0.0.1: a Worker built in the test
// (its loop run on the test thread, never Start()ed), a client socket in front of it and an
// upstream socket behind it, both plain non-blocking sockets the test reads and writes
// itself, so that every byte, FIN and close can be checked from outside. Nothing here
// reaches into Connection: the tests see what a client and mongod see, plus the metrics,
// the client table and Connection::state() through Worker::ForEachConnection, so they
// should survive the restructuring of issue 11 with few edits.
//
// Which transitions of the diagram at the top of proxy/connection.h each test reaches. All 17
// arrows of the diagram are reached (counting `any -> kClosing` once; several in more than
// one way), plus the kRejecting -> kClosing step the diagram leaves implicit:
//
//   transition (connection.h)                   reached by
//   ingress
//   kSniffing    -> kHandshaking  TLS, allowed   TlsHandshakeThenBytesBothWays, and every TLS test
//   kSniffing    -> kProxying     MongoDB        PlaintextIsAdmittedAndForwardedBothWays,
//                                                PlaintextFirstMessageSplitAtEveryByte, the
//                                                half-close, backpressure and drain tests
//   kSniffing    -> kRejecting    plaintext in   RequireTlsAnswersOpMsgHelloWithTlsRequiredError,
//                                 requireTLS     RequireTlsAnswersOpQueryHelloWithOpReplyError
//   kSniffing    -> kRejecting    TLS in         TlsInDisabledIsAnsweredWithAnAlert,
//                                 disabled, HTTP HttpOnTheNativePortIsAnswered
//   kSniffing    -> kClosing      EOF            ClientLeavingBeforeSniffIsSniffEof
//                                 timeout        SniffTimeoutClosesASilentClient
//                                 garbage        GarbageFirstBytesAreClosed
//   kHandshaking -> kClosing      failure        TlsHandshakeFailureClosesTheConnection
//                                 timeout        HandshakeTimeoutClosesTheConnection
//   kHandshaking -> kProxying     done           TlsHandshakeThenBytesBothWays,
//                                                TlsCloseNotifyBecomesFinUpstreamAndReplies...
//   kHandshaking -> kRejecting    upstream       UpstreamRefusedIsAnsweredOverTls (today the
//                                 refused        state stays kHandshaking with the refusal
//                                                pending until the handshake ends, then
//                                                kRejecting: the disagreement issue 11 names)
//   kProxying    -> kRejecting    upstream       UpstreamRefusedIsAnsweredToPlaintext
//                                 refused
//   kProxying    -> kHalfClosed   one side FIN   ClientHalfCloseIsPassedUpstreamAndReplies...,
//                                 (close_notify) UpstreamHalfCloseIsPassedToClientAndRequests...,
//                                                TlsCloseNotifyBecomesFinUpstreamAndReplies...
//   kHalfClosed  -> kClosing      the other too  the same three, and Egress...ForwardsBothWays
//   any          -> kClosing      socket error   UpstreamResetClosesTheClient
//                                 drain          DrainClosesAnIdleConnectionAtOnce,
//                                                DrainClosesAnInFlightConnectionAfterTheReply
//                                 drain deadline DrainDeadlineClosesBetweenMessagesCounted...,
//                                                DrainDeadlineWaitsForTheEndOfAMessage...
//                                 shutdown       every test's TearDown (Worker::CloseAll)
//   (kRejecting  -> kClosing      answer sent)   the requireTLS, upstream-refused, alert and
//                                                HTTP tests
//   egress
//   kConnecting  -> kProxying     plaintext mode EgressInPlaintextModeConnectsAndForwardsBothWays
//   kConnecting  -> kHandshaking  TLS mode       EgressInPreferTlsHandshakesWithThePeer...,
//                                                EgressTlsHandshakeFailureHasNoPlaintextFallback
//   kHandshaking -> kProxying     done           EgressInPreferTlsHandshakesWithThePeerThenForwards
//   kConnecting  -> kClosing      peer refused   EgressPeerRefusedClosesTheLocalConnection
//   kHandshaking -> kClosing      peer's TLS     EgressTlsHandshakeFailureHasNoPlaintextFallback
//                                 refused
//
// Every test ends (TearDown) by closing every connection and checking what uv_loop_close
// checks: no handle left and no request in flight.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "certs/tls_snapshot.h"
#include "gtest/gtest.h"
#include "protocol/bson.h"
#include "protocol/error_reply.h"
#include "protocol/tls_alert.h"
#include "protocol/wire.h"
#include "proxy/base/close_reason.h"
#include "proxy/config/config.h"
#include "proxy/net/chunk.h"
#include "proxy/net/connection.h"
#include "proxy/net/shared_state.h"
#include "proxy/net/worker.h"
#include "proxy/observe/metrics.h"
#include "tests/support/bson_builder.h"
#include "tests/support/standin.h"
#include "tests/support/test_pki.h"

namespace sidecar::proxy {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Long enough for a loaded CI machine; every wait ends as soon as its condition holds.
constexpr milliseconds kDeadline{10000};
// The sidecar's bound per direction (connection.cc kHighWater, SPEC §10).
constexpr size_t kHighWater = 256 * 1024;

// ---------------------------------------------------------------------------------------
// Test peers: plain sockets the test drives itself.

int MakeNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

uint16_t BoundPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// Peer is one end of a TCP connection held by the test: the client in front of the
// sidecar, or the upstream behind it. It reads whatever arrives into `received` (unless
// `reading` is off), remembers EOF and errors, and writes without blocking.
struct Peer {
  explicit Peer(int fd) : fd(MakeNonBlocking(fd)) {}
  ~Peer() { Close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  void Close() {
    if (fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
  // Reset closes with an RST instead of a FIN.
  void Reset() {
    linger hard{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    Close();
  }
  void ShutdownWrite() { shutdown(fd, SHUT_WR); }

  // Pump reads what the kernel holds, when reading; TLS peers read through their SSL.
  void Pump() {
    if (fd < 0 || !reading || eof || error != 0 || tls != nullptr) {
      return;
    }
    uint8_t buffer[65536];
    for (;;) {
      ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        received.append(reinterpret_cast<char*>(buffer), static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        eof = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error = errno;
      }
      return;
    }
  }

  // TryWrite writes as much of `pending` as the socket takes now.
  void TryWrite() {
    while (pending_written < pending.size() && fd >= 0) {
      ssize_t n = write(fd, pending.data() + pending_written, pending.size() - pending_written);
      if (n <= 0) {
        return;
      }
      pending_written += static_cast<size_t>(n);
    }
    if (pending_written == pending.size()) {
      pending.clear();  // assigning the next bytes starts over
      pending_written = 0;
    }
  }
  // Left: how many bytes of `pending` the socket has not taken yet.
  size_t Left() const { return pending.size() - pending_written; }

  int fd;
  bool reading = true;
  std::string received;
  std::string pending;  // bytes to write; assign only once the previous ones are written
  size_t pending_written = 0;
  bool eof = false;
  int error = 0;
  SSL* tls = nullptr;  // set by TlsClient: reads go through it then
};

// TlsClient speaks TLS over a Peer's socket with BoringSSL (SSL_set_fd), as a driver does;
// with `server`, it is the accepting end (a peer sidecar that egress dials).
struct TlsClient {
  TlsClient(Peer& peer, SSL_CTX* context, bool server = false) : peer(peer), ssl(SSL_new(context)) {
    SSL_set_fd(ssl.get(), peer.fd);
    if (server) {
      SSL_set_accept_state(ssl.get());
    } else {
      SSL_set_connect_state(ssl.get());
      SSL_set_tlsext_host_name(ssl.get(), "localhost");
    }
    peer.tls = ssl.get();
  }

  // Pump advances the handshake, writes what waits and reads what arrived. Returns false
  // once the session failed.
  bool Pump() {
    if (failed) {
      return false;
    }
    if (!SSL_is_init_finished(ssl.get())) {
      int rc = SSL_do_handshake(ssl.get());
      if (rc != 1) {
        return Check(rc);
      }
    }
    while (!pending.empty()) {
      int rc = SSL_write(ssl.get(), pending.data(), static_cast<int>(pending.size()));
      if (rc <= 0) {
        if (!Check(rc)) {
          return false;
        }
        break;
      }
      pending.erase(0, static_cast<size_t>(rc));
    }
    char buffer[16384];
    for (;;) {
      int rc = SSL_read(ssl.get(), buffer, sizeof(buffer));
      if (rc > 0) {
        received.append(buffer, static_cast<size_t>(rc));
        continue;
      }
      return Check(rc);
    }
  }

  bool Check(int rc) {
    switch (SSL_get_error(ssl.get(), rc)) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        return true;
      case SSL_ERROR_ZERO_RETURN:
        close_notify_received = true;
        return true;
      case SSL_ERROR_SYSCALL:
        if (rc == 0) {
          eof = true;  // the socket ended without close_notify
          return true;
        }
        [[fallthrough]];
      default:
        failed = true;
        return false;
    }
  }

  bool handshake_done() const { return SSL_is_init_finished(ssl.get()); }

  Peer& peer;
  bssl::UniquePtr<SSL> ssl;
  std::string pending;
  std::string received;
  bool close_notify_received = false;
  bool eof = false;
  bool failed = false;
};

// ---------------------------------------------------------------------------------------
// MongoDB messages.

std::string AsString(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

std::string OpMsgHello(int32_t request_id = 7) {
  support::BsonBuilder body;
  body.AppendInt32("hello", 1).AppendString("$db", "admin");
  body.StartDocument("client")
      .StartDocument("application")
      .AppendString("name", "datapath")
      .EndDocument()
      .StartDocument("driver")
      .AppendString("name", "unit")
      .AppendString("version", "1.0")
      .EndDocument()
      .EndDocument();
  std::vector<uint8_t> document = body.Finish();
  return AsString(protocol::BuildOpMsg(request_id, 0, document));
}

std::string OpQueryHello(int32_t request_id = 9) {
  protocol::BsonWriter query;
  query.AppendInt32("isMaster", 1);
  std::vector<uint8_t> document = query.Finish();
  return AsString(protocol::BuildOpQuery(request_id, "admin.$cmd", document));
}

// OpMsgCommand is any OP_MSG request, `size` bytes long or a little over.
std::string OpMsgCommand(int32_t request_id, size_t size = 0) {
  protocol::BsonWriter body;
  body.AppendInt32("ping", 1).AppendString("$db", "admin");
  if (size > 64) {
    body.AppendString("padding", std::string(size - 64, 'p'));
  }
  std::vector<uint8_t> document = body.Finish();
  return AsString(protocol::BuildOpMsg(request_id, 0, document));
}

std::string OpMsgReply(int32_t response_to) {
  protocol::BsonWriter body;
  body.AppendDouble("ok", 1.0);
  std::vector<uint8_t> document = body.Finish();
  return AsString(protocol::BuildOpMsg(0, response_to, document));
}

// ErrorOf parses one whole reply (OP_MSG or OP_REPLY) and returns its code, -1 when it is
// not a reply with a code, and its errmsg in *errmsg.
int32_t ErrorOf(const std::string& reply, int32_t* response_to, std::string* errmsg) {
  auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(reply.data()), reply.size());
  protocol::Frame frame = protocol::FrameMessage(bytes);
  if (frame.status != protocol::ParseStatus::kDone || frame.size != bytes.size()) {
    return -1;
  }
  absl::Span<const uint8_t> document;
  if (frame.header.op_code == static_cast<int32_t>(protocol::OpCode::kMsg)) {
    auto msg = protocol::ParseOpMsg(bytes);
    if (!msg.ok()) {
      return -1;
    }
    document = msg->body;
    *response_to = msg->header.response_to;
  } else if (frame.header.op_code == static_cast<int32_t>(protocol::OpCode::kReply)) {
    auto op_reply = protocol::ParseOpReply(bytes);
    if (!op_reply.ok() || op_reply->documents.size() != 1) {
      return -1;
    }
    document = op_reply->documents[0];
    *response_to = op_reply->header.response_to;
  } else {
    return -1;
  }
  auto view = protocol::BsonView::Parse(document);
  if (!view.ok()) {
    return -1;
  }
  if (auto message = view->Find("errmsg"); message && message->AsString()) {
    *errmsg = std::string(*message->AsString());
  }
  auto code = view->Find("code");
  return code && code->AsInt32() ? *code->AsInt32() : -1;
}

// ClientHelloBytes is a real ClientHello, as the first flight of a BoringSSL client.
std::string ClientHelloBytes(SSL_CTX* context) {
  bssl::UniquePtr<SSL> ssl(SSL_new(context));
  SSL_set_connect_state(ssl.get());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // set0: the SSL owns both
  SSL_do_handshake(ssl.get());
  const uint8_t* data = nullptr;
  size_t size = 0;
  BIO_mem_contents(out, &data, &size);
  return std::string(reinterpret_cast<const char*>(data), size);
}

// AnswerWithStandin plays mongod on `upstream`: every whole OP_MSG in `upstream->received`
// is run by the stand-in's command set and answered. Returns how many it answered.
int AnswerWithStandin(support::Standin& standin, Peer& upstream) {
  int answered = 0;
  for (;;) {
    auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(upstream.received.data()),
                                     upstream.received.size());
    protocol::Frame frame = protocol::FrameMessage(bytes);
    if (frame.status != protocol::ParseStatus::kDone) {
      return answered;
    }
    auto message = protocol::ParseOpMsg(bytes.first(frame.size));
    if (!message.ok()) {
      ADD_FAILURE() << "not an OP_MSG: " << message.status();
      return answered;
    }
    support::CommandRequest request;
    request.body = *protocol::BsonView::Parse(message->body);
    request.connection_id = 1;
    support::Document reply = standin.Run(request);
    upstream.pending += AsString(protocol::BuildOpMsg(0, frame.header.request_id, reply));
    upstream.received.erase(0, frame.size);
    ++answered;
  }
}

// ---------------------------------------------------------------------------------------
// The fixture: one Worker on a loop run by the test thread, one upstream listener.

// ServerContext is a TLS server presenting `certificate` (borrowed), as a peer sidecar.
bssl::UniquePtr<SSL_CTX> ServerContext(const certs::GeneratedCertificate& certificate) {
  bssl::UniquePtr<SSL_CTX> context(SSL_CTX_new(TLS_method()));
  SSL_CTX_use_certificate(context.get(), certificate.cert.get());  // takes a reference
  SSL_CTX_use_PrivateKey(context.get(), certificate.key.get());    // takes a reference
  return context;
}

// ReservePort binds a socket to a free loopback port and returns it, without listening: the
// port stays out of the kernel's hands for the test (the worker, which binds with
// SO_REUSEPORT, shares it; connections go to the listening socket only).
int ReservePort() {
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

  static test_support::TestPki* pki_;
  static SSL_CTX* client_context_;

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

test_support::TestPki* DataPathTest::pki_ = nullptr;
SSL_CTX* DataPathTest::client_context_ = nullptr;

// ---------------------------------------------------------------------------------------
// Plaintext admission and forwarding.

TEST_F(DataPathTest, PlaintextIsAdmittedAndForwardedBothWays) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  std::string hello = OpMsgHello(1);
  client.pending = hello;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
  EXPECT_EQ(upstream->received, hello);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});

  std::string reply = OpMsgReply(1);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size(); }));
  EXPECT_EQ(client.received, reply);

  // More requests and replies, larger than a chunk, go through intact both ways.
  std::string request = OpMsgCommand(2, 200 * 1024);
  client.pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size() + request.size(); }));
  EXPECT_EQ(upstream->received, hello + request);
  std::string big_reply = OpMsgCommand(0, 300 * 1024);
  upstream->pending = big_reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size() + big_reply.size(); }));
  EXPECT_EQ(client.received, reply + big_reply);

  EXPECT_EQ(Accepted("plaintext"), 1);
  EXPECT_EQ(Active("plaintext"), 1);
  EXPECT_EQ(Accepted("tls"), 0);
  worker_->PublishBytes();
  EXPECT_EQ(
      Metric("tls_sidecar_bytes_total",
             {{"direction", "ingress"}, {"transport", "plaintext"}, {"flow", "client_to_server"}}),
      hello.size() + request.size());
  EXPECT_EQ(
      Metric("tls_sidecar_bytes_total",
             {{"direction", "ingress"}, {"transport", "plaintext"}, {"flow", "server_to_client"}}),
      reply.size() + big_reply.size());
  // The hello named the client: it is listed as a plaintext client.
  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].application, "datapath");
  EXPECT_EQ(rows[0].transport, Transport::kPlaintext);
  EXPECT_EQ(rows[0].active, 1);

  client.Close();
  upstream->Close();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("plaintext"), 0);
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, PlaintextFirstMessageSplitAtEveryByte) {
  Start({.mode = Mode::kPreferTls});
  const std::string hello = OpMsgHello(3);
  for (size_t split = 1; split < hello.size(); ++split) {
    SCOPED_TRACE(testing::Message() << "split at " << split);
    Peer& client = Connect();
    client.pending = hello.substr(0, split);
    // The sidecar reads the first part alone (which decides nothing before 16 bytes, and
    // MongoDB from then on) before the rest is sent.
    ASSERT_TRUE(RunUntil([&] { return client.pending.empty() && LoopIdle(); }));
    client.pending = hello.substr(split);
    Peer* upstream = AcceptUpstream();
    ASSERT_NE(upstream, nullptr);
    ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
    EXPECT_EQ(upstream->received, hello);
    upstream->pending = OpMsgReply(3);
    ASSERT_TRUE(RunUntil([&] { return client.received.size() >= OpMsgReply(3).size(); }));
    EXPECT_EQ(client.received, OpMsgReply(3));
    client.Close();
    upstream->Close();
    ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  }
  EXPECT_EQ(Accepted("plaintext"), hello.size() - 1);
  EXPECT_EQ(RejectedTotal(), 0);
}

// ---------------------------------------------------------------------------------------
// TLS.

TEST_F(DataPathTest, TlsHandshakeThenBytesBothWays) {
  Start({.mode = Mode::kPreferTls});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  ASSERT_TRUE(RunUntil([&] { return client.handshake_done() || client.failed; }));
  ASSERT_TRUE(client.handshake_done());
  std::string hello = OpMsgHello(4);
  client.pending = hello;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
  EXPECT_EQ(upstream->received, hello);  // plaintext upstream
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size(); }));
  EXPECT_EQ(client.received, reply);

  EXPECT_EQ(Accepted("tls"), 1);
  EXPECT_EQ(Active("tls"), 1);
  EXPECT_EQ(Accepted("plaintext"), 0);
  EXPECT_EQ(Metric("tls_sidecar_tls_sni_total", {{"match", "certificate"}}), 1);
  client_socket.Close();
  upstream->Close();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("tls"), 0);
}

TEST_F(DataPathTest, TlsHandshakeFailureClosesTheConnection) {
  Start({.mode = Mode::kRequireTls});
  Peer& client_socket = Connect();
  // A client that trusts another CA refuses the sidecar's certificate with an alert.
  auto other_pki = test_support::TestPki::Create();
  ASSERT_TRUE(other_pki.ok());
  bssl::UniquePtr<SSL_CTX> distrusting =
      test_support::NewClientContext((*other_pki)->ca.cert_pem, "", TLS1_2_VERSION, TLS1_3_VERSION);
  tls_storage_.push_back(std::make_unique<TlsClient>(client_socket, distrusting.get()));
  TlsClient& client = *tls_storage_.back();
  tls_clients_.push_back(&client);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_TRUE(client.failed);
  EXPECT_EQ(Rejected(CloseReason::kHandshakeFailed), 1);
  EXPECT_EQ(Accepted("tls"), 0);
}

TEST_F(DataPathTest, HandshakeTimeoutClosesTheConnection) {
  Start({.mode = Mode::kAllowTls, .handshake_timeout_ms = 200});
  Peer& client_socket = Connect();
  // The ClientHello arrives, then the client goes silent.
  client_socket.pending = ClientHelloBytes(client_context_);
  ASSERT_TRUE(RunUntil(
      [&] { return States() == std::vector<Connection::State>{Connection::State::kHandshaking}; }));
  ASSERT_TRUE(RunUntil([&] { return client_socket.eof || client_socket.error != 0; }));
  EXPECT_TRUE(AllClosed());
  EXPECT_EQ(Rejected(CloseReason::kHandshakeTimeout), 1);
  EXPECT_EQ(Accepted("tls"), 0);
}

TEST_F(DataPathTest, TlsCloseNotifyBecomesFinUpstreamAndRepliesStillDelivered) {
  Start({.mode = Mode::kRequireTls});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  std::string request = OpMsgHello(5);
  client.pending = request;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));

  // close_notify from the client: the sidecar passes a FIN to mongod...
  ASSERT_EQ(SSL_shutdown(client.ssl.get()), 0);  // sent ours, theirs not yet received
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  EXPECT_EQ(upstream->received, request);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kHalfClosed});
  // ...and the reply still reaches the client, followed by the sidecar's close_notify once
  // mongod has finished too.
  std::string reply = OpMsgCommand(0, 70 * 1024);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size(); }));
  EXPECT_EQ(client.received, reply);
  upstream->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return client.close_notify_received || client.failed; }));
  EXPECT_TRUE(client.close_notify_received);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Active("tls"), 0);
}

TEST_F(DataPathTest, TlsInDisabledIsAnsweredWithAnAlert) {
  Start({.mode = Mode::kDisabled});
  Peer& client = Connect();
  client.pending = ClientHelloBytes(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  auto alert = protocol::TlsHandshakeFailureAlert();
  EXPECT_EQ(client.received, std::string(alert.begin(), alert.end()));
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kTlsInDisabled), 1);
  EXPECT_EQ(Accepted("tls"), 0);
  EXPECT_EQ(Accepted("plaintext"), 0);
}

// ---------------------------------------------------------------------------------------
// Half-close.

TEST_F(DataPathTest, ClientHalfCloseIsPassedUpstreamAndRepliesStillFlow) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(2, 1000);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return client->pending.empty(); }));
  client->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  EXPECT_EQ(upstream->received, request);  // the FIN comes after every byte
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kHalfClosed});
  EXPECT_FALSE(client->eof);
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= reply.size(); }));
  EXPECT_EQ(client->received, reply);
  upstream->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Active("plaintext"), 0);
}

TEST_F(DataPathTest, UpstreamHalfCloseIsPassedToClientAndRequestsStillFlow) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string reply = OpMsgReply(2);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return upstream->pending.empty(); }));
  upstream->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kHalfClosed});
  EXPECT_FALSE(upstream->eof);
  std::string request = OpMsgCommand(3, 100 * 1024);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  EXPECT_EQ(upstream->received, request);
  client->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, UpstreamResetClosesTheClient) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  upstream->Reset();
  ASSERT_TRUE(RunUntil([&] { return client->eof || client->error != 0; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("plaintext"), 0);
  EXPECT_EQ(RejectedTotal(), 0);  // the peers ended it, the sidecar refused nothing
}

TEST_F(DataPathTest, TlsClientTalksToTheStandInThroughTheSidecar) {
  Start({.mode = Mode::kRequireTls});
  support::Standin standin(support::StandinOptions{});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  client.pending = OpMsgHello(31);
  support::BsonBuilder insert;
  insert.AppendString("insert", "things").AppendString("$db", "test").StartArray("documents");
  insert.StartDocument("0")
      .AppendInt32("_id", 1)
      .AppendString("name", "document-through-the-sidecar")
      .EndDocument();
  std::vector<uint8_t> insert_body = insert.Finish();
  client.pending += AsString(protocol::BuildOpMsg(32, 0, insert_body));
  protocol::BsonWriter find;
  find.AppendString("find", "things").AppendString("$db", "test");
  std::vector<uint8_t> find_body = find.Finish();
  client.pending += AsString(protocol::BuildOpMsg(33, 0, find_body));
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  int answered = 0;
  ASSERT_TRUE(RunUntil([&] {
    answered += AnswerWithStandin(standin, *upstream);
    return answered == 3 || client.failed;
  }));
  // Three replies, in order, each whole and successful; the find sees the insert.
  std::vector<int32_t> response_to;
  std::string last_body;
  ASSERT_TRUE(RunUntil([&] {
    std::string rest = client.received;
    response_to.clear();
    while (rest.size() >= protocol::kHeaderSize) {
      auto frame = protocol::FrameMessage(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(rest.data()), rest.size()));
      if (frame.status != protocol::ParseStatus::kDone) {
        break;
      }
      response_to.push_back(frame.header.response_to);
      last_body = rest.substr(0, frame.size);
      rest.erase(0, frame.size);
    }
    return response_to.size() == 3;
  }));
  EXPECT_EQ(response_to, (std::vector<int32_t>{31, 32, 33}));
  EXPECT_NE(last_body.find("document-through-the-sidecar"), std::string::npos);
  EXPECT_EQ(Accepted("tls"), 1);
  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].transport, Transport::kTls);
  EXPECT_EQ(rows[0].application, "datapath");
}

// ---------------------------------------------------------------------------------------
// Backpressure.

TEST_F(DataPathTest, ClientThatDoesNotReadPausesUpstreamWithBoundedQueue) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  client->reading = false;

  // mongod sends 32 MiB (a recognisable pattern) to a client that reads nothing: far more
  // than the kernel buffers of three loopback sockets hold (about 8 MiB here), so the
  // sidecar's own queue is what fills.
  constexpr size_t kTotal = 32 * 1024 * 1024;
  std::string stream(kTotal, '\0');
  for (size_t i = 0; i < kTotal; ++i) {
    stream[i] = static_cast<char>((i * 131) >> 7);
  }
  upstream->pending = stream;
  // The sidecar stops reading mongod: mongod's writes stop making progress for a while.
  // Counted in loop turns as well as in time, so that a test thread starved by a loaded
  // machine is not taken for a sidecar that stopped reading.
  size_t last_left = kTotal;
  int turns_without_progress = 0;
  Clock::time_point last_progress = Clock::now();
  ASSERT_TRUE(RunUntil([&] {
    if (upstream->Left() != last_left) {
      last_left = upstream->Left();
      last_progress = Clock::now();
      turns_without_progress = 0;
    }
    return ++turns_without_progress > 20 && Clock::now() - last_progress > milliseconds(300);
  }));
  EXPECT_GT(upstream->Left(), 0u) << "everything fit in kernel buffers";

  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  // Held inside the sidecar: at most the high-water mark plus the chunk that crossed it, and
  // enough that the bound, not the kernel, is what stopped it.
  EXPECT_LE(rows[0].max_queued_to_client, static_cast<int64_t>(kHighWater + kChunkCapacity));
  EXPECT_GE(rows[0].max_queued_to_client, static_cast<int64_t>(kHighWater));

  // The client reads again: everything arrives, in order, and mongod's writes go through.
  client->reading = true;
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= kTotal; }));
  EXPECT_TRUE(client->received == stream) << "bytes lost or reordered under backpressure";
  EXPECT_TRUE(upstream->pending.empty());
  rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_LE(rows[0].max_queued_to_client, static_cast<int64_t>(kHighWater + kChunkCapacity));
}

// ---------------------------------------------------------------------------------------
// Refusals answered with a MongoDB error reply.

TEST_F(DataPathTest, RequireTlsAnswersOpMsgHelloWithTlsRequiredError) {
  Start({.mode = Mode::kRequireTls});
  Peer& client = Connect();
  client.pending = OpMsgHello(11);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kSslHandshakeFailedCode);
  EXPECT_EQ(response_to, 11);
  EXPECT_NE(errmsg.find("requires TLS"), std::string::npos) << errmsg;
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kPlaintextInRequireTls), 1);
  EXPECT_EQ(Accepted("plaintext"), 0);
  // The refused client is listed as such (SPEC §6) and counted by its hello's names.
  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, ClientState::kRefused);
  EXPECT_EQ(rows[0].application, "datapath");
  EXPECT_EQ(Metric("tls_sidecar_plaintext_client_refusals_total", {{"application", "datapath"}}),
            1);
}

TEST_F(DataPathTest, RequireTlsAnswersOpQueryHelloWithOpReplyError) {
  Start({.mode = Mode::kRequireTls});
  Peer& client = Connect();
  client.pending = OpQueryHello(12);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(client.received.data()),
                                   client.received.size());
  ASSERT_GE(client.received.size(), protocol::kHeaderSize);
  EXPECT_EQ(protocol::FrameMessage(bytes).header.op_code,
            static_cast<int32_t>(protocol::OpCode::kReply));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kSslHandshakeFailedCode);
  EXPECT_EQ(response_to, 12);
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kPlaintextInRequireTls), 1);
}

TEST_F(DataPathTest, UpstreamRefusedIsAnsweredToPlaintext) {
  Start({.mode = Mode::kAllowTls, .upstream_refuses = true});
  Peer& client = Connect();
  client.pending = OpMsgHello(13);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kHostUnreachableCode);
  EXPECT_EQ(response_to, 13);
  EXPECT_NE(errmsg.find("upstream"), std::string::npos) << errmsg;
  EXPECT_NE(errmsg.find("connection refused"), std::string::npos) << errmsg;
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kUpstreamUnavailable), 1);
  EXPECT_EQ(Metric("tls_sidecar_upstream_connect_failures_total", {}), 1);
  EXPECT_EQ(Active("plaintext"), 0);
}

TEST_F(DataPathTest, UpstreamRefusedIsAnsweredOverTls) {
  Start({.mode = Mode::kRequireTls, .upstream_refuses = true});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  ASSERT_TRUE(RunUntil([&] { return client.handshake_done() || client.failed; }));
  ASSERT_TRUE(client.handshake_done());
  client.pending = OpMsgHello(14);
  ASSERT_TRUE(
      RunUntil([&] { return client.eof || client.close_notify_received || client.failed; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kHostUnreachableCode);
  EXPECT_EQ(response_to, 14);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kUpstreamUnavailable), 1);
  EXPECT_EQ(Metric("tls_sidecar_upstream_connect_failures_total", {}), 1);
  EXPECT_EQ(Active("tls"), 0);
}

TEST_F(DataPathTest, HttpOnTheNativePortIsAnswered) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_EQ(client.received, std::string(protocol::HttpOnNativePortResponse()));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kHttpOnNativePort), 1);
}

// ---------------------------------------------------------------------------------------
// Sniffing ends.

TEST_F(DataPathTest, SniffTimeoutClosesASilentClient) {
  Start({.mode = Mode::kAllowTls, .sniff_timeout_ms = 200});
  Peer& client = Connect();
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kSniffing});
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_TRUE(client.received.empty());
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kSniffTimeout), 1);
}

TEST_F(DataPathTest, GarbageFirstBytesAreClosed) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = "this is not mongodb, nor TLS";
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_TRUE(client.received.empty());
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kInvalidFirstBytes), 1);
  EXPECT_EQ(Accepted("plaintext"), 0);
}

TEST_F(DataPathTest, ClientLeavingBeforeSniffIsSniffEof) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = std::string("\x10\x00", 2);  // too little to decide
  ASSERT_TRUE(RunUntil([&] { return client.pending.empty(); }));
  client.ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kSniffEof), 1);
  EXPECT_FALSE(UpstreamDialled());
}

// ---------------------------------------------------------------------------------------
// The SIGTERM drain (SPEC §10), as Server drives it: DrainConnections on every worker.

TEST_F(DataPathTest, DrainClosesAnIdleConnectionAtOnce) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  worker_->DrainConnections();
  ASSERT_TRUE(RunUntil([&] { return client->eof && upstream->eof; }, milliseconds(2000)));
  EXPECT_TRUE(client->received.empty());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);  // a clean end between requests, as mongod's shutdown
  EXPECT_EQ(Active("plaintext"), 0);
}

TEST_F(DataPathTest, DrainClosesAnInFlightConnectionAfterTheReply) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(5, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  worker_->DrainConnections();
  // The request is in flight: the connection waits for its reply.
  RunFor(milliseconds(200));
  EXPECT_FALSE(client->eof);
  EXPECT_FALSE(upstream->eof);
  EXPECT_EQ(Connections(), 1u);
  // Half the reply still holds it open; its last byte closes it.
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply.substr(0, reply.size() / 2);
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= reply.size() / 2; }));
  RunFor(milliseconds(100));
  EXPECT_FALSE(client->eof);
  upstream->pending = reply.substr(reply.size() / 2);
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, DrainDeadlineClosesBetweenMessagesCountedAsShutdown) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(6, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  worker_->DrainConnections();
  RunFor(milliseconds(50));
  ASSERT_EQ(Connections(), 1u);  // waiting for the reply
  // drainSeconds is over and the reply has not started: the request gets no more time.
  worker_->OnDrainDeadline();
  ASSERT_TRUE(RunUntil([&] { return client->eof && upstream->eof; }));
  EXPECT_TRUE(client->received.empty());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kShutdown), 1);
}

TEST_F(DataPathTest, DrainDeadlineWaitsForTheEndOfAMessageInProgress) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(7, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  worker_->DrainConnections();
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply.substr(0, 1000);
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= 1000; }));
  // Past the deadline in the middle of the reply: it is finished, never cut.
  worker_->OnDrainDeadline();
  RunFor(milliseconds(100));
  EXPECT_FALSE(client->eof);
  upstream->pending = reply.substr(1000);
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kShutdown), 1);
}

// ---------------------------------------------------------------------------------------
// Egress: the local mongod dials a peer through the sidecar.

TEST_F(DataPathTest, EgressInPlaintextModeConnectsAndForwardsBothWays) {
  Start({.mode = Mode::kAllowTls, .egress = true});  // egress originates TLS from preferTLS
  Peer& local = Connect(/*egress=*/true);
  std::string hello = OpMsgHello(21);
  local.pending = hello;  // mongod may speak before the peer is connected
  Peer* peer = AcceptUpstream();
  ASSERT_NE(peer, nullptr);
  ASSERT_TRUE(RunUntil([&] { return peer->received.size() >= hello.size(); }));
  EXPECT_EQ(peer->received, hello);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});
  std::string reply = OpMsgCommand(0, 50 * 1024);
  peer->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return local.received.size() >= reply.size(); }));
  EXPECT_EQ(local.received, reply);
  EXPECT_EQ(EgressAccepted("plaintext"), 1);
  EXPECT_EQ(Active("plaintext", "egress"), 1);
  local.ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return peer->eof; }));
  peer->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return local.eof; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("plaintext", "egress"), 0);
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, EgressInPreferTlsHandshakesWithThePeerThenForwards) {
  Start({.mode = Mode::kPreferTls, .egress = true});
  Peer& local = Connect(/*egress=*/true);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kConnecting});
  std::string hello = OpMsgHello(22);
  local.pending = hello;
  Peer* peer_socket = AcceptUpstream();
  ASSERT_NE(peer_socket, nullptr);
  bssl::UniquePtr<SSL_CTX> server_context = ServerContext(pki_->server);
  tls_storage_.push_back(
      std::make_unique<TlsClient>(*peer_socket, server_context.get(), /*server=*/true));
  TlsClient& peer = *tls_storage_.back();
  tls_clients_.push_back(&peer);
  ASSERT_TRUE(RunUntil([&] { return peer.received.size() >= hello.size() || peer.failed; }));
  EXPECT_EQ(peer.received, hello);  // decrypted by the peer: it went out as TLS
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});
  std::string reply = OpMsgCommand(0, 50 * 1024);
  peer.pending = reply;
  ASSERT_TRUE(RunUntil([&] { return local.received.size() >= reply.size(); }));
  EXPECT_EQ(local.received, reply);  // plaintext to the local mongod
  EXPECT_EQ(EgressAccepted("tls"), 1);
  EXPECT_EQ(Metric("tls_sidecar_tls_handshakes_total", {{"direction", "egress"}}), 1);
}

TEST_F(DataPathTest, EgressPeerRefusedClosesTheLocalConnection) {
  Start({.mode = Mode::kPreferTls, .egress = true, .upstream_refuses = true});
  Peer& local = Connect(/*egress=*/true);
  ASSERT_TRUE(RunUntil([&] { return local.eof || local.error != 0; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kEgressPeerUnavailable), 1);
}

// Out of descriptors, the worker stops accepting and retries on a timer (SPEC §10): the
// client waits in the listen backlog and is served once a descriptor is free, rather than
// being accepted and dropped (libuv's spare-descriptor trick) or spun on.
TEST_F(DataPathTest, OutOfDescriptorsPausesAcceptingAndServesTheClientAfter) {
  Start({.mode = Mode::kAllowTls});
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // The lowest free descriptor number becomes the limit: no new descriptor can be made.
  int lowest_free = dup(fd);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  rlimit exhausted = saved;
  exhausted.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &exhausted), 0);
  sockaddr_in address = Loopback(port_);
  int connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  peers_.push_back(std::make_unique<Peer>(fd));
  Peer& client = *peers_.back();
  RunFor(milliseconds(300));
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_EQ(connected, 0);
  EXPECT_FALSE(client.eof || client.error != 0) << "the waiting client was dropped";
  EXPECT_EQ(Connections(), 0u);

  // A descriptor is free again: the retry accepts the client, which is then served.
  ASSERT_TRUE(RunUntil([&] { return Connections() == 1 || client.eof || client.error != 0; }));
  EXPECT_EQ(Connections(), 1u);
  std::string hello = OpMsgHello(41);
  client.pending = hello;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
  EXPECT_EQ(upstream->received, hello);
  EXPECT_EQ(RejectedTotal(), 0);
}

// limits.maxConnections counts clients only (SPEC §5): idle clients filling it must not
// refuse the local mongod's connection to a peer, or a client flood cuts replication.
TEST_F(DataPathTest, ClientsAtMaxConnectionsDoNotRefuseEgress) {
  Start({.mode = Mode::kAllowTls, .egress = true, .max_connections = 5});
  for (int i = 0; i < 5; ++i) {
    Connect();
  }
  ASSERT_EQ(Connections(), 5u);
  Peer& refused = Connect();  // the sixth client is over the limit
  ASSERT_TRUE(RunUntil([&] { return refused.eof || refused.error != 0; }));
  EXPECT_EQ(Rejected(CloseReason::kMaxConnections), 1);

  Peer& local = Connect(/*egress=*/true);
  std::string hello = OpMsgHello(31);
  local.pending = hello;
  Peer* peer = AcceptUpstream();
  ASSERT_NE(peer, nullptr) << "the egress connection was not dialled through";
  ASSERT_TRUE(RunUntil([&] { return peer->received.size() >= hello.size(); }));
  EXPECT_EQ(peer->received, hello);
  EXPECT_FALSE(local.eof);
  EXPECT_EQ(Connections(), 6u);
  EXPECT_EQ(RejectedTotal(), 1);  // the sixth client only
}

// limits.maxEgressConnections is enforced on its own and counted under its own reason.
TEST_F(DataPathTest, MaxEgressConnectionsRefusesTheNextEgressConnectionCounted) {
  Start({.mode = Mode::kAllowTls, .egress = true, .max_egress_connections = 1});
  Peer& first = Connect(/*egress=*/true);
  Peer& second = Connect(/*egress=*/true);
  ASSERT_TRUE(RunUntil([&] { return second.eof || second.error != 0; }));
  EXPECT_TRUE(second.received.empty());
  EXPECT_FALSE(first.eof);
  EXPECT_EQ(Connections(), 1u);
  EXPECT_EQ(Rejected(CloseReason::kMaxEgressConnections), 1);
  EXPECT_EQ(RejectedTotal(), 1);
  // Clients are not held to the egress limit.
  Connect();
  EXPECT_EQ(Connections(), 2u);
}

TEST_F(DataPathTest, EgressTlsHandshakeFailureHasNoPlaintextFallback) {
  Start({.mode = Mode::kRequireTls, .egress = true});
  Peer& local = Connect(/*egress=*/true);
  local.pending = OpMsgHello(23);
  Peer* peer_socket = AcceptUpstream();
  ASSERT_NE(peer_socket, nullptr);
  // The peer presents a certificate from a CA the sidecar does not trust.
  auto other_pki = test_support::TestPki::Create();
  ASSERT_TRUE(other_pki.ok());
  bssl::UniquePtr<SSL_CTX> server_context = ServerContext((*other_pki)->server);
  tls_storage_.push_back(
      std::make_unique<TlsClient>(*peer_socket, server_context.get(), /*server=*/true));
  TlsClient& peer = *tls_storage_.back();
  tls_clients_.push_back(&peer);
  ASSERT_TRUE(RunUntil([&] { return local.eof || local.error != 0; }));
  EXPECT_TRUE(peer.received.empty());  // not one byte of mongod's went out
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kEgressHandshakeFailed), 1);
}

}  // namespace
}  // namespace sidecar::proxy
