// EgressPolicy: the local mongod dialed a peer through us. The mode at accept decides what
// travels (SPEC §2): TLS to the peer when the mode says so, never a fallback to plaintext.
// mongod may speak first; its bytes wait, staged, until the peer is connected and secure.
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proxy/base/concat.h"
#include "proxy/base/socket_address.h"
#include "proxy/net/connection_policy.h"
#include "proxy/ocsp/handshake_resume.h"

namespace sidecar::proxy {

using State = Connection::State;

EgressPolicy::EgressPolicy(Connection& connection, const EgressRoute& route)
    : c_(connection), route_(route) {}

void EgressPolicy::Start() {
  if (route_.transparent) {
    auto original = OriginalDestination(c_.downstream_.socket());
    if (!original.ok()) {
      c_.Log("transparent egress without an original destination",
             std::string(original.status().message()));
      c_.BeginClose(CloseReason::kEgressPeerUnavailable);
      return;
    }
    address_ = *original;
    host_ = AddressWithoutPort(FormatAddress(*original));
  } else {
    host_ = route_.target.host;
  }
  c_.mode_ = c_.context_.mode->load(std::memory_order_acquire);
  c_.transport_ = EgressUsesTls(c_.mode_) ? Transport::kTls : Transport::kPlaintext;
  c_.admitted_ = true;
  c_.context_.metrics->ConnectionOpened(Direction::kEgress, c_.transport_);
  c_.downstream_.StartReading();
  if (route_.transparent) {
    c_.ConnectUpstream(reinterpret_cast<const sockaddr*>(&address_));
  } else if (route_.target_address) {
    address_ = *route_.target_address;
    c_.ConnectUpstream(reinterpret_cast<const sockaddr*>(&address_));
  } else {
    Resolve(route_.target);
  }
}

void EgressPolicy::Resolve(const HostPort& target) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  resolve_req_.data = this;
  std::string port = std::to_string(target.port);
  if (int rc = uv_getaddrinfo(c_.context_.loop, &resolve_req_, &EgressPolicy::OnResolved,
                              target.host.c_str(), port.c_str(), &hints);
      rc != 0) {
    c_.OnUpstreamUnavailable(Concat("cannot resolve ", target.host, ": ", uv_strerror(rc)));
    return;
  }
  // The request counts like a handle: the connection is not freed before its callback.
  ++c_.open_handles_;
  resolving_ = true;
}

void EgressPolicy::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
  auto* self = static_cast<EgressPolicy*>(req->data);
  Connection& c = self->c_;
  self->resolving_ = false;
  if (status == 0 && result != nullptr && c.state_ != State::kClosing) {
    std::memcpy(&self->address_, result->ai_addr, result->ai_addrlen);
  }
  uv_freeaddrinfo(result);
  if (c.state_ != State::kClosing) {
    if (status != 0) {
      c.OnUpstreamUnavailable(Concat("cannot resolve ", self->host_, ": ", uv_strerror(status)));
    } else {
      c.ConnectUpstream(reinterpret_cast<const sockaddr*>(&self->address_));
    }
  }
  Connection::OnHandleClosed(&c);  // the request is done; frees the connection if last
}

void EgressPolicy::OnClosing() {
  if (resolving_) {
    // Cancelled, its callback still runs (with UV_ECANCELED) and releases the connection.
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  }
}

bool EgressPolicy::OnUpstreamConnected() {
  if (c_.state_ != State::kConnecting) {
    // Draining already: nothing is sent to the peer, least of all without its TLS.
    return false;
  }
  if (c_.transport_ == Transport::kTls) {
    return StartTls();
  }
  c_.Enter(State::kProxying, "connected, plaintext mode");
  return true;
}

bool EgressPolicy::StartTls() {
  c_.tls_snapshot_ = c_.context_.tls->load();
  SSL_CTX* context = c_.tls_snapshot_ ? c_.tls_snapshot_->client_context() : nullptr;
  if (context == nullptr) {
    c_.Log("egress TLS impossible: no cluster certificate or CA loaded", Target());
    c_.BeginClose(CloseReason::kEgressHandshakeFailed);
    return false;
  }
  auto session = TlsSession::Create(context, TlsSession::Role::kClient, c_.context_.pool,
                                    c_.upstream_.ciphertext_out());
  if (!session.ok()) {
    c_.BeginClose(CloseReason::kEgressHandshakeFailed);
    return false;
  }
  if (absl::Status status = c_.tls_snapshot_->PrepareEgressSession((*session)->ssl(), host_);
      !status.ok()) {
    c_.Log("egress TLS setup failed", std::string(status.message()));
    c_.BeginClose(CloseReason::kEgressHandshakeFailed);
    return false;
  }
  ChunkQueue nothing(c_.context_.pool);
  c_.upstream_.StartTls(*std::move(session), nothing);
  c_.Enter(State::kHandshaking, "connected, TLS mode");
  c_.handshake_started_ = std::chrono::steady_clock::now();
  c_.ArmTimer(c_.context_.limits.handshake_timeout_ms, CloseReason::kHandshakeTimeout);
  return true;
}

void EgressPolicy::OnUpstreamUnavailable() {
  // mongod's own connection attempt fails the way a refused peer would; it retries.
  c_.Log("egress peer unavailable", absl::StrCat(Target(), ": ", c_.upstream_error_));
  c_.BeginClose(CloseReason::kEgressPeerUnavailable);
}

void EgressPolicy::OnHandshakeDone(Endpoint& side) {
  if (c_.state_ == State::kHandshaking) {
    c_.Enter(State::kProxying, "TLS handshake with the peer done");
  }
  side.Advance();          // what mongod sent while we shook hands
  c_.MaybeShutdown(side);  // mongod may have finished already
}

void EgressPolicy::OnHandshakeFailed(Endpoint& side) {
  // No fallback to plaintext, exactly as mongod.
  c_.Log("egress TLS handshake with peer failed", absl::StrCat(Target(), ": ", side.tls_error()));
  c_.BeginClose(OcspCloseReason(side.tls()->ssl(), CloseReason::kEgressHandshakeFailed));
}

std::string EgressPolicy::Target() const {
  return FormatAddress(address_) + (host_.empty() ? "" : " (" + host_ + ")");
}

}  // namespace sidecar::proxy
