#include "proxy/net/connection.h"

#include <utility>

#include "proxy/base/socket_address.h"
#include "proxy/net/connection_policy.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

namespace {

// Per direction, at most this much waits for a slow reader before we stop reading the
// other side; reading resumes below the low mark. Memory per connection stays bounded
// whatever the peers do (SPEC §10).
constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kLowWater = 64 * 1024;

}  // namespace

std::unique_ptr<Connection> Connection::StartIngress(const ConnectionContext& context, uint64_t id,
                                                     UvHandle<uv_tcp_t> client) {
  std::unique_ptr<Connection> connection(
      new Connection(context, id, Direction::kIngress, State::kSniffing, std::move(client)));
  connection->policy_ = std::make_unique<IngressPolicy>(*connection);
  if (!connection->closing()) {
    connection->policy_->Start();
  }
  return connection;
}

std::unique_ptr<Connection> Connection::StartEgress(const ConnectionContext& context, uint64_t id,
                                                    UvHandle<uv_tcp_t> local,
                                                    const EgressRoute& route) {
  std::unique_ptr<Connection> connection(
      new Connection(context, id, Direction::kEgress, State::kConnecting, std::move(local)));
  connection->policy_ = std::make_unique<EgressPolicy>(*connection, route);
  if (!connection->closing()) {
    connection->policy_->Start();
  }
  return connection;
}

Connection::Connection(const ConnectionContext& context, uint64_t id, Direction direction,
                       State initial, UvHandle<uv_tcp_t> downstream)
    : context_(context),
      id_(id),
      direction_(direction),
      state_(initial),
      downstream_(this, context.pool),
      upstream_(this, context.pool) {
  peer_address_ = PeerAddress(downstream.get());
  downstream_.Adopt(std::move(downstream), /*connected=*/true);
  ++open_handles_;
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(context.loop, t); });
  if (timer.ok()) {
    timer_ = *std::move(timer);
    timer_.get()->data = this;
    ++open_handles_;
  } else {
    // Without a timer no deadline could be enforced; refuse rather than risk a stuck slot.
    BeginClose(CloseReason::kDownstreamError);
  }
}

Connection::~Connection() = default;

std::string Connection::egress_target() const { return policy_ ? policy_->Target() : ""; }

void Connection::Enter(State to, std::string_view why) { Enter(to, why, reason_); }

void Connection::Enter(State to, std::string_view why, CloseReason reason) {
  const State from = state_;
  RecordTransition(from, to);
  if (!IsLegalTransition(from, to)) {
    sidecar::proxy::Log(Severity::kError, Component::kNetwork,
                        "bug: illegal connection state change; closing the connection",
                        {{"connection", id_},
                         {"from", ConnectionStateName(from)},
                         {"to", ConnectionStateName(to)},
                         {"why", why}});
    if (to != State::kClosing && from != State::kClosing) {
      BeginClose(reason);
    }
    return;
  }
  if (LogEnabled(Severity::kDebug)) {
    sidecar::proxy::Log(Severity::kDebug, Component::kNetwork, "connection state",
                        {{"connection", id_},
                         {"from", ConnectionStateName(from)},
                         {"to", ConnectionStateName(to)},
                         {"why", why}});
  }
  state_ = to;
  reason_ = reason;
  if (to == State::kClosingAfterFlush) {
    // Last words: nothing more is read, and the completion of every write is seen.
    downstream_.LastWords();
    upstream_.LastWords();
  }
}

// ---------------------------------------------------------------------------------------
// Upstream

void Connection::ConnectUpstream(const sockaddr* address) {
  auto socket = UvHandle<uv_tcp_t>::Create(
      "uv_tcp_init", [&](uv_tcp_t* t) { return uv_tcp_init(context_.loop, t); });
  if (!socket.ok()) {
    OnUpstreamUnavailable(std::string(socket.status().message()));
    return;
  }
  upstream_.Adopt(*std::move(socket), /*connected=*/false);
  ++open_handles_;
  if (uint32_t mark = context_.outbound_mark; mark != 0) {
    if (absl::Status status = SetSocketMark(upstream_.socket(), address->sa_family, mark);
        !status.ok()) {
      OnUpstreamUnavailable(std::string(status.message()));
      return;
    }
  }
  connect_req_ = std::make_unique<uv_connect_t>();
  connect_req_->data = this;
  if (int rc = uv_tcp_connect(connect_req_.get(), upstream_.socket(), address,
                              &Connection::OnUpstreamConnected);
      rc != 0) {
    connect_req_.reset();
    OnUpstreamUnavailable(uv_strerror(rc));
  }
}

void Connection::OnUpstreamConnected(uv_connect_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  self->connect_req_.reset();  // `req`: libuv is done with it (closing runs this first)
  if (status == UV_ECANCELED || self->state_ == State::kClosing) {
    return;
  }
  if (status != 0) {
    self->context_.metrics->UpstreamConnectFailure();
    self->OnUpstreamUnavailable(uv_strerror(status));
    return;
  }
  Endpoint& up = self->upstream_;
  up.Connected();
  if (!self->policy_->OnUpstreamConnected()) {
    return;
  }
  up.StartReading();
  up.Pump();  // a TLS client speaks first: this sends the ClientHello
  if (self->state_ == State::kClosing) {
    return;
  }
  up.Advance();
  self->MaybeShutdown(up);  // the client may have finished already
}

void Connection::OnUpstreamUnavailable(std::string reason) {
  upstream_error_ = std::move(reason);
  policy_->OnUpstreamUnavailable();
}

// ---------------------------------------------------------------------------------------
// What the endpoints report

void Connection::OnReceived(Endpoint& from, ChunkQueue& plaintext) {
  if (state_ == State::kClosing) {
    return;
  }
  bool client_to_server = IsDownstream(from);
  if (client_to_server && !policy_->OnClientBytes(plaintext)) {
    return;
  }
  if (state_ == State::kRejecting || state_ == State::kClosingAfterFlush) {
    // Nothing reaches the server of a refused connection, and nothing after the message
    // boundary a drain closes at is passed on.
    plaintext.Clear();
    return;
  }
  Forward(from, plaintext);
}

void Connection::Forward(Endpoint& from, ChunkQueue& plaintext) {
  Endpoint& to = Other(from);
  bool client_to_server = IsDownstream(from);
  // Requests flow from the side that connected to us, replies from the side we dialled, for
  // ingress and egress alike. Only the length prefixes are looked at, chunk by chunk.
  for (const Chunk* c = plaintext.front(); c != nullptr; c = c->next) {
    auto bytes = absl::MakeConstSpan(c->head(), c->size());
    if (client_to_server) {
      in_flight_.OnRequestBytes(bytes);
    } else {
      in_flight_.OnReplyBytes(bytes);
    }
  }
  FlowDirection flow =
      client_to_server ? FlowDirection::kClientToServer : FlowDirection::kServerToClient;
  context_.bytes->Add(direction_, transport_, flow, plaintext.bytes());
  to.Write(plaintext);
  if (state_ == State::kClosing) {
    return;
  }
  // Queues grow only here, so this is where their peak is seen; the registry hears of it
  // only when it rises (ctl clients shows what backpressure held, SPEC §10).
  size_t queued = to.queued();
  if (size_t& peak = queued_peak_[client_to_server ? 0 : 1]; queued > peak) {
    peak = queued;
    ClientRegistry::QueuedPeak(client_row_, flow, queued);
  }
  if (queued >= kHighWater) {
    from.Pause();
  }
  MaybeFinishDrain();
}

size_t Connection::Room(const Endpoint& from) const {
  size_t queued = (IsDownstream(from) ? upstream_ : downstream_).queued();
  return queued >= kHighWater ? 0 : kHighWater - queued;
}

void Connection::OnFinishedSending(Endpoint& from) {
  if (state_ == State::kClosing) {
    return;
  }
  if (state_ == State::kSniffing) {
    BeginClose(CloseReason::kSniffEof);
    return;
  }
  if (from.handshaking()) {
    BeginClose(CloseReason::kHandshakeFailed);
    return;
  }
  bool refusing = state_ == State::kRejecting || (state_ == State::kClosingAfterFlush &&
                                                  (reason_ == CloseReason::kPlaintextInRequireTls ||
                                                   reason_ == CloseReason::kUpstreamUnavailable));
  if (IsDownstream(from) && refusing) {
    BeginClose(reason_);
    return;
  }
  MaybeShutdown(Other(from));
  UpdateHalfClosed();
}

void Connection::OnHandshakeDone(Endpoint& side) {
  uv_timer_stop(timer_.get());
  const TlsSession& tls = *side.tls();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - handshake_started_).count();
  context_.metrics->Handshake(direction_, tls.version(), tls.cipher(), tls.resumed(), seconds);
  policy_->OnHandshakeDone(side);
}

void Connection::OnHandshakeFailed(Endpoint& side) { policy_->OnHandshakeFailed(side); }

void Connection::OnTlsError(Endpoint& side, std::string_view what) {
  Log(what, side.tls_error());
  BeginClose(CloseReason::kTlsError);
}

void Connection::OnSocketError(Endpoint& side, int uv_error) {
  if (state_ == State::kSniffing) {
    BeginClose(CloseReason::kSniffError);
    return;
  }
  BeginClose(IsDownstream(side) ? CloseReason::kDownstreamError : CloseReason::kUpstreamError);
}

void Connection::OnSent(Endpoint& side) { MaybeResume(Other(side)); }

void Connection::OnWriteDone(Endpoint& side) {
  if (state_ == State::kClosingAfterFlush && !WritesPending()) {
    BeginClose(reason_);
    return;
  }
  MaybeResume(Other(side));
  MaybeShutdown(side);
}

void Connection::OnShutdownDone(Endpoint& side) { UpdateHalfClosed(); }

// ---------------------------------------------------------------------------------------
// Half-close and backpressure

void Connection::MaybeShutdown(Endpoint& side) {
  // Pass the FIN on once everything the other side sent has been written here.
  if (!Other(side).finished_sending() || state_ == State::kClosing) {
    return;
  }
  side.ShutdownWhenFlushed();
}

void Connection::MaybeResume(Endpoint& source) {
  if (!source.paused() || Other(source).queued() > kLowWater || state_ == State::kClosing) {
    return;
  }
  source.Resume();
}

void Connection::UpdateHalfClosed() {
  if (state_ == State::kClosing) {
    return;
  }
  bool c2s_done = downstream_.finished_sending() && upstream_.shutdown_done();
  bool s2c_done = upstream_.finished_sending() && downstream_.shutdown_done();
  if (c2s_done && s2c_done) {
    BeginClose(CloseReason::kFinished);
  } else if (downstream_.finished_sending() || upstream_.finished_sending()) {
    if (state_ == State::kProxying) {
      Enter(State::kHalfClosed, downstream_.finished_sending() ? "downstream finished sending"
                                                               : "upstream finished sending");
    }
  }
}

// ---------------------------------------------------------------------------------------
// SIGTERM drain

void Connection::StartDrain() {
  if (state_ == State::kClosing || drain_ != Drain::kNone) {
    return;
  }
  drain_ = Drain::kUntilIdle;
  MaybeFinishDrain();
}

void Connection::OnDrainDeadline() {
  if (state_ == State::kClosing) {
    return;
  }
  drain_ = Drain::kUntilBoundary;
  if (in_flight_.lost() && state_ != State::kClosingAfterFlush) {
    // Bytes that are not MongoDB framing have no boundary to wait for: the deadline is it.
    BeginClose(CloseReason::kShutdown);
    return;
  }
  MaybeFinishDrain();
}

void Connection::MaybeFinishDrain() {
  if (drain_ == Drain::kNone || closing()) {
    return;
  }
  if (state_ == State::kRejecting) {
    // Refused already and waiting only to say why: nothing of it reaches mongod.
    BeginClose(reason_);
    return;
  }
  // While sniffing, the bytes of a first message may be here but not yet in the tracker.
  bool sniffing = state_ == State::kSniffing;
  if (drain_ == Drain::kUntilIdle && (sniffing ? policy_->SniffedNothing() : in_flight_.idle())) {
    // A clean end between requests, as mongod's own shutdown: not a rejection.
    CloseWhenFlushed(CloseReason::kFinished, "drain: no request in flight");
  } else if (drain_ == Drain::kUntilBoundary &&
             (sniffing ? policy_->SniffedNothing() : in_flight_.at_boundary())) {
    CloseWhenFlushed(CloseReason::kShutdown, "drain deadline: at a message boundary");
  }
}

void Connection::CloseWhenFlushed(CloseReason reason, std::string_view why) {
  Enter(State::kClosingAfterFlush, why, reason);
  for (Endpoint* side : {&downstream_, &upstream_}) {
    side->SendCloseNotify();
    side->Flush();
    if (state_ == State::kClosing) {
      return;  // a write failed
    }
  }
  if (!WritesPending()) {
    BeginClose(reason);
  }
}

bool Connection::WritesPending() const {
  return downstream_.writes_pending() || upstream_.writes_pending();
}

// ---------------------------------------------------------------------------------------
// Timers and closing

void Connection::ArmTimer(int64_t timeout_ms, CloseReason reason) {
  if (!timer_) {
    return;
  }
  timer_reason_ = reason;
  uv_timer_start(timer_.get(), &Connection::OnTimer, static_cast<uint64_t>(timeout_ms), 0);
}

void Connection::OnTimer(uv_timer_t* timer) {
  auto* self = static_cast<Connection*>(timer->data);
  self->BeginClose(self->timer_reason_);
}

void Connection::BeginClose(CloseReason reason) {
  if (state_ == State::kClosing) {
    return;
  }
  Enter(State::kClosing, CloseReasonName(reason), reason);
  if (admitted_) {
    context_.metrics->ConnectionClosed(direction_, transport_);
  }
  context_.clients->Closed(std::exchange(client_row_, {}));
  if (IsRejection(reason)) {
    context_.metrics->Rejected(reason);
    if (reason == CloseReason::kPlaintextInRequireTls) {
      // After the switch the refused clients are the ones left to move: list them where the
      // plaintext clients are listed (SPEC §6, §7), by the hello's names when it was read.
      context_.clients->Refused(peer_address_, metadata_.application, metadata_.driver,
                                metadata_.internal_client);
      context_.metrics->PlaintextClientRefused(metadata_.application, metadata_.driver);
    }
    static LogRateLimiter limiter(20);
    limiter.Log(Severity::kInfo, Component::kNetwork, "connection rejected",
                {{"reason", CloseReasonName(reason)},
                 {"remote", peer_address_},
                 {"application", metadata_.application},
                 {"driver", metadata_.driver},
                 {"clientSubject", client_subject_}});
  }
  if (policy_) {
    policy_->OnClosing();
  }
  downstream_.Close(&Connection::OnHandleClosed, this);
  upstream_.Close(&Connection::OnHandleClosed, this);
  timer_.Close(&Connection::OnHandleClosed, this);
}

void Connection::OnHandleClosed(void* context) {
  auto* self = static_cast<Connection*>(context);
  if (--self->open_handles_ == 0) {
    self->context_.on_closed(*self);  // frees the connection
  }
}

void Connection::Log(std::string_view what, std::string_view detail) const {
  static LogRateLimiter limiter(20);
  limiter.Log(Severity::kInfo, Component::kNetwork, what,
              {{"remote", peer_address_}, {"detail", detail}});
}

}  // namespace sidecar::proxy
