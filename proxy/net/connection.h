// Connection joins two endpoints: `downstream_`, the side that connected to us (a MongoDB
// client for ingress, the local mongod for egress), and `upstream_`, the side we dial (the
// local mongod for ingress, a peer for egress). Either side may speak TLS; the Endpoint hides
// which, and bytes cross the connection as plaintext. Connection is the policy only: which
// state it is in, what it admits, what it answers, when it closes. What differs between
// ingress and egress is in its Policy (IngressPolicy, EgressPolicy: connection_policy.h).
// One loop owns a connection; it is created, driven and freed on that loop, and it reaches
// the world only through its ConnectionContext.
//
// Every change of state goes through Enter(), which checks it against kTransitions
// (connection_state.h). The arrows below are that table, one per line; a unit test reads
// them from this file and compares both ways.
//
//   ingress
//   kSniffing ──TLS, the mode serves it───────────────▶ kHandshaking
//   kSniffing ──MongoDB, the mode serves it───────────▶ kProxying
//   kSniffing ──plaintext in requireTLS───────────────▶ kRejecting
//   kSniffing ──TLS in disabled or no certificate, HTTP: answered──▶ kClosingAfterFlush
//   kSniffing ──EOF, timeout, garbage, socket error───▶ kClosing
//   kHandshaking ──upstream connect failed────────────▶ kRejecting
//   kProxying ──upstream connect failed───────────────▶ kRejecting
//   kHalfClosed ──upstream connect failed─────────────▶ kRejecting
//   kRejecting ──first request answered───────────────▶ kClosingAfterFlush
//   kRejecting ──timeout, EOF, drain, error───────────▶ kClosing
//   egress
//   kConnecting ──connected, plaintext mode───────────▶ kProxying
//   kConnecting ──connected, TLS mode─────────────────▶ kHandshaking
//   kConnecting ──peer unavailable────────────────────▶ kClosing
//   both
//   kHandshaking ──done───────────────────────────────▶ kProxying
//   kHandshaking ──failure, timeout───────────────────▶ kClosing
//   kProxying ──one side finished sending─────────────▶ kHalfClosed
//   kProxying ──socket or TLS error, shutdown─────────▶ kClosing
//   kHalfClosed ──the other side finished too, error──▶ kClosing
//   kConnecting, kHandshaking, kProxying, kHalfClosed ──SIGTERM drain──▶ kClosingAfterFlush
//   kSniffing ──SIGTERM drain, nothing read yet───────▶ kClosingAfterFlush
//   kClosingAfterFlush ──every queued byte written────▶ kClosing
//
// Refused without an answer (an EOF, a garbage header) is kClosing at once. kRejecting and
// kClosingAfterFlush carry their reason (reason()): the refusal that the first request will
// be answered with, the reason to close with once the queues are written.
//
// SIGTERM (SPEC §10; Worker::DrainConnections, then OnDrainDeadline): a connection idle
// between requests closes at once; one with a request in flight closes as soon as the last
// byte of its reply has been passed on. Whether a request is in flight comes from following
// the MongoDB framing of the plaintext both ways (protocol::InFlightTracker: length prefixes
// only, on the decrypted bytes for TLS). Closing at a boundary reads nothing more, writes
// what is already queued on both sides, sends close_notify on TLS sides, then closes.
// When limits.drainSeconds is over, a connection between messages closes at once (its
// request gets no more time); one in the middle of a message closes at the end of that
// message; the server cuts whatever is still open kDrainBoundaryGraceMs (server.cc) later,
// so a peer that stalls mid-message cannot hold the exit. A connection whose framing could
// not be followed (bytes that are not MongoDB messages after admission) has no known
// boundary: it waits for the deadline and is cut then.
//
// Closing has two phases: BeginClose stops reads and timers and closes every handle; the
// connection is freed (ConnectionContext::on_closed) only after the last close callback
// (libuv runs pending write and shutdown callbacks, with UV_ECANCELED, before that), never
// from inside a callback of its own that is still running.
#ifndef SIDECAR_PROXY_NET_CONNECTION_H_
#define SIDECAR_PROXY_NET_CONNECTION_H_

#include <uv.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "certs/tls_snapshot.h"
#include "protocol/hello.h"
#include "protocol/message_stream.h"
#include "proxy/base/close_reason.h"
#include "proxy/base/mode.h"
#include "proxy/base/uv_handle.h"
#include "proxy/base/vocabulary.h"
#include "proxy/net/chunk.h"
#include "proxy/net/connection_context.h"
#include "proxy/net/connection_state.h"
#include "proxy/net/endpoint.h"
#include "proxy/net/shared_state.h"
#include "proxy/observe/client_registry.h"

namespace sidecar::proxy {

class Connection : private Endpoint::Events {
 public:
  using State = ConnectionState;
  class Policy;

  // StartIngress takes a client socket just accepted on `context`'s loop and begins sniffing.
  // The caller owns the connection; it must keep it until context.on_closed names it.
  static std::unique_ptr<Connection> StartIngress(const ConnectionContext& context, uint64_t id,
                                                  UvHandle<uv_tcp_t> client);

  // StartEgress takes a connection from the local mongod accepted on an egress listener
  // and dials `route`'s peer, with TLS when the mode says so.
  static std::unique_ptr<Connection> StartEgress(const ConnectionContext& context, uint64_t id,
                                                 UvHandle<uv_tcp_t> local,
                                                 const EgressRoute& route);

  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // BeginClose ends the connection now (counted under `reason` when it is a rejection).
  void BeginClose(CloseReason reason);

  // StartDrain begins the SIGTERM drain (see the top of this file): closes the connection
  // now when no request is in flight, else once its reply has been passed on. Loop only.
  void StartDrain();
  // OnDrainDeadline: limits.drainSeconds is over. Closes now when between messages (counted
  // as shutdown), else at the end of the current message; cuts now without known framing.
  void OnDrainDeadline();
  // closing: BeginClose ran, or the connection closes once what it holds is written.
  bool closing() const { return state_ == State::kClosing || state_ == State::kClosingAfterFlush; }

  // id: unique within its worker's process lifetime, increasing (worker index in the top
  // 16 bits, then the worker's sequence).
  uint64_t id() const { return id_; }
  State state() const { return state_; }
  // reason: in kRejecting the refusal pending, in kClosingAfterFlush and kClosing why it ends.
  CloseReason reason() const { return reason_; }
  Transport transport() const { return transport_; }
  Direction direction() const { return direction_; }
  bool admitted() const { return admitted_; }
  const std::string& peer_address() const { return peer_address_; }
  const protocol::HelloMetadata& metadata() const { return metadata_; }
  // client_subject is the RFC 4514 subject of the client certificate that verified at the
  // end of the ingress TLS handshake; "" for plaintext, no certificate, or one accepted only
  // through allowInvalidCertificates (certs::VerifiedPeerSubject).
  const std::string& client_subject() const { return client_subject_; }
  // The peer an egress connection dials, "address (host)"; "" for ingress.
  std::string egress_target() const;

 private:
  friend class IngressPolicy;
  friend class EgressPolicy;

  Connection(const ConnectionContext& context, uint64_t id, Direction direction, State initial,
             UvHandle<uv_tcp_t> downstream);
  // Enter is the one place the state changes: `why` goes to the debug log.
  void Enter(State to, std::string_view why);
  void Enter(State to, std::string_view why, CloseReason reason);
  bool IsDownstream(const Endpoint& side) const { return &side == &downstream_; }
  Endpoint& Other(const Endpoint& side) { return IsDownstream(side) ? upstream_ : downstream_; }

  // Admission and refusal.
  void Admit(Transport transport);
  void Refuse(CloseReason reason, std::string_view why);
  void AnswerAndClose(CloseReason reason, std::string_view answer);
  void MaybeAnswerRefusal();

  // Upstream.
  void ConnectUpstream(const sockaddr* address);
  static void OnUpstreamConnected(uv_connect_t* req, int status);
  void OnUpstreamUnavailable(std::string reason);

  // Endpoint::Events.
  void OnReceived(Endpoint& from, ChunkQueue& plaintext) override;
  void OnFinishedSending(Endpoint& from) override;
  void OnHandshakeDone(Endpoint& side) override;
  void OnHandshakeFailed(Endpoint& side) override;
  void OnTlsError(Endpoint& side, std::string_view what) override;
  void OnSocketError(Endpoint& side, int uv_error) override;
  void OnSent(Endpoint& side) override;
  void OnWriteDone(Endpoint& side) override;
  void OnShutdownDone(Endpoint& side) override;
  size_t Room(const Endpoint& from) const override;

  // Data path.
  void Forward(Endpoint& from, ChunkQueue& plaintext);
  void MaybeShutdown(Endpoint& side);
  void MaybeResume(Endpoint& source);
  void UpdateHalfClosed();

  // SIGTERM drain.
  void MaybeFinishDrain();
  // CloseWhenFlushed stops reading both sides, sends close_notify on TLS sides, and closes
  // (as `reason`) once every queued byte is written.
  void CloseWhenFlushed(CloseReason reason, std::string_view why);
  bool WritesPending() const;

  // Timers.
  void ArmTimer(int64_t timeout_ms, CloseReason reason);
  static void OnTimer(uv_timer_t* timer);
  static void OnHandleClosed(void* context);

  // Logging, rate-limited (a flood cannot fill a disk, SPEC §9).
  void Log(std::string_view what, std::string_view detail) const;

  const ConnectionContext& context_;
  const uint64_t id_;
  std::unique_ptr<Policy> policy_;
  // The one-byte members together (a connection is held per client, idle ones by the
  // thousand: no padding between them).
  const Direction direction_;
  State state_;
  CloseReason reason_ = CloseReason::kFinished;
  CloseReason timer_reason_ = CloseReason::kSniffTimeout;
  Transport transport_ = Transport::kPlaintext;
  bool admitted_ = false;  // counted in connections_active
  // The SIGTERM drain: kUntilIdle closes when no request is in flight, kUntilBoundary (past
  // the deadline) at the next message boundary.
  enum class Drain : uint8_t { kNone, kUntilIdle, kUntilBoundary };
  Drain drain_ = Drain::kNone;
  Mode mode_ = Mode::kDisabled;  // the mode when this connection was sniffed or accepted
  int open_handles_ = 0;
  protocol::InFlightTracker in_flight_;  // requests from downstream_, replies from upstream_

  Endpoint downstream_;
  Endpoint upstream_;
  UvHandle<uv_timer_t> timer_;
  std::unique_ptr<uv_connect_t> connect_req_;  // only while dialing the upstream
  std::shared_ptr<const certs::TlsSnapshot> tls_snapshot_;
  std::chrono::steady_clock::time_point handshake_started_;

  protocol::HelloMetadata metadata_;
  ClientRegistry::Handle client_row_;
  // The most bytes queued so far towards upstream [0] and towards the client [1].
  std::array<size_t, 2> queued_peak_{};
  std::string upstream_error_;  // why the upstream could not be reached, for the answer
  std::string peer_address_;
  std::string client_subject_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_CONNECTION_H_
