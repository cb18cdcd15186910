// Endpoint is one socket of a connection with its optional TlsSession: it reads (into pooled
// chunks), decrypts when the side speaks TLS, queues what is to be written, writes directly
// while the socket takes it and through a write request when it does not, pauses and resumes
// reading, sends close_notify and shuts the socket down. Its owner sees plaintext only and
// hears of what happens through Endpoint::Events; whether the side speaks TLS is this
// type's business alone (h2o's socket layer under its protocol code).
//
// One loop owns an endpoint. Events may be delivered from inside any call that moves bytes
// (Write, Resume, Flush...); after Close() none is. The owner keeps the endpoint alive until
// the socket's close callback has run.
#ifndef SIDECAR_PROXY_NET_ENDPOINT_H_
#define SIDECAR_PROXY_NET_ENDPOINT_H_

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/base/uv_handle.h"
#include "proxy/net/chunk.h"
#include "proxy/net/tls_session.h"

namespace sidecar::proxy {

class Endpoint {
 public:
  // Events is what an endpoint tells its owner. Every call names the endpoint it is about.
  class Events {
   public:
    virtual ~Events() = default;
    // OnReceived: plaintext arrived (decrypted when TLS); the owner takes what it wants
    // from `plaintext`, the rest goes back to the pool.
    virtual void OnReceived(Endpoint& from, ChunkQueue& plaintext) = 0;
    // OnFinishedSending: the peer sent EOF or close_notify; reading stopped.
    virtual void OnFinishedSending(Endpoint& from) = 0;
    virtual void OnHandshakeDone(Endpoint& side) = 0;
    // OnHandshakeFailed: the TLS handshake failed; side.tls_error() says why.
    virtual void OnHandshakeFailed(Endpoint& side) = 0;
    // OnTlsError: a TLS record failed after the handshake; `what` and tls_error() say how.
    virtual void OnTlsError(Endpoint& side, std::string_view what) = 0;
    virtual void OnSocketError(Endpoint& side, int uv_error) = 0;
    // OnSent: the queue shrank without a write callback (a direct write).
    virtual void OnSent(Endpoint& side) = 0;
    // OnWriteDone: a write request completed and what followed it was flushed.
    virtual void OnWriteDone(Endpoint& side) = 0;
    // OnShutdownDone: our FIN went out.
    virtual void OnShutdownDone(Endpoint& side) = 0;
    // Room: how many more plaintext bytes the other side takes before it is full (0: pause).
    virtual size_t Room(const Endpoint& from) const = 0;
  };

  Endpoint(Events* events, ChunkPool* pool);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Adopt takes `socket`, not yet connected (dialing) or already connected.
  void Adopt(UvHandle<uv_tcp_t> socket, bool connected);
  uv_tcp_t* socket() { return socket_.get(); }
  explicit operator bool() const { return static_cast<bool>(socket_); }
  // Connected: the TCP connection is up (keep-alive and no-delay are set here).
  void Connected();
  bool connected() const { return connected_; }

  // StartTls makes the side speak TLS through `session`, which writes into outgoing();
  // `ciphertext` (e.g. the sniffed start of a ClientHello) is fed to it first. A client
  // session sends its ClientHello once the socket is connected.
  void StartTls(std::unique_ptr<TlsSession> session, ChunkQueue& ciphertext);
  // NewSessionQueue is the queue a TLS session for this side must write its ciphertext to.
  ChunkQueue* ciphertext_out() { return &outgoing_; }
  const TlsSession* tls() const { return tls_.get(); }
  TlsSession* tls() { return tls_.get(); }
  // handshaking: a TLS session whose handshake is not finished.
  bool handshaking() const { return tls_ && !tls_->handshake_done(); }
  const std::string& tls_error() const;

  // Reading. StartReading is a no-op while paused, finished, stopped or closed.
  void StartReading();
  void StopReading();
  // Pause stops reading because the other side is full; Resume goes on (first with what
  // the TLS session already holds).
  void Pause();
  void Resume();
  bool paused() const { return paused_; }
  bool finished_sending() const { return finished_sending_; }
  // Pump drives the TLS session: the handshake, then plaintext up to Events::Room.
  void Pump();

  // Writing. Write queues plaintext and sends it once the side is ready (connected and,
  // with TLS, secure). WriteNow sends `data` now, encrypted when TLS (the last words of a
  // refusal, or raw bytes such as an alert before any session exists).
  void Write(ChunkQueue& plaintext);
  void Stage(const uint8_t* data, size_t size);
  void WriteNow(const uint8_t* data, size_t size);
  void DropStaged() { staged_.Clear(); }
  void Flush();
  // Advance sends what is staged once the side is ready.
  void Advance();

  // LastWords: from now on nothing more is read and every write goes through a write
  // request, so that its completion is seen (the owner closes when the queues are empty).
  void LastWords();
  // SendCloseNotify tells a TLS peer the end is deliberate (RFC 8446 §6.1); only a finished
  // handshake has a session to close. No-op for plaintext.
  void SendCloseNotify();
  // ShutdownWhenFlushed passes our FIN on once everything staged has been written (after
  // close_notify for TLS); called again on every write completion until it happens.
  void ShutdownWhenFlushed();
  bool shutdown_done() const { return shutdown_done_; }

  // ready: connected and, with TLS, secure.
  bool ready() const { return connected_ && (!tls_ || tls_->handshake_done()); }
  size_t queued() const { return staged_.bytes() + outgoing_.bytes() + in_flight_.bytes(); }
  bool writes_pending() const { return writing_ || (connected_ && !outgoing_.empty()); }

  // Close closes the socket (no more events); `on_closed(context)` runs once it is closed.
  // Returns false when there was no socket.
  bool Close(void (*on_closed)(void*), void* context);

 private:
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  void OnBytes(Chunk* chunk);
  bool PumpHandshake();
  void Finished();

  Events* events_;
  ChunkPool* pool_;
  UvHandle<uv_tcp_t> socket_;
  std::unique_ptr<TlsSession> tls_;
  ChunkQueue staged_;     // plaintext for this side, waiting until it is connected and secure
  ChunkQueue outgoing_;   // bytes ready for the socket (ciphertext when TLS)
  ChunkQueue in_flight_;  // bytes held by the write in progress
  Chunk* read_chunk_ = nullptr;
  // The requests are made when first needed (a write the socket did not take at once, the
  // FIN), so that an idle endpoint does not carry them; the write request is kept for the
  // next such write.
  std::unique_ptr<uv_write_t> write_req_;
  std::unique_ptr<uv_shutdown_t> shutdown_req_;
  bool connected_ = false;
  bool reading_ = false;
  bool paused_ = false;            // reading stopped because the other side is full
  bool finished_sending_ = false;  // EOF or close_notify from this side
  bool writing_ = false;
  bool last_words_ = false;
  bool closed_ = false;
  bool close_notify_sent_ = false;
  bool shutdown_started_ = false;
  bool shutdown_done_ = false;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_ENDPOINT_H_
