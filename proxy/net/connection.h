// Connection joins two sockets: `downstream_`, the side that connected to us (a MongoDB
// client for ingress), and `upstream_`, the side we dial (the local mongod for ingress).
// Either side may speak TLS through a TlsSession; bytes always cross the connection as
// plaintext. One loop owns a connection; it is created, driven and freed on that loop.
//
// Egress connections (the local mongod dialing a peer through us) start in kConnecting:
//
//   kConnecting ──connected, plaintext mode──▶ kProxying
//   kConnecting ──connected, TLS mode────────▶ kHandshaking ──done──▶ kProxying
//   kConnecting, kHandshaking ──failure───────▶ kClosing (no fallback to plaintext)
//
// States (ingress):
//
//   kSniffing ──TLS, mode allows──────────▶ kHandshaking ──done──▶ kProxying
//   kSniffing ──MongoDB, mode allows──────▶ kProxying
//   kSniffing ──plaintext in requireTLS───▶ kRejecting  (answer the first request, close)
//   kSniffing ──TLS in disabled, HTTP─────▶ kRejecting  (alert / HTTP answer, close)
//   kSniffing ──EOF, timeout, garbage─────▶ kClosing
//   kHandshaking ──failure, timeout───────▶ kClosing
//   kHandshaking, kProxying ──upstream connect failed──▶ kRejecting (answer, close)
//   kProxying ──one side finished sending──▶ kHalfClosed ──the other too──▶ kClosing
//   any ──socket error, drain, shutdown───▶ kClosing
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
// connection is freed only after the last close callback (libuv runs pending write and
// shutdown callbacks, with UV_ECANCELED, before that), never from inside a callback of its
// own that is still running.
#ifndef SIDECAR_PROXY_NET_CONNECTION_H_
#define SIDECAR_PROXY_NET_CONNECTION_H_

#include <uv.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "certs/tls_snapshot.h"
#include "protocol/hello.h"
#include "protocol/message_stream.h"
#include "proxy/base/close_reason.h"
#include "proxy/base/mode.h"
#include "proxy/base/uv_handle.h"
#include "proxy/net/chunk.h"
#include "proxy/net/shared_state.h"
#include "proxy/net/tls_session.h"
#include "proxy/observe/client_registry.h"
#include "proxy/observe/metrics.h"

namespace sidecar::proxy {

class Worker;

class Connection {
 public:
  enum class State {
    kSniffing,
    kConnecting,
    kHandshaking,
    kProxying,
    kHalfClosed,
    kRejecting,
    kClosing
  };

  // StartIngress takes a client socket just accepted on `worker`'s loop and begins sniffing.
  // The worker owns the returned connection until it reports itself closed.
  static Connection* StartIngress(Worker* worker, UvHandle<uv_tcp_t> client);

  // StartEgress takes a connection from the local mongod accepted on an egress listener
  // and dials `route`'s peer, with TLS when the mode says so.
  static Connection* StartEgress(Worker* worker, UvHandle<uv_tcp_t> local,
                                 const EgressRoute& route);

  // The peer an egress connection dials, "host:port"; "" for ingress.
  std::string egress_target() const;

  ~Connection();
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
  bool closing() const { return state_ == State::kClosing || closing_after_flush_; }

  State state() const { return state_; }
  Transport transport() const { return transport_; }
  Direction direction() const { return direction_; }
  bool admitted() const { return admitted_; }
  const std::string& peer_address() const { return peer_address_; }
  const protocol::HelloMetadata& metadata() const { return metadata_; }
  bool identified() const { return identified_; }
  // client_subject is the RFC 4514 subject of the client certificate that verified at the
  // end of the ingress TLS handshake; "" for plaintext, no certificate, or one accepted only
  // through allowInvalidCertificates (certs::VerifiedPeerSubject).
  const std::string& client_subject() const { return client_subject_; }

  // Intrusive list of the worker's connections.
  Connection* prev = nullptr;
  Connection* next = nullptr;

 private:
  // One socket with its optional TLS session and the bytes waiting to be written to it.
  struct Endpoint {
    explicit Endpoint(Connection* owner, ChunkPool* pool)
        : owner(owner), staged(pool), outgoing(pool), in_flight(pool) {}

    Connection* owner;
    UvHandle<uv_tcp_t> socket;
    std::unique_ptr<TlsSession> tls;
    ChunkQueue staged;     // plaintext for this side, waiting until it is connected and secure
    ChunkQueue outgoing;   // bytes ready for the socket (ciphertext when tls)
    ChunkQueue in_flight;  // bytes held by the write in progress
    Chunk* read_chunk = nullptr;
    uv_write_t write_req{};
    uv_shutdown_t shutdown_req{};
    bool connected = false;         // the TCP connection is up
    bool reading = false;           // uv_read_start is in effect
    bool paused = false;            // reading stopped because the other side is full
    bool finished_sending = false;  // EOF or close_notify from this side
    bool writing = false;
    bool close_notify_sent = false;
    bool shutdown_started = false;
    bool shutdown_done = false;

    size_t queued() const { return staged.bytes() + outgoing.bytes() + in_flight.bytes(); }
    bool ready() const { return connected && (!tls || tls->handshake_done()); }
  };

  Connection(Worker* worker, UvHandle<uv_tcp_t> client, Direction direction);
  void Begin();

  Endpoint& Other(Endpoint& side) { return &side == &downstream_ ? upstream_ : downstream_; }
  bool IsDownstream(const Endpoint& side) const { return &side == &downstream_; }

  // Sniffing and admission.
  void OnSniffBytes(Chunk* chunk);
  void Admit(Transport transport);
  void RejectPlaintextInRequireTls();
  void RejectWithBytes(CloseReason reason, const uint8_t* data, size_t size);

  // Upstream.
  void ConnectUpstream();
  static void OnUpstreamConnected(uv_connect_t* req, int status);
  void OnUpstreamUnavailable(std::string reason);
  bool StartEgressTls();
  void ResolveEgressTarget(const HostPort& target);
  static void OnEgressResolved(uv_getaddrinfo_t* req, int status, addrinfo* result);
  void MaybeAnswerRejectedRequest();

  // Data path.
  void StartReading(Endpoint& side);
  void OnBytes(Endpoint& from, Chunk* chunk);
  void PumpTls(Endpoint& from);
  void DeliverPlaintext(Endpoint& from, ChunkQueue& plaintext);
  void Inspect(const ChunkQueue& plaintext);
  void Advance(Endpoint& to);
  void Flush(Endpoint& side);
  void OnFinishedSending(Endpoint& from);
  void MaybeShutdown(Endpoint& side);
  void MaybeResume(Endpoint& source);
  void Pause(Endpoint& source);
  void OnHandshakeDone(Endpoint& side);
  void OnSocketError(Endpoint& side, int code);
  void UpdateHalfClosed();

  // SIGTERM drain.
  void MaybeFinishDrain();
  // CloseWhenFlushed stops reading both sides, sends close_notify on TLS sides, and closes
  // (as `reason`) once every queued byte is written.
  void CloseWhenFlushed(CloseReason reason);
  bool WritesPending() const;

  // Timers.
  void ArmTimer(int64_t timeout_ms, CloseReason reason);
  static void OnTimer(uv_timer_t* timer);

  // libuv callbacks.
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnHandleClosed(void* context);

  Worker* worker_;
  ChunkPool* pool_;
  Direction direction_;
  State state_ = State::kSniffing;
  Transport transport_ = Transport::kPlaintext;
  Mode mode_ = Mode::kDisabled;  // the mode when this connection was sniffed
  bool admitted_ = false;        // counted in connections_active
  CloseReason timer_reason_ = CloseReason::kSniffTimeout;
  CloseReason close_after_flush_ = CloseReason::kFinished;
  bool closing_after_flush_ = false;
  int open_handles_ = 0;
  // The SIGTERM drain: kUntilIdle closes when no request is in flight, kUntilBoundary (past
  // the deadline) at the next message boundary.
  enum class Drain { kNone, kUntilIdle, kUntilBoundary };
  Drain drain_ = Drain::kNone;
  protocol::InFlightTracker in_flight_;  // requests from downstream_, replies from upstream_

  Endpoint downstream_;
  Endpoint upstream_;
  UvHandle<uv_timer_t> timer_;
  uv_connect_t connect_req_{};
  // Egress only: whom we dial and the name their certificate must carry (a DNS name, or
  // an IP literal for transparent egress).
  std::string egress_host_;
  sockaddr_storage egress_address_{};
  uv_getaddrinfo_t resolve_req_{};
  bool resolving_ = false;
  std::shared_ptr<const certs::TlsSnapshot> tls_snapshot_;

  // The first bytes, kept until the sniff decides: a copy of the first 16 to classify, and
  // the chunks themselves to hand on whole.
  ChunkQueue sniffed_;
  std::array<uint8_t, 16> sniff_bytes_{};
  size_t sniff_size_ = 0;
  std::chrono::steady_clock::time_point handshake_started_;

  // The first request from the client, copied (bounded) while it is forwarded, for the
  // client's identity and for answering it when the connection is refused.
  std::string first_request_;
  bool inspected_ = false;
  bool identified_ = false;
  protocol::RequestInfo request_;
  // The request id and opcode to answer the first message in, from its header alone: set
  // whenever the header frames as MongoDB, even when the body cannot be decoded.
  std::optional<protocol::RequestInfo> reply_target_;
  protocol::HelloMetadata metadata_;
  ClientRegistry::Handle client_row_;
  // The most bytes queued so far towards upstream [0] and towards the client [1].
  std::array<size_t, 2> queued_peak_{};

  // Set when the connection will be refused once the first request is known.
  bool rejecting_ = false;
  CloseReason reject_reason_ = CloseReason::kUpstreamUnavailable;
  std::string upstream_error_;
  std::string peer_address_;
  std::string client_subject_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_CONNECTION_H_
