// IngressPolicy: a client dialed our public port. Sniff the first bytes, admit or refuse by
// the mode, shake hands in parallel with dialing mongod, identify the client from its first
// request, and answer that request when the connection is refused (SPEC §2, §3).
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/proxy_header.h"
#include "proxy/base/socket_address.h"
#include "proxy/net/connection_policy.h"
#include "proxy/observe/log.h"
#include "proxy/ocsp/handshake_resume.h"

namespace sidecar::proxy {

using State = Connection::State;

IngressPolicy::IngressPolicy(Connection& connection)
    : c_(connection), first_(std::make_unique<FirstContact>(connection.context_.pool)) {}

void IngressPolicy::Start() {
  c_.ArmTimer(c_.context_.limits.sniff_timeout_ms, CloseReason::kSniffTimeout);
  c_.downstream_.StartReading();
}

bool IngressPolicy::OnClientBytes(ChunkQueue& plaintext) {
  if (c_.state_ == State::kSniffing) {
    OnSniffBytes(plaintext);
    c_.MaybeFinishDrain();
    return false;
  }
  if (!Inspected()) {
    Inspect(plaintext);
  }
  if (c_.state_ == State::kRejecting) {
    // Nothing reaches the server of a refused connection; the copy above is enough to
    // answer the client.
    plaintext.Clear();
    MaybeAnswerRefusal();
    return false;
  }
  return true;
}

void IngressPolicy::OnSniffBytes(ChunkQueue& bytes) {
  protocol::SniffVerdict verdict = protocol::SniffVerdict::kNeedMore;
  for (const Chunk* c = bytes.front(); c != nullptr; c = c->next) {
    verdict = first_->bytes.Add(absl::MakeConstSpan(c->head(), c->size()));
  }
  bytes.MoveAllTo(first_->sniffed);  // kept until we know where the bytes go
  if (verdict == protocol::SniffVerdict::kNeedMore) {
    return;
  }
  c_.mode_ = c_.context_.mode->load(std::memory_order_acquire);
  Admission admission = DecideAdmission(verdict, first_->bytes.bytes(), c_.mode_, [this] {
    c_.tls_snapshot_ = c_.context_.tls->load();
    return c_.tls_snapshot_ && c_.tls_snapshot_->server_context() != nullptr;
  });
  switch (admission.action) {
    case Admission::Action::kHandshake:
      StartHandshake();
      return;
    case Admission::Action::kAdmit: {
      uv_timer_stop(c_.timer_.get());
      Admit(Transport::kPlaintext);
      c_.ConnectUpstream(reinterpret_cast<const sockaddr*>(c_.context_.upstream_address));
      // Handed on from a queue of our own: inspecting them may release first_.
      ChunkQueue sniffed(c_.context_.pool);
      first_->sniffed.MoveAllTo(sniffed);
      c_.OnReceived(c_.downstream_, sniffed);
      return;
    }
    case Admission::Action::kRefuseRequest:
      Refuse(admission.reason);
      return;
    case Admission::Action::kAnswerAndClose:
      AnswerAndClose(admission.reason, admission.answer);
      return;
    case Admission::Action::kClose:
      c_.BeginClose(admission.reason);
      return;
  }
}

void IngressPolicy::StartHandshake() {
  auto session = TlsSession::Create(c_.tls_snapshot_->server_context(), TlsSession::Role::kServer,
                                    c_.context_.pool, c_.downstream_.ciphertext_out());
  if (!session.ok()) {
    c_.Log("TLS session could not be created", std::string(session.status().message()));
    c_.BeginClose(CloseReason::kHandshakeFailed);
    return;
  }
  c_.Enter(State::kHandshaking, "TLS ClientHello, the mode serves TLS");
  c_.transport_ = Transport::kTls;
  c_.handshake_started_ = std::chrono::steady_clock::now();
  c_.ArmTimer(c_.context_.limits.handshake_timeout_ms, CloseReason::kHandshakeTimeout);
  // In parallel with the handshake.
  c_.ConnectUpstream(reinterpret_cast<const sockaddr*>(c_.context_.upstream_address));
  // The sniffed bytes are the start of the ClientHello: nothing is lost.
  c_.downstream_.StartTls(*std::move(session), first_->sniffed);
  c_.downstream_.Pump();
}

void IngressPolicy::Admit(Transport transport) {
  c_.admitted_ = true;
  c_.Enter(State::kProxying, transport == Transport::kTls ? "TLS handshake done"
                                                          : "MongoDB, the mode serves plaintext");
  c_.context_.metrics->ConnectionOpened(Direction::kIngress, transport);
  if (int version = c_.context_.limits.upstream_proxy_protocol; version != 0) {
    // The header must be the first bytes mongod reads; nothing is staged before admission.
    protocol::ProxyHeaderInfo info;
    info.source = ToIpEndpoint(PeerSockaddr(c_.downstream_.socket()));
    info.destination = ToIpEndpoint(LocalSockaddr(c_.downstream_.socket()));
    if (const TlsSession* tls = c_.downstream_.tls()) {
      info.tls = true;
      info.tls_version = std::string(tls->version());
      info.cipher = std::string(tls->cipher());
      info.sni = std::string(tls->server_name());
      info.resumed = tls->resumed();
      bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(tls->ssl()));  // get1
      info.client_certificate = peer != nullptr;
      info.client_certificate_verified = !c_.client_subject_.empty();  // only verified ones
    }
    std::vector<uint8_t> header = protocol::BuildProxyHeader(version, info);
    c_.upstream_.Stage(header.data(), header.size());
  }
}

void IngressPolicy::Refuse(CloseReason reason) {
  // Wait (under the sniff timer) for the whole first request so the client can be told why.
  c_.transport_ = Transport::kPlaintext;
  c_.Enter(State::kRejecting, CloseReasonName(reason), reason);
  c_.ArmTimer(c_.context_.limits.sniff_timeout_ms, reason);
  Inspect(first_->sniffed);
  first_->sniffed.Clear();
  MaybeAnswerRefusal();
}

void IngressPolicy::AnswerAndClose(CloseReason reason, std::string_view answer) {
  first_->sniffed.Clear();
  c_.Enter(State::kClosingAfterFlush, CloseReasonName(reason), reason);
  c_.downstream_.WriteNow(reinterpret_cast<const uint8_t*>(answer.data()), answer.size());
}

void IngressPolicy::OnUpstreamUnavailable() {
  c_.upstream_.DropStaged();
  c_.Log("upstream unavailable", c_.upstream_error_);
  if (c_.state_ != State::kClosingAfterFlush) {
    c_.Enter(State::kRejecting, "upstream unavailable", CloseReason::kUpstreamUnavailable);
  }
  // The client is told once its first request is here (after the handshake for TLS), under
  // the sniff timer.
  c_.ArmTimer(c_.context_.limits.sniff_timeout_ms, CloseReason::kUpstreamUnavailable);
  MaybeAnswerRefusal();
}

void IngressPolicy::MaybeAnswerRefusal() {
  // In kRejecting the first contact is still held: a refusal is possible only before it goes.
  if (c_.state_ != State::kRejecting || first_ == nullptr || !first_->request.inspected()) {
    return;
  }
  CloseReason reason = c_.reason_;
  std::vector<uint8_t> reply = first_->request.Refusal(reason, c_.upstream_error_);
  c_.Enter(State::kClosingAfterFlush, "first request answered", reason);
  Endpoint& down = c_.downstream_;
  if (!reply.empty()) {
    down.WriteNow(reply.data(), reply.size());
  } else {
    down.Flush();
  }
  if (!down.writes_pending()) {
    c_.BeginClose(reason);
  }
}

void IngressPolicy::OnHandshakeDone(Endpoint& side) {
  const TlsSession& tls = *side.tls();
  c_.client_subject_ = certs::VerifiedPeerSubject(tls.ssl());
  std::string_view sni = tls.server_name();
  c_.context_.metrics->Sni(sni.empty() ? SniMatch::kNone
                           : c_.tls_snapshot_->MatchesServerName(std::string(sni))
                               ? SniMatch::kCertificate
                               : SniMatch::kOther);
  // Refused while shaking hands (mongod unreachable), the refusal waits for the first request.
  if (c_.state_ == State::kHandshaking) {
    Admit(Transport::kTls);
  }
}

void IngressPolicy::OnHandshakeFailed(Endpoint& side) {
  std::string detail = side.tls_error();
  if (absl::StrContains(detail, "PEER_DID_NOT_RETURN_A_CERTIFICATE")) {
    // The most common refusal after a CA file is set; say what to do about it.
    absl::StrAppend(&detail,
                    ": the client presented no certificate, which is required with "
                    "net.tls.CAFile unless net.tls.allowConnectionsWithoutCertificates "
                    "is true (as mongod)");
  }
  c_.Log("TLS handshake failed", detail);
  c_.BeginClose(OcspCloseReason(side.tls()->ssl(), CloseReason::kHandshakeFailed));
}

void IngressPolicy::Inspect(const ChunkQueue& plaintext) {
  FirstRequest& first_request = first_->request;
  for (const Chunk* c = plaintext.front(); c != nullptr; c = c->next) {
    if (!first_request.Add(absl::MakeConstSpan(c->head(), c->size()))) {
      continue;
    }
    if (first_request.identified()) {
      c_.metadata_ = first_request.TakeMetadata();
      const protocol::HelloMetadata& hello = c_.metadata_;
      if (c_.admitted_) {
        c_.client_row_ =
            c_.context_.clients->Opened(c_.peer_address_, c_.transport_, hello.application,
                                        hello.driver, hello.internal_client, c_.client_subject_);
        if (c_.transport_ == Transport::kPlaintext) {
          c_.context_.metrics->PlaintextClient(hello.application, hello.driver,
                                               hello.internal_client);
        }
      }
    } else {
      static LogRateLimiter limiter(5);
      limiter.Log(Severity::kInfo, Component::kNetwork,
                  "first request not decoded; forwarding it untouched",
                  {{"remote", c_.peer_address_}, {"why", first_request.undecodable()}});
    }
    MaybeReleaseFirstContact();
    return;
  }
}

bool IngressPolicy::OnUpstreamConnected() {
  MaybeReleaseFirstContact();
  return true;
}

void IngressPolicy::MaybeReleaseFirstContact() {
  // A refusal answers the first request: plaintext in requireTLS (decided while sniffing,
  // before any dial) or the upstream unreachable (only until it is connected). Past both,
  // and with the client's identity read, nothing here is needed any more.
  if (first_ != nullptr && first_->request.inspected() && c_.upstream_.connected()) {
    first_.reset();
  }
}

}  // namespace sidecar::proxy
