// TlsSession is one TLS connection as a pure bytes-in/bytes-out engine: ciphertext from the
// peer goes in with Feed(), plaintext comes out of ReadPlaintext() into a ChunkQueue, and
// everything BoringSSL wants to send (handshake, records, alerts, close_notify) is appended
// to the `ciphertext_out` queue that the owner writes to the socket after every call. It
// never touches a socket, so two sessions can be tested back to back in memory.
//
// The BIOs are our own minimal method over ChunkQueues rather than BIO_s_mem: no copy into
// a growing buffer, and an idle session holds no buffer of ours (BoringSSL releases its own
// record buffers when idle).
//
// One loop's thread uses a session; it borrows `ciphertext_out`, which must outlive it.
#ifndef SIDECAR_PROXY_NET_TLS_SESSION_H_
#define SIDECAR_PROXY_NET_TLS_SESSION_H_

#include <openssl/ssl.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "proxy/net/chunk.h"
#include "proxy/ocsp/handshake_resume.h"

namespace sidecar::proxy {

class TlsSession {
 public:
  enum class Role { kServer, kClient };

  // What a call left the session in. kWantRead is the normal "give me more ciphertext".
  enum class Status { kOk, kWantRead, kPeerClosed, kError };

  // Create makes a session on `ctx` (SSL_new takes its own reference to the context).
  static absl::StatusOr<std::unique_ptr<TlsSession>> Create(SSL_CTX* ctx, Role role,
                                                            ChunkPool* pool,
                                                            ChunkQueue* ciphertext_out);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Feed hands ciphertext received from the peer to the session, which owns the chunk now.
  void Feed(Chunk* chunk);
  size_t buffered_ciphertext() const { return ciphertext_in_.bytes(); }

  // Handshake advances the handshake: kOk once it is complete.
  Status Handshake();
  bool handshake_done() const;

  // ReadPlaintext decrypts into `out` until the session needs more ciphertext, the peer
  // closed, or at least `limit` bytes were produced (then kOk: call again later).
  Status ReadPlaintext(ChunkQueue& out, size_t limit);

  // Write encrypts all of `data`; it cannot block, since our write BIO always takes bytes.
  Status Write(const uint8_t* data, size_t size);

  // SendCloseNotify queues our close_notify alert; later Writes are refused.
  Status SendCloseNotify();

  // What the handshake negotiated, as BoringSSL names it ("TLSv1.3", cipher names).
  std::string_view version() const;
  std::string_view cipher() const;
  bool resumed() const;
  std::string_view server_name() const;  // SNI the client sent, "" without one
  SSL* ssl() const { return ssl_.get(); }

  // ResumeWhenOcspAnswers: when checking the peer's certificate waits for an OCSP answer
  // (ssl_verify_retry), `resume` runs on `loop` once it is in, to drive the handshake on.
  void ResumeWhenOcspAnswers(uv_loop_t* loop, absl::AnyInvocable<void()> resume) {
    ocsp_resume_.Attach(ssl_.get(), loop, std::move(resume));
  }

  // error() describes the last kError: BoringSSL's reason and, when known, the alert.
  const std::string& error() const { return error_; }
  // error_code() is the last kError's packed BoringSSL error (ERR_GET_REASON and friends
  // read it), 0 when BoringSSL queued none.
  uint32_t error_code() const { return error_code_; }

 private:
  TlsSession(ChunkPool* pool, ChunkQueue* ciphertext_out);
  Status Classify(int ret);

  static int BioRead(BIO* bio, char* out, int len);
  static int BioWrite(BIO* bio, const char* in, int len);
  static long BioCtrl(BIO* bio, int cmd, long num, void* ptr);
  static const BIO_METHOD* BioMethod();

  // Before ssl_, which borrows it: the SSL is freed first (members go in reverse).
  HandshakeResume ocsp_resume_;
  bssl::UniquePtr<SSL> ssl_;
  ChunkQueue ciphertext_in_;
  ChunkQueue* ciphertext_out_;
  std::string error_;
  uint32_t error_code_ = 0;
};

// TlsCallResult is one BoringSSL call on a session, classified.
struct TlsCallResult {
  TlsSession::Status status = TlsSession::Status::kOk;
  uint32_t error_code = 0;  // ERR_peek_last_error() for kError, 0 when none was queued
  std::string error;        // for kError: BoringSSL's reason, or "TLS error N"
};

// ClassifyTlsCall is the one place SSL_get_error is read: `ret` is what an SSL_* call on
// `ssl` returned (<= 0). kWantRead is the normal "more ciphertext, please"; kPeerClosed is
// the peer's close_notify; anything else is kError, described. After a kError the thread's
// error queue is cleared, so the next call's SSL_get_error sees only its own failure.
TlsCallResult ClassifyTlsCall(const SSL* ssl, int ret);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_TLS_SESSION_H_
