#include "proxy/net/endpoint.h"

#include <utility>


namespace sidecar::proxy {

namespace {

// libuv copies up to four buffers into a write request without allocating.
constexpr int kMaxWriteBuffers = 4;

constexpr unsigned kKeepAliveDelaySeconds = 60;

// GatherWrite points `bufs` at the first chunks of `queue` and returns how many.
int GatherWrite(const ChunkQueue& queue, uv_buf_t (&bufs)[kMaxWriteBuffers], size_t* total) {
  int count = 0;
  *total = 0;
  for (const Chunk* c = queue.front(); c != nullptr && count < kMaxWriteBuffers; c = c->next) {
    bufs[count++] = uv_buf_init(reinterpret_cast<char*>(const_cast<uint8_t*>(c->head())),
                                static_cast<unsigned>(c->size()));
    *total += c->size();
  }
  return count;
}

const std::string kNoError;

}  // namespace

Endpoint::Endpoint(Events* events, ChunkPool* pool)
    : events_(events), pool_(pool), staged_(pool), outgoing_(pool), in_flight_(pool) {}

Endpoint::~Endpoint() {
  if (read_chunk_ != nullptr) {
    pool_->Give(read_chunk_);
  }
}

void Endpoint::Adopt(UvHandle<uv_tcp_t> socket, bool connected) {
  socket_ = std::move(socket);
  socket_.get()->data = this;
  if (connected) {
    Connected();
  }
}

void Endpoint::Connected() {
  connected_ = true;
  uv_tcp_nodelay(socket_.get(), 1);
  uv_tcp_keepalive(socket_.get(), 1, kKeepAliveDelaySeconds);
}

void Endpoint::StartTls(std::unique_ptr<TlsSession> session, ChunkQueue& ciphertext) {
  tls_ = std::move(session);
  if (socket_) {
    // Checking the peer's certificate may wait for an OCSP answer (ssl_verify_retry); the
    // answer's arrival drives the handshake on. The callback dies with the session.
    tls_->ResumeWhenOcspAnswers(socket_.get()->loop, [this] {
      if (!closed_ && tls_ && !tls_->handshake_done()) {
        Pump();
      }
    });
  }
  while (Chunk* chunk = ciphertext.Pop()) {
    tls_->Feed(chunk);
  }
}

const std::string& Endpoint::tls_error() const { return tls_ ? tls_->error() : kNoError; }

bool Endpoint::Close(void (*on_closed)(void*), void* context) {
  closed_ = true;
  if (!socket_) {
    return false;
  }
  socket_.Close(on_closed, context);
  return true;
}

// ---------------------------------------------------------------------------------------
// Reading

void Endpoint::StartReading() {
  if (reading_ || paused_ || finished_sending_ || closed_ || last_words_) {
    return;
  }
  if (int rc = uv_read_start(socket_.stream(), &Endpoint::OnAlloc, &Endpoint::OnRead); rc != 0) {
    events_->OnSocketError(*this, rc);
    return;
  }
  reading_ = true;
}

void Endpoint::StopReading() {
  if (reading_) {
    uv_read_stop(socket_.stream());
    reading_ = false;
  }
}

void Endpoint::Pause() {
  StopReading();
  paused_ = true;
}

void Endpoint::Resume() {
  paused_ = false;
  if (tls_ && (tls_->buffered_ciphertext() > 0 || SSL_pending(tls_->ssl()))) {
    Pump();
    if (paused_ || closed_) {
      return;
    }
  }
  StartReading();
}

void Endpoint::OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  auto* self = static_cast<Endpoint*>(handle->data);
  if (self->read_chunk_ == nullptr) {
    self->read_chunk_ = self->pool_->Take();
  }
  *buf = uv_buf_init(reinterpret_cast<char*>(self->read_chunk_->tail()),
                     static_cast<unsigned>(self->read_chunk_->space()));
}

void Endpoint::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Endpoint*>(stream->data);
  Chunk* chunk = std::exchange(self->read_chunk_, nullptr);
  if (nread > 0) {
    chunk->end += static_cast<size_t>(nread);
    self->OnBytes(chunk);
    return;
  }
  // nread == 0 is EAGAIN; an idle connection holds no chunk.
  if (chunk != nullptr) {
    self->pool_->Give(chunk);
  }
  if (nread == UV_EOF) {
    self->reading_ = false;  // libuv stopped reading at EOF
    self->Finished();
  } else if (nread < 0) {
    self->events_->OnSocketError(*self, static_cast<int>(nread));
  }
}

void Endpoint::OnBytes(Chunk* chunk) {
  if (closed_) {
    pool_->Give(chunk);
    return;
  }
  if (tls_) {
    tls_->Feed(chunk);
    Pump();
    return;
  }
  ChunkQueue plaintext(pool_);
  plaintext.Push(chunk);
  events_->OnReceived(*this, plaintext);
}

void Endpoint::Finished() {
  StopReading();
  finished_sending_ = true;
  events_->OnFinishedSending(*this);
}

bool Endpoint::PumpHandshake() {
  TlsSession::Status status = tls_->Handshake();
  Flush();  // the handshake's own output
  if (status == TlsSession::Status::kWantRead) {
    return false;
  }
  if (status != TlsSession::Status::kOk) {
    events_->OnHandshakeFailed(*this);
    return false;
  }
  events_->OnHandshakeDone(*this);
  return !closed_;
}

void Endpoint::Pump() {
  if (!tls_ || closed_) {
    return;
  }
  if (!tls_->handshake_done() && !PumpHandshake()) {
    return;
  }
  // Once the last words are being written (a refusal answered, a drain at a message
  // boundary), nothing more is read or passed on.
  while (!closed_ && !last_words_) {
    size_t room = events_->Room(*this);
    if (room == 0) {
      Pause();  // resumed when the other side drains; ciphertext waits in the session
      return;
    }
    ChunkQueue plaintext(pool_);
    TlsSession::Status status = tls_->ReadPlaintext(plaintext, room);
    Flush();  // reading can produce output too (key updates, session tickets)
    if (!plaintext.empty()) {
      events_->OnReceived(*this, plaintext);
    }
    if (closed_) {
      return;
    }
    switch (status) {
      case TlsSession::Status::kOk:
        continue;  // stopped at the limit: look at the other side again
      case TlsSession::Status::kWantRead:
        return;
      case TlsSession::Status::kPeerClosed:
        // close_notify: the peer is done sending; we still deliver the other way.
        Finished();
        return;
      case TlsSession::Status::kError:
        events_->OnTlsError(*this, "TLS error");
        return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Writing

void Endpoint::Write(ChunkQueue& plaintext) {
  plaintext.MoveAllTo(staged_);
  Advance();
}

void Endpoint::Stage(const uint8_t* data, size_t size) { staged_.Append(data, size); }

void Endpoint::WriteNow(const uint8_t* data, size_t size) {
  if (tls_) {
    tls_->Write(data, size);
  } else {
    outgoing_.Append(data, size);
  }
  Flush();
}

void Endpoint::Advance() {
  if (!ready() || staged_.empty()) {
    Flush();
    return;
  }
  if (tls_) {
    while (Chunk* chunk = staged_.Pop()) {
      TlsSession::Status status = tls_->Write(chunk->head(), chunk->size());
      pool_->Give(chunk);
      if (status != TlsSession::Status::kOk) {
        events_->OnTlsError(*this, "TLS write failed");
        return;
      }
    }
  } else {
    staged_.MoveAllTo(outgoing_);
  }
  Flush();
}

void Endpoint::Flush() {
  if (writing_ || !connected_ || outgoing_.empty() || closed_) {
    return;
  }
  uv_buf_t bufs[kMaxWriteBuffers];
  size_t total = 0;
  bool wrote = false;
  // Write directly while the socket takes everything: no request, no callback, and no
  // POLLOUT toggling (libuv 1.44 re-arms epoll after every queued write it completes).
  // Last words go through uv_write so that their completion is seen.
  while (!last_words_ && !outgoing_.empty()) {
    int count = GatherWrite(outgoing_, bufs, &total);
    int written = uv_try_write(socket_.stream(), bufs, count);
    if (written == UV_EAGAIN) {
      break;
    }
    if (written < 0) {
      events_->OnSocketError(*this, written);
      return;
    }
    wrote = true;
    outgoing_.Consume(static_cast<size_t>(written));
    if (static_cast<size_t>(written) < total) {
      break;  // the socket is full: queue the rest
    }
  }
  if (!outgoing_.empty()) {
    int count = GatherWrite(outgoing_, bufs, &total);
    for (int i = 0; i < count; ++i) {
      in_flight_.Push(outgoing_.Pop());
    }
    if (write_req_ == nullptr) {
      write_req_ = std::make_unique<uv_write_t>();
      write_req_->data = this;
    }
    if (int rc = uv_write(write_req_.get(), socket_.stream(), bufs, count, &Endpoint::OnWrite);
        rc != 0) {
      in_flight_.Clear();
      events_->OnSocketError(*this, rc);
      return;
    }
    writing_ = true;
  }
  if (wrote) {
    // The queue shrank without a write callback to say so: a source paused on it may go on.
    events_->OnSent(*this);
  }
}

void Endpoint::OnWrite(uv_write_t* req, int status) {
  auto* self = static_cast<Endpoint*>(req->data);
  self->writing_ = false;
  self->in_flight_.Clear();
  if (status == UV_ECANCELED || self->closed_) {
    return;
  }
  if (status != 0) {
    self->events_->OnSocketError(*self, status);
    return;
  }
  self->Flush();
  if (self->closed_) {
    return;
  }
  self->events_->OnWriteDone(*self);
}

void Endpoint::LastWords() {
  StopReading();
  last_words_ = true;
}

void Endpoint::SendCloseNotify() {
  if (tls_ && connected_ && tls_->handshake_done() && !close_notify_sent_) {
    close_notify_sent_ = true;
    tls_->SendCloseNotify();
  }
}

void Endpoint::ShutdownWhenFlushed() {
  if (shutdown_started_ || !ready() || !staged_.empty() || closed_) {
    return;
  }
  if (tls_ && !close_notify_sent_) {
    close_notify_sent_ = true;
    tls_->SendCloseNotify();
    Flush();
    if (closed_) {
      return;
    }
  }
  if (writing_ || !outgoing_.empty()) {
    return;  // the write's completion calls us again
  }
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  shutdown_req_->data = this;
  if (int rc = uv_shutdown(shutdown_req_.get(), socket_.stream(), &Endpoint::OnShutdown);
      rc != 0) {
    events_->OnSocketError(*this, rc);
    return;
  }
  shutdown_started_ = true;
}

void Endpoint::OnShutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<Endpoint*>(req->data);
  if (status == UV_ECANCELED || self->closed_) {
    return;
  }
  self->shutdown_done_ = true;
  if (status != 0) {
    self->events_->OnSocketError(*self, status);
    return;
  }
  self->events_->OnShutdownDone(*self);
}

}  // namespace sidecar::proxy
