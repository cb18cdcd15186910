#include "proxy/net/connection.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "protocol/error_reply.h"
#include "protocol/proxy_header.h"
#include "protocol/sniffer.h"
#include "protocol/tls_alert.h"
#include "protocol/wire.h"
#include "proxy/base/concat.h"
#include "proxy/base/socket_address.h"
#include "proxy/net/worker.h"
#include "proxy/ocsp/handshake_resume.h"

namespace sidecar::proxy {

namespace {

// Per direction, at most this much waits for a slow reader before we stop reading the
// other side; reading resumes below the low mark. Memory per connection stays bounded
// whatever the peers do (SPEC §10).
constexpr size_t kHighWater = 256 * 1024;
constexpr size_t kLowWater = 64 * 1024;

// The first request is copied only this far; a hello is a few hundred bytes.
constexpr size_t kMaxInspectedBytes = 64 * 1024;

// libuv copies up to four buffers into a write request without allocating.
constexpr int kMaxWriteBuffers = 4;

constexpr unsigned kKeepAliveDelaySeconds = 60;

}  // namespace

Connection* Connection::StartIngress(Worker* worker, UvHandle<uv_tcp_t> client) {
  auto* connection = new Connection(worker, std::move(client), Direction::kIngress);
  connection->Begin();
  if (connection->state_ != State::kClosing) {
    connection->ArmTimer(worker->shared().config.sniff_timeout_ms, CloseReason::kSniffTimeout);
    connection->StartReading(connection->downstream_);
  }
  return connection;
}

Connection* Connection::StartEgress(Worker* worker, UvHandle<uv_tcp_t> local,
                                    const EgressRoute& route) {
  auto* connection = new Connection(worker, std::move(local), Direction::kEgress);
  connection->Begin();
  if (connection->state_ == State::kClosing) {
    return connection;
  }
  if (route.transparent) {
    auto original = OriginalDestination(connection->downstream_.socket.get());
    if (!original.ok()) {
      worker->LogConnection(*connection, "transparent egress without an original destination",
                            std::string(original.status().message()));
      connection->BeginClose(CloseReason::kEgressPeerUnavailable);
      return connection;
    }
    connection->egress_address_ = *original;
    connection->egress_host_ = AddressWithoutPort(FormatAddress(*original));
  } else {
    connection->egress_host_ = route.target.host;
  }
  // What travels to the peer is decided now, from the mode at accept (SPEC §2).
  connection->mode_ = worker->shared().mode.load(std::memory_order_acquire);
  connection->transport_ =
      EgressUsesTls(connection->mode_) ? Transport::kTls : Transport::kPlaintext;
  connection->state_ = State::kConnecting;
  connection->admitted_ = true;
  worker->shared().metrics.ConnectionOpened(Direction::kEgress, connection->transport_);
  // mongod may speak first; its bytes wait in upstream_.staged until the peer is ready.
  connection->StartReading(connection->downstream_);
  if (route.transparent) {
    connection->ConnectUpstream();
  } else if (route.target_address) {
    connection->egress_address_ = *route.target_address;
    connection->ConnectUpstream();
  } else {
    connection->ResolveEgressTarget(route.target);
  }
  return connection;
}

void Connection::ResolveEgressTarget(const HostPort& target) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  resolve_req_.data = this;
  std::string port = std::to_string(target.port);
  if (int rc = uv_getaddrinfo(worker_->loop(), &resolve_req_, &Connection::OnEgressResolved,
                              target.host.c_str(), port.c_str(), &hints);
      rc != 0) {
    OnUpstreamUnavailable(Concat("cannot resolve ", target.host, ": ", uv_strerror(rc)));
    return;
  }
  // The request counts like a handle: the connection is not freed before its callback.
  ++open_handles_;
  resolving_ = true;
}

void Connection::OnEgressResolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
  auto* self = static_cast<Connection*>(req->data);
  self->resolving_ = false;
  if (status == 0 && result != nullptr && self->state_ != State::kClosing) {
    std::memcpy(&self->egress_address_, result->ai_addr, result->ai_addrlen);
  }
  uv_freeaddrinfo(result);
  if (self->state_ != State::kClosing) {
    if (status != 0) {
      self->OnUpstreamUnavailable(
          Concat("cannot resolve ", self->egress_host_, ": ", uv_strerror(status)));
    } else {
      self->ConnectUpstream();
    }
  }
  OnHandleClosed(self);  // the request is done; frees the connection if it was the last
}

void Connection::Begin() {
  Endpoint& down = downstream_;
  down.connected = true;
  peer_address_ = PeerAddress(down.socket.get());
  uv_tcp_nodelay(down.socket.get(), 1);
  uv_tcp_keepalive(down.socket.get(), 1, kKeepAliveDelaySeconds);
  if (!timer_) {
    // Without a timer no deadline could be enforced; refuse rather than risk a stuck slot.
    BeginClose(CloseReason::kDownstreamError);
  }
}

Connection::Connection(Worker* worker, UvHandle<uv_tcp_t> client, Direction direction)
    : worker_(worker),
      pool_(&worker->pool()),
      direction_(direction),
      downstream_(this, pool_),
      upstream_(this, pool_),
      sniffed_(pool_) {
  downstream_.socket = std::move(client);
  downstream_.socket.get()->data = &downstream_;
  ++open_handles_;
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(worker->loop(), t); });
  if (timer.ok()) {
    timer_ = *std::move(timer);
    timer_.get()->data = this;
    ++open_handles_;
  }
}

std::string Connection::egress_target() const {
  return direction_ == Direction::kEgress ? FormatAddress(egress_address_) +
                                                (egress_host_.empty() ? "" : " (" + egress_host_ + ")")
                                          : "";
}

Connection::~Connection() {
  if (downstream_.read_chunk != nullptr) {
    pool_->Give(downstream_.read_chunk);
  }
  if (upstream_.read_chunk != nullptr) {
    pool_->Give(upstream_.read_chunk);
  }
}

// ---------------------------------------------------------------------------------------
// Sniffing and admission

void Connection::OnSniffBytes(Chunk* chunk) {
  size_t copy = std::min(sniff_bytes_.size() - sniff_size_, chunk->size());
  std::memcpy(sniff_bytes_.data() + sniff_size_, chunk->head(), copy);
  sniff_size_ += copy;
  sniffed_.Push(chunk);  // kept until we know where the bytes go

  auto verdict = protocol::Sniff(absl::MakeConstSpan(sniff_bytes_.data(), sniff_size_));
  if (verdict == protocol::SniffVerdict::kNeedMore) {
    return;
  }
  mode_ = worker_->shared().mode.load(std::memory_order_acquire);
  switch (verdict) {
    case protocol::SniffVerdict::kNeedMore:
      return;
    case protocol::SniffVerdict::kTls: {
      if (!IngressAcceptsTls(mode_)) {
        auto alert = protocol::TlsHandshakeFailureAlert();
        RejectWithBytes(CloseReason::kTlsInDisabled, alert.data(), alert.size());
        return;
      }
      tls_snapshot_ = worker_->shared().tls.load();
      if (!tls_snapshot_ || tls_snapshot_->server_context() == nullptr) {
        auto alert = protocol::TlsHandshakeFailureAlert();
        RejectWithBytes(CloseReason::kNoCertificate, alert.data(), alert.size());
        return;
      }
      auto session = TlsSession::Create(tls_snapshot_->server_context(),
                                        TlsSession::Role::kServer, pool_, &downstream_.outgoing);
      if (!session.ok()) {
        worker_->LogConnection(*this, "TLS session could not be created",
                               std::string(session.status().message()));
        BeginClose(CloseReason::kHandshakeFailed);
        return;
      }
      downstream_.tls = *std::move(session);
      // A client certificate's OCSP check may pause the handshake; this resumes it.
      AttachHandshakeResume(downstream_.tls->ssl(), worker_->loop(), [this] {
        if (state_ == State::kHandshaking) {
          PumpTls(downstream_);
        }
      });
      state_ = State::kHandshaking;
      transport_ = Transport::kTls;
      handshake_started_ = std::chrono::steady_clock::now();
      ArmTimer(worker_->shared().config.handshake_timeout_ms, CloseReason::kHandshakeTimeout);
      ConnectUpstream();  // in parallel with the handshake
      // The sniffed bytes are the start of the ClientHello: nothing is lost.
      while (Chunk* c = sniffed_.Pop()) {
        downstream_.tls->Feed(c);
      }
      PumpTls(downstream_);
      return;
    }
    case protocol::SniffVerdict::kMongo:
      transport_ = Transport::kPlaintext;
      if (!IngressAcceptsPlaintext(mode_)) {
        RejectPlaintextInRequireTls();
        return;
      }
      uv_timer_stop(timer_.get());
      Admit(Transport::kPlaintext);
      ConnectUpstream();
      DeliverPlaintext(downstream_, sniffed_);
      return;
    case protocol::SniffVerdict::kHttp: {
      std::string_view answer = protocol::HttpOnNativePortResponse();
      RejectWithBytes(CloseReason::kHttpOnNativePort,
                      reinterpret_cast<const uint8_t*>(answer.data()), answer.size());
      return;
    }
    case protocol::SniffVerdict::kUnsupportedTls:
      BeginClose(CloseReason::kUnsupportedTls);
      return;
    case protocol::SniffVerdict::kInvalid:
      // A MongoDB header whose responseTo is neither 0 nor -1 is no client's first message
      // (SPEC §3), but in requireTLS it is still a plaintext client that can read why.
      if (!IngressAcceptsPlaintext(mode_) &&
          protocol::RequestToAnswer(absl::MakeConstSpan(sniff_bytes_.data(), sniff_size_))) {
        transport_ = Transport::kPlaintext;
        RejectPlaintextInRequireTls();
        return;
      }
      BeginClose(CloseReason::kInvalidFirstBytes);
      return;
  }
}

void Connection::Admit(Transport transport) {
  admitted_ = true;
  state_ = State::kProxying;
  worker_->shared().metrics.ConnectionOpened(direction_, transport);
  if (int version = worker_->shared().config.upstream_proxy_protocol; version != 0) {
    // The header must be the first bytes mongod reads; nothing is staged before admission.
    protocol::ProxyHeaderInfo info;
    info.source = ToIpEndpoint(PeerSockaddr(downstream_.socket.get()));
    info.destination = ToIpEndpoint(LocalSockaddr(downstream_.socket.get()));
    if (downstream_.tls) {
      info.tls = true;
      info.tls_version = std::string(downstream_.tls->version());
      info.cipher = std::string(downstream_.tls->cipher());
      info.sni = std::string(downstream_.tls->server_name());
      info.resumed = downstream_.tls->resumed();
      bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(downstream_.tls->ssl()));  // get1
      info.client_certificate = peer != nullptr;
      info.client_certificate_verified = !client_subject_.empty();  // only verified ones
    }
    std::vector<uint8_t> header = protocol::BuildProxyHeader(version, info);
    upstream_.staged.Append(header.data(), header.size());
  }
}

void Connection::RejectPlaintextInRequireTls() {
  // Wait (under the sniff timer) for the whole first request so the client can be told why.
  rejecting_ = true;
  reject_reason_ = CloseReason::kPlaintextInRequireTls;
  state_ = State::kRejecting;
  ArmTimer(worker_->shared().config.sniff_timeout_ms, CloseReason::kPlaintextInRequireTls);
  Inspect(sniffed_);
  sniffed_.Clear();
  MaybeAnswerRejectedRequest();
}

void Connection::RejectWithBytes(CloseReason reason, const uint8_t* data, size_t size) {
  state_ = State::kRejecting;
  sniffed_.Clear();
  downstream_.outgoing.Append(data, size);
  closing_after_flush_ = true;
  close_after_flush_ = reason;
  if (downstream_.reading) {
    uv_read_stop(downstream_.socket.stream());
    downstream_.reading = false;
  }
  Flush(downstream_);
}

// ---------------------------------------------------------------------------------------
// Upstream

void Connection::ConnectUpstream() {
  auto socket = UvHandle<uv_tcp_t>::Create(
      "uv_tcp_init", [&](uv_tcp_t* t) { return uv_tcp_init(worker_->loop(), t); });
  if (!socket.ok()) {
    OnUpstreamUnavailable(std::string(socket.status().message()));
    return;
  }
  upstream_.socket = *std::move(socket);
  upstream_.socket.get()->data = &upstream_;
  ++open_handles_;
  connect_req_.data = this;
  const auto* address = reinterpret_cast<const sockaddr*>(
      direction_ == Direction::kEgress ? &egress_address_ : &worker_->shared().upstream_address);
  if (uint32_t mark = worker_->shared().outbound_mark; mark != 0) {
    if (absl::Status status = SetSocketMark(upstream_.socket.get(), address->sa_family, mark);
        !status.ok()) {
      OnUpstreamUnavailable(std::string(status.message()));
      return;
    }
  }
  if (int rc = uv_tcp_connect(&connect_req_, upstream_.socket.get(), address,
                              &Connection::OnUpstreamConnected);
      rc != 0) {
    // Report it from the loop, not from inside our caller.
    OnUpstreamUnavailable(uv_strerror(rc));
  }
}

void Connection::OnUpstreamConnected(uv_connect_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  if (status == UV_ECANCELED || self->state_ == State::kClosing) {
    return;
  }
  if (status != 0) {
    self->worker_->shared().metrics.UpstreamConnectFailure();
    self->OnUpstreamUnavailable(uv_strerror(status));
    return;
  }
  Endpoint& up = self->upstream_;
  up.connected = true;
  uv_tcp_nodelay(up.socket.get(), 1);
  uv_tcp_keepalive(up.socket.get(), 1, kKeepAliveDelaySeconds);
  if (self->direction_ == Direction::kEgress) {
    if (self->transport_ == Transport::kTls && !self->StartEgressTls()) {
      return;
    }
    if (self->state_ == State::kConnecting) {
      self->state_ = State::kProxying;
    }
  }
  self->StartReading(up);
  if (up.tls) {
    self->PumpTls(up);  // a client speaks first: this sends the ClientHello
  }
  if (self->state_ == State::kClosing) {
    return;
  }
  self->Advance(up);
  self->MaybeShutdown(up);  // the client may have finished already
}

bool Connection::StartEgressTls() {
  tls_snapshot_ = worker_->shared().tls.load();
  SSL_CTX* context = tls_snapshot_ ? tls_snapshot_->client_context() : nullptr;
  if (context == nullptr) {
    worker_->LogConnection(*this, "egress TLS impossible: no cluster certificate or CA loaded",
                           egress_target());
    BeginClose(CloseReason::kEgressHandshakeFailed);
    return false;
  }
  auto session = TlsSession::Create(context, TlsSession::Role::kClient, pool_, &upstream_.outgoing);
  if (!session.ok()) {
    BeginClose(CloseReason::kEgressHandshakeFailed);
    return false;
  }
  upstream_.tls = *std::move(session);
  AttachHandshakeResume(upstream_.tls->ssl(), worker_->loop(), [this] {
    if (state_ == State::kHandshaking) {
      PumpTls(upstream_);
    }
  });
  if (absl::Status status =
          tls_snapshot_->PrepareEgressSession(upstream_.tls->ssl(), egress_host_);
      !status.ok()) {
    worker_->LogConnection(*this, "egress TLS setup failed", std::string(status.message()));
    BeginClose(CloseReason::kEgressHandshakeFailed);
    return false;
  }
  state_ = State::kHandshaking;
  handshake_started_ = std::chrono::steady_clock::now();
  ArmTimer(worker_->shared().config.handshake_timeout_ms, CloseReason::kHandshakeTimeout);
  return true;
}

void Connection::OnUpstreamUnavailable(std::string reason) {
  upstream_error_ = std::move(reason);
  if (direction_ == Direction::kEgress) {
    // mongod's own connection attempt fails the way a refused peer would; it retries.
    worker_->LogConnection(*this, "egress peer unavailable",
                           absl::StrCat(egress_target(), ": ", upstream_error_));
    BeginClose(CloseReason::kEgressPeerUnavailable);
    return;
  }
  rejecting_ = true;
  reject_reason_ = CloseReason::kUpstreamUnavailable;
  upstream_.staged.Clear();
  worker_->LogConnection(*this, "upstream unavailable", upstream_error_);
  if (state_ != State::kHandshaking) {
    state_ = State::kRejecting;
  }
  // The client is told once its first request is here (after the handshake for TLS), under
  // the sniff timer.
  ArmTimer(worker_->shared().config.sniff_timeout_ms, CloseReason::kUpstreamUnavailable);
  MaybeAnswerRejectedRequest();
}

void Connection::MaybeAnswerRejectedRequest() {
  if (!rejecting_ || !inspected_ || closing_after_flush_) {
    return;
  }
  std::vector<uint8_t> reply;
  bool answerable = request_.op_code == protocol::OpCode::kMsg ||
                    request_.op_code == protocol::OpCode::kQuery;
  if (reject_reason_ == CloseReason::kPlaintextInRequireTls) {
    // The refusal needs only the request id and opcode: a message that frames as MongoDB
    // is answered even when compressed, too large to inspect or too deep to decode.
    if (reply_target_) {
      reply = protocol::BuildTlsRequiredReply(*reply_target_);
    }
  } else if (answerable && identified_) {
    reply = protocol::BuildUpstreamUnavailableReply(request_, upstream_error_);
  }
  state_ = State::kRejecting;
  closing_after_flush_ = true;
  close_after_flush_ = reject_reason_;
  if (downstream_.reading) {
    uv_read_stop(downstream_.socket.stream());
    downstream_.reading = false;
  }
  if (!reply.empty()) {
    if (downstream_.tls) {
      downstream_.tls->Write(reply.data(), reply.size());
    } else {
      downstream_.outgoing.Append(reply.data(), reply.size());
    }
  }
  Flush(downstream_);
  if (downstream_.outgoing.empty() && !downstream_.writing) {
    BeginClose(reject_reason_);
  }
}

// ---------------------------------------------------------------------------------------
// Data path

void Connection::StartReading(Endpoint& side) {
  if (side.reading || side.paused || side.finished_sending || state_ == State::kClosing ||
      closing_after_flush_) {
    return;
  }
  if (int rc = uv_read_start(side.socket.stream(), &Connection::OnAlloc, &Connection::OnRead);
      rc != 0) {
    OnSocketError(side, rc);
    return;
  }
  side.reading = true;
}

void Connection::OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  auto* side = static_cast<Endpoint*>(handle->data);
  if (side->read_chunk == nullptr) {
    side->read_chunk = side->owner->pool_->Take();
  }
  *buf = uv_buf_init(reinterpret_cast<char*>(side->read_chunk->tail()),
                     static_cast<unsigned>(side->read_chunk->space()));
}

void Connection::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* side = static_cast<Endpoint*>(stream->data);
  Connection* self = side->owner;
  Chunk* chunk = std::exchange(side->read_chunk, nullptr);
  if (nread > 0) {
    chunk->end += static_cast<size_t>(nread);
    self->OnBytes(*side, chunk);
    return;
  }
  // nread == 0 is EAGAIN; an idle connection holds no chunk.
  if (chunk != nullptr) {
    self->pool_->Give(chunk);
  }
  if (nread == UV_EOF) {
    side->reading = false;
    if (self->state_ == State::kSniffing) {
      self->BeginClose(CloseReason::kSniffEof);
      return;
    }
    if (side->tls && !side->finished_sending && self->state_ == State::kHandshaking) {
      self->BeginClose(CloseReason::kHandshakeFailed);
      return;
    }
    self->OnFinishedSending(*side);
  } else if (nread < 0) {
    self->OnSocketError(*side, static_cast<int>(nread));
  }
}

void Connection::OnBytes(Endpoint& from, Chunk* chunk) {
  if (state_ == State::kClosing) {
    pool_->Give(chunk);
    return;
  }
  if (state_ == State::kSniffing) {
    OnSniffBytes(chunk);
    MaybeFinishDrain();
    return;
  }
  if (from.tls) {
    from.tls->Feed(chunk);
    PumpTls(from);
    return;
  }
  ChunkQueue plaintext(pool_);
  plaintext.Push(chunk);
  DeliverPlaintext(from, plaintext);
}

void Connection::PumpTls(Endpoint& from) {
  TlsSession& tls = *from.tls;
  if (!tls.handshake_done()) {
    TlsSession::Status status = tls.Handshake();
    Flush(from);  // the handshake's own output
    if (status == TlsSession::Status::kWantRead) {
      return;
    }
    if (status != TlsSession::Status::kOk) {
      if (IsDownstream(from)) {
        std::string detail = tls.error();
        if (absl::StrContains(detail, "PEER_DID_NOT_RETURN_A_CERTIFICATE")) {
          // The most common refusal after a CA file is set; say what to do about it.
          absl::StrAppend(&detail,
                          ": the client presented no certificate, which is required with "
                          "net.tls.CAFile unless net.tls.allowConnectionsWithoutCertificates "
                          "is true (as mongod)");
        }
        worker_->LogConnection(*this, "TLS handshake failed", detail);
        BeginClose(OcspCloseReason(tls.ssl(), CloseReason::kHandshakeFailed));
      } else {
        // No fallback to plaintext, exactly as mongod.
        worker_->LogConnection(*this, "egress TLS handshake with peer failed",
                               absl::StrCat(egress_target(), ": ", tls.error()));
        BeginClose(OcspCloseReason(tls.ssl(), CloseReason::kEgressHandshakeFailed));
      }
      return;
    }
    OnHandshakeDone(from);
    if (state_ == State::kClosing) {
      return;
    }
  }
  Endpoint& to = Other(from);
  // Once closing after a flush (a refusal answered, a drain at a message boundary), nothing
  // more is read or passed on.
  while (state_ != State::kClosing && !closing_after_flush_) {
    if (to.queued() >= kHighWater) {
      Pause(from);  // resumed when the other side drains; ciphertext waits in the session
      return;
    }
    ChunkQueue plaintext(pool_);
    TlsSession::Status status = tls.ReadPlaintext(plaintext, kHighWater - to.queued());
    Flush(from);  // reading can produce output too (key updates, session tickets)
    if (!plaintext.empty()) {
      DeliverPlaintext(from, plaintext);
    }
    switch (status) {
      case TlsSession::Status::kOk:
        continue;  // stopped at the limit: look at the other side again
      case TlsSession::Status::kWantRead:
        return;
      case TlsSession::Status::kPeerClosed:
        // close_notify: the peer is done sending; we still deliver the other way.
        if (from.reading) {
          uv_read_stop(from.socket.stream());
          from.reading = false;
        }
        OnFinishedSending(from);
        return;
      case TlsSession::Status::kError:
        worker_->LogConnection(*this, "TLS error", tls.error());
        BeginClose(CloseReason::kTlsError);
        return;
    }
  }
}

void Connection::Pause(Endpoint& source) {
  if (source.reading) {
    uv_read_stop(source.socket.stream());
    source.reading = false;
  }
  source.paused = true;
}

void Connection::OnHandshakeDone(Endpoint& side) {
  uv_timer_stop(timer_.get());
  TlsSession& tls = *side.tls;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                 handshake_started_)
                       .count();
  Metrics& metrics = worker_->shared().metrics;
  metrics.Handshake(direction_,
                    tls.version(), tls.cipher(), tls.resumed(), seconds);
  if (IsDownstream(side)) {
    client_subject_ = certs::VerifiedPeerSubject(tls.ssl());
    std::string_view sni = tls.server_name();
    metrics.Sni(sni.empty() ? SniMatch::kNone
                : tls_snapshot_->MatchesServerName(std::string(sni)) ? SniMatch::kCertificate
                                                                     : SniMatch::kOther);
    if (!rejecting_) {
      Admit(Transport::kTls);
    } else {
      state_ = State::kRejecting;
    }
  } else {
    state_ = State::kProxying;
    Advance(side);  // what mongod sent while we shook hands
    MaybeShutdown(side);  // mongod may have finished already
  }
}

void Connection::DeliverPlaintext(Endpoint& from, ChunkQueue& plaintext) {
  Endpoint& to = Other(from);
  bool client_to_server = IsDownstream(from);
  if (client_to_server && !inspected_ && direction_ == Direction::kIngress) {
    Inspect(plaintext);
  }
  if (rejecting_) {
    // Nothing reaches the server of a refused connection; the copy above is enough to
    // answer the client.
    plaintext.Clear();
    MaybeAnswerRejectedRequest();
    return;
  }
  if (closing_after_flush_) {
    // Closing at a message boundary: what follows it is not passed on.
    plaintext.Clear();
    return;
  }
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
  worker_->CountBytes(direction_, transport_,
                                  client_to_server ? FlowDirection::kClientToServer
                                                   : FlowDirection::kServerToClient,
                                  plaintext.bytes());
  plaintext.MoveAllTo(to.staged);
  Advance(to);
  // Queues grow only here, so this is where their peak is seen; the registry hears of it
  // only when it rises (ctl clients shows what backpressure held, SPEC §10).
  size_t queued = to.queued();
  if (size_t& peak = queued_peak_[client_to_server ? 0 : 1]; queued > peak) {
    peak = queued;
    ClientRegistry::QueuedPeak(
        client_row_,
        client_to_server ? FlowDirection::kClientToServer : FlowDirection::kServerToClient, queued);
  }
  if (queued >= kHighWater) {
    Pause(from);
  }
  MaybeFinishDrain();
}

void Connection::Inspect(const ChunkQueue& plaintext) {
  for (const Chunk* c = plaintext.front(); c != nullptr && !inspected_; c = c->next) {
    size_t take = std::min(c->size(), kMaxInspectedBytes - first_request_.size());
    first_request_.append(reinterpret_cast<const char*>(c->head()), take);
    auto result = protocol::InspectFirstRequest(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(first_request_.data()), first_request_.size()));
    if (result.status == protocol::ParseStatus::kNeedMore &&
        first_request_.size() < kMaxInspectedBytes) {
      continue;
    }
    inspected_ = true;
    reply_target_ = protocol::RequestToAnswer(absl::MakeConstSpan(
        reinterpret_cast<const uint8_t*>(first_request_.data()), first_request_.size()));
    if (result.status == protocol::ParseStatus::kDone) {
      identified_ = true;
      request_ = result.request;
      metadata_ = result.request.metadata;
      if (admitted_) {
        client_row_ = worker_->shared().clients.Opened(peer_address_, transport_,
                                                       metadata_.application, metadata_.driver,
                                                       metadata_.internal_client, client_subject_);
        if (transport_ == Transport::kPlaintext) {
          worker_->shared().metrics.PlaintextClient(metadata_.application, metadata_.driver,
                                                    metadata_.internal_client);
        }
      }
    } else {
      // Fail open: the bytes go on untouched; only the identity is unknown.
      worker_->OnUndecodableRequest(*this, result.status == protocol::ParseStatus::kError
                                               ? result.error
                                               : "first request larger than inspected");
    }
    first_request_.clear();
    first_request_.shrink_to_fit();
  }
}

void Connection::Advance(Endpoint& to) {
  if (!to.ready() || to.staged.empty()) {
    Flush(to);
    return;
  }
  if (to.tls) {
    while (Chunk* chunk = to.staged.Pop()) {
      TlsSession::Status status = to.tls->Write(chunk->head(), chunk->size());
      pool_->Give(chunk);
      if (status != TlsSession::Status::kOk) {
        worker_->LogConnection(*this, "TLS write failed", to.tls->error());
        BeginClose(CloseReason::kTlsError);
        return;
      }
    }
  } else {
    to.staged.MoveAllTo(to.outgoing);
  }
  Flush(to);
}

// GatherWrite points `bufs` at the first chunks of `queue` and returns how many.
static int GatherWrite(const ChunkQueue& queue, uv_buf_t (&bufs)[kMaxWriteBuffers],
                       size_t* total) {
  int count = 0;
  *total = 0;
  for (const Chunk* c = queue.front(); c != nullptr && count < kMaxWriteBuffers; c = c->next) {
    bufs[count++] = uv_buf_init(reinterpret_cast<char*>(const_cast<uint8_t*>(c->head())),
                                static_cast<unsigned>(c->size()));
    *total += c->size();
  }
  return count;
}

void Connection::Flush(Endpoint& side) {
  if (side.writing || !side.connected || side.outgoing.empty() || state_ == State::kClosing) {
    return;
  }
  uv_buf_t bufs[kMaxWriteBuffers];
  size_t total = 0;
  bool wrote = false;
  // Write directly while the socket takes everything: no request, no callback, and no
  // POLLOUT toggling (libuv 1.44 re-arms epoll after every queued write it completes).
  // A rejection's last words go through uv_write so its completion closes the connection.
  while (!closing_after_flush_ && !side.outgoing.empty()) {
    int count = GatherWrite(side.outgoing, bufs, &total);
    int written = uv_try_write(side.socket.stream(), bufs, count);
    if (written == UV_EAGAIN) {
      break;
    }
    if (written < 0) {
      OnSocketError(side, written);
      return;
    }
    wrote = true;
    side.outgoing.Consume(static_cast<size_t>(written));
    if (static_cast<size_t>(written) < total) {
      break;  // the socket is full: queue the rest
    }
  }
  if (!side.outgoing.empty()) {
    int count = GatherWrite(side.outgoing, bufs, &total);
    for (int i = 0; i < count; ++i) {
      side.in_flight.Push(side.outgoing.Pop());
    }
    side.write_req.data = &side;
    if (int rc =
            uv_write(&side.write_req, side.socket.stream(), bufs, count, &Connection::OnWrite);
        rc != 0) {
      side.in_flight.Clear();
      OnSocketError(side, rc);
      return;
    }
    side.writing = true;
  }
  if (wrote) {
    // The queue shrank without a write callback to say so: a source paused on it may go on.
    MaybeResume(Other(side));
  }
}

void Connection::OnWrite(uv_write_t* req, int status) {
  auto* side = static_cast<Endpoint*>(req->data);
  Connection* self = side->owner;
  side->writing = false;
  side->in_flight.Clear();
  if (status == UV_ECANCELED || self->state_ == State::kClosing) {
    return;
  }
  if (status != 0) {
    self->OnSocketError(*side, status);
    return;
  }
  self->Flush(*side);
  if (self->closing_after_flush_ && !self->WritesPending()) {
    self->BeginClose(self->close_after_flush_);
    return;
  }
  self->MaybeResume(self->Other(*side));
  self->MaybeShutdown(*side);
}

void Connection::MaybeResume(Endpoint& source) {
  if (!source.paused || Other(source).queued() > kLowWater || state_ == State::kClosing) {
    return;
  }
  source.paused = false;
  if (source.tls && (source.tls->buffered_ciphertext() > 0 || SSL_pending(source.tls->ssl()))) {
    PumpTls(source);
    if (source.paused || state_ == State::kClosing) {
      return;
    }
  }
  StartReading(source);
}

void Connection::OnFinishedSending(Endpoint& from) {
  from.finished_sending = true;
  if (IsDownstream(from) && rejecting_) {
    BeginClose(reject_reason_);
    return;
  }
  MaybeShutdown(Other(from));
  UpdateHalfClosed();
}

void Connection::MaybeShutdown(Endpoint& side) {
  // Pass the FIN on once everything the other side sent has been written here.
  const Endpoint& source = Other(side);
  if (!source.finished_sending || side.shutdown_started || !side.ready() ||
      !side.staged.empty() || state_ == State::kClosing) {
    return;
  }
  if (side.tls && !side.close_notify_sent) {
    side.close_notify_sent = true;
    side.tls->SendCloseNotify();
    Flush(side);
  }
  if (side.writing || !side.outgoing.empty()) {
    return;  // OnWrite calls us again
  }
  side.shutdown_req.data = &side;
  if (int rc = uv_shutdown(&side.shutdown_req, side.socket.stream(), &Connection::OnShutdown);
      rc != 0) {
    OnSocketError(side, rc);
    return;
  }
  side.shutdown_started = true;
}

void Connection::OnShutdown(uv_shutdown_t* req, int status) {
  auto* side = static_cast<Endpoint*>(req->data);
  Connection* self = side->owner;
  if (status == UV_ECANCELED || self->state_ == State::kClosing) {
    return;
  }
  side->shutdown_done = true;
  if (status != 0) {
    self->OnSocketError(*side, status);
    return;
  }
  self->UpdateHalfClosed();
}

void Connection::UpdateHalfClosed() {
  if (state_ == State::kClosing) {
    return;
  }
  bool c2s_done = downstream_.finished_sending && upstream_.shutdown_done;
  bool s2c_done = upstream_.finished_sending && downstream_.shutdown_done;
  if (c2s_done && s2c_done) {
    BeginClose(CloseReason::kFinished);
  } else if (downstream_.finished_sending || upstream_.finished_sending) {
    if (state_ == State::kProxying) {
      state_ = State::kHalfClosed;
    }
  }
}

void Connection::OnSocketError(Endpoint& side, int code) {
  if (state_ == State::kSniffing) {
    BeginClose(CloseReason::kSniffError);
    return;
  }
  BeginClose(IsDownstream(side) ? CloseReason::kDownstreamError : CloseReason::kUpstreamError);
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
  if (in_flight_.lost() && !closing_after_flush_) {
    // Bytes that are not MongoDB framing have no boundary to wait for: the deadline is it.
    BeginClose(CloseReason::kShutdown);
    return;
  }
  MaybeFinishDrain();
}

void Connection::MaybeFinishDrain() {
  if (drain_ == Drain::kNone || state_ == State::kClosing || closing_after_flush_) {
    return;
  }
  if (rejecting_) {
    // Refused already and waiting only to say why: nothing of it reaches mongod.
    BeginClose(reject_reason_);
    return;
  }
  // While sniffing, the bytes of a first message may be here but not yet in the tracker.
  bool sniffing = state_ == State::kSniffing;
  if (drain_ == Drain::kUntilIdle && (sniffing ? sniff_size_ == 0 : in_flight_.idle())) {
    // A clean end between requests, as mongod's own shutdown: not a rejection.
    CloseWhenFlushed(CloseReason::kFinished);
  } else if (drain_ == Drain::kUntilBoundary &&
             (sniffing ? sniff_size_ == 0 : in_flight_.at_boundary())) {
    CloseWhenFlushed(CloseReason::kShutdown);
  }
}

void Connection::CloseWhenFlushed(CloseReason reason) {
  closing_after_flush_ = true;
  close_after_flush_ = reason;
  for (Endpoint* side : {&downstream_, &upstream_}) {
    if (side->reading) {
      uv_read_stop(side->socket.stream());
      side->reading = false;
    }
    // close_notify tells a TLS peer that the end is deliberate and nothing was cut off
    // (RFC 8446 §6.1); only a finished handshake has a session to close.
    if (side->tls && side->connected && side->tls->handshake_done() && !side->close_notify_sent) {
      side->close_notify_sent = true;
      side->tls->SendCloseNotify();
    }
    Flush(*side);
    if (state_ == State::kClosing) {
      return;  // a write failed
    }
  }
  if (!WritesPending()) {
    BeginClose(reason);
  }
}

bool Connection::WritesPending() const {
  for (const Endpoint* side : {&downstream_, &upstream_}) {
    if (side->writing || (side->connected && !side->outgoing.empty())) {
      return true;
    }
  }
  return false;
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
  state_ = State::kClosing;
  if (admitted_) {
    worker_->shared().metrics.ConnectionClosed(direction_, transport_);
  }
  worker_->shared().clients.Closed(std::exchange(client_row_, {}));
  worker_->OnConnectionClosing(*this, reason);
  if (resolving_) {
    // Cancelled, its callback still runs (with UV_ECANCELED) and releases the connection.
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  }
  downstream_.socket.Close(&Connection::OnHandleClosed, this);
  upstream_.socket.Close(&Connection::OnHandleClosed, this);
  timer_.Close(&Connection::OnHandleClosed, this);
}

void Connection::OnHandleClosed(void* context) {
  auto* self = static_cast<Connection*>(context);
  if (--self->open_handles_ == 0) {
    self->worker_->Release(self);
  }
}

}  // namespace sidecar::proxy
