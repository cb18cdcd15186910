#include "proxy/net/tls_session.h"

#include <openssl/err.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "certs/ocsp_peer_verify.h"

namespace sidecar::proxy {

const BIO_METHOD* TlsSession::BioMethod() {
  // One method for the process; BoringSSL never frees it, and neither do we.
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "sidecar chunks");
    BIO_meth_set_read(m, &TlsSession::BioRead);
    BIO_meth_set_write(m, &TlsSession::BioWrite);
    BIO_meth_set_ctrl(m, &TlsSession::BioCtrl);
    return m;
  }();
  return method;
}

int TlsSession::BioRead(BIO* bio, char* out, int len) {
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  ChunkQueue& in = self->ciphertext_in_;
  if (in.empty()) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t copied = 0;
  while (copied < static_cast<size_t>(len) && !in.empty()) {
    Chunk* chunk = in.front();
    size_t n = std::min(static_cast<size_t>(len) - copied, chunk->size());
    std::memcpy(out + copied, chunk->head(), n);
    in.Consume(n);
    copied += n;
  }
  return static_cast<int>(copied);
}

int TlsSession::BioWrite(BIO* bio, const char* in, int len) {
  auto* self = static_cast<TlsSession*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  self->ciphertext_out_->Append(reinterpret_cast<const uint8_t*>(in), static_cast<size_t>(len));
  return len;
}

long TlsSession::BioCtrl(BIO* bio, int cmd, long num, void* ptr) {
  // BoringSSL flushes the write BIO after each flight; our writes are complete already.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

TlsSession::TlsSession(ChunkPool* pool, ChunkQueue* ciphertext_out)
    : ciphertext_in_(pool), ciphertext_out_(ciphertext_out) {}

TlsSession::~TlsSession() = default;

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::Create(SSL_CTX* ctx, Role role,
                                                               ChunkPool* pool,
                                                               ChunkQueue* ciphertext_out) {
  std::unique_ptr<TlsSession> session(new TlsSession(pool, ciphertext_out));
  session->ssl_.reset(SSL_new(ctx));
  if (!session->ssl_) {
    return absl::ResourceExhaustedError("SSL_new failed");
  }
  // One BIO serves as both read and write side; given the same BIO twice, SSL_set_bio
  // takes ownership of a single reference.
  bssl::UniquePtr<BIO> bio(BIO_new(BioMethod()));
  if (!bio) {
    return absl::ResourceExhaustedError("BIO_new failed");
  }
  BIO_set_data(bio.get(), session.get());
  BIO_set_init(bio.get(), 1);
  SSL_set_bio(session->ssl_.get(), bio.get(), bio.get());
  bio.release();  // the SSL owns it now
  if (role == Role::kServer) {
    SSL_set_accept_state(session->ssl_.get());
  } else {
    SSL_set_connect_state(session->ssl_.get());
  }
  // Handshake-only configuration (certificates, verify settings) is dropped once the
  // handshake is done: less memory per established connection.
  SSL_set_shed_handshake_config(session->ssl_.get(), 1);
  return session;
}

void TlsSession::Feed(Chunk* chunk) { ciphertext_in_.Push(chunk); }

bool TlsSession::handshake_done() const { return !SSL_in_init(ssl_.get()); }

// The error queue is cleared here, after every failure, and is never filled on success, so
// no call needs to clear it first: SSL_get_error then sees only the failure at hand.
TlsCallResult ClassifyTlsCall(const SSL* ssl, int ret) {
  TlsCallResult result;
  int err = SSL_get_error(ssl, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
    // The peer's certificate waits for its OCSP answer; the connection is woken to go on
    // (proxy/ocsp/handshake_resume.h), as it is woken by more ciphertext.
    case SSL_ERROR_WANT_CERTIFICATE_VERIFY:
      result.status = TlsSession::Status::kWantRead;
      return result;
    case SSL_ERROR_ZERO_RETURN:
      result.status = TlsSession::Status::kPeerClosed;
      return result;
    default:
      break;
  }
  result.status = TlsSession::Status::kError;
  result.error_code = ERR_peek_last_error();
  if (result.error_code != 0) {
    char buf[256];
    ERR_error_string_n(result.error_code, buf, sizeof(buf));
    result.error = buf;
  } else {
    result.error = absl::StrCat("TLS error ", err);
  }
  // Only a verification that ran and failed (X509 or OCSP) explains the handshake failure.
  if (std::string why = certs::PeerVerifyFailure(ssl); !why.empty() && SSL_in_init(ssl)) {
    absl::StrAppend(&result.error, " (certificate verification: ", why, ")");
  }
  ERR_clear_error();
  return result;
}

TlsSession::Status TlsSession::Classify(int ret) {
  TlsCallResult result = ClassifyTlsCall(ssl_.get(), ret);
  if (result.status == Status::kError) {
    error_ = std::move(result.error);
    error_code_ = result.error_code;
  }
  return result.status;
}

TlsSession::Status TlsSession::Handshake() {
  int ret = SSL_do_handshake(ssl_.get());
  if (ret == 1) {
    return Status::kOk;
  }
  return Classify(ret);
}

TlsSession::Status TlsSession::ReadPlaintext(ChunkQueue& out, size_t limit) {
  size_t produced = 0;
  while (produced < limit) {
    // Fill the space left in the last chunk before taking a new one, so small records
    // share a chunk.
    bool fresh = out.empty() || out.back()->space() == 0;
    Chunk* chunk = fresh ? out.pool()->Take() : out.back();
    int ret = SSL_read(ssl_.get(), chunk->tail(), static_cast<int>(chunk->space()));
    if (ret <= 0) {
      if (fresh) {
        out.pool()->Give(chunk);
      }
      return Classify(ret);
    }
    chunk->end += static_cast<size_t>(ret);
    if (fresh) {
      out.Push(chunk);
    } else {
      out.Grow(static_cast<size_t>(ret));
    }
    produced += static_cast<size_t>(ret);
  }
  return Status::kOk;
}

TlsSession::Status TlsSession::Write(const uint8_t* data, size_t size) {
  while (size > 0) {
    int n = size > (1u << 30) ? (1 << 30) : static_cast<int>(size);
    int ret = SSL_write(ssl_.get(), data, n);
    if (ret <= 0) {
      return Classify(ret);
    }
    data += ret;
    size -= static_cast<size_t>(ret);
  }
  return Status::kOk;
}

TlsSession::Status TlsSession::SendCloseNotify() {
  int ret = SSL_shutdown(ssl_.get());
  // 0: our close_notify is out, the peer's not yet seen; 1: both. Either is success here.
  if (ret >= 0) {
    return Status::kOk;
  }
  return Classify(ret);
}

std::string_view TlsSession::version() const { return SSL_get_version(ssl_.get()); }

std::string_view TlsSession::cipher() const {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
  return cipher ? SSL_CIPHER_get_name(cipher) : "";
}

bool TlsSession::resumed() const { return SSL_session_reused(ssl_.get()) == 1; }

std::string_view TlsSession::server_name() const {
  const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

}  // namespace sidecar::proxy
