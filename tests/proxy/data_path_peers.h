// Test peers for the data path tests: plain non-blocking sockets the test drives itself (the
// client in front of the sidecar, the upstream behind it), a TLS client or server over such a
// socket, and the MongoDB messages the tests send. Header-only so that every file of the
// proxy_data_path_test binary shares them.
#ifndef SIDECAR_TESTS_PROXY_DATA_PATH_PEERS_H_
#define SIDECAR_TESTS_PROXY_DATA_PATH_PEERS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "certs/tls_snapshot.h"
#include "gtest/gtest.h"
#include "protocol/bson.h"
#include "protocol/error_reply.h"
#include "protocol/tls_alert.h"
#include "protocol/wire.h"
#include "proxy/base/close_reason.h"
#include "proxy/config/config.h"
#include "proxy/net/chunk.h"
#include "proxy/net/connection.h"
#include "proxy/net/shared_state.h"
#include "proxy/net/worker.h"
#include "proxy/observe/metrics.h"
#include "tests/support/bson_builder.h"
#include "tests/support/standin.h"
#include "tests/support/test_pki.h"

namespace sidecar::proxy::data_path {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Long enough for a loaded CI machine; every wait ends as soon as its condition holds.
constexpr milliseconds kDeadline{10000};
// The sidecar's bound per direction (connection.cc kHighWater, SPEC §10).
constexpr size_t kHighWater = 256 * 1024;

// ---------------------------------------------------------------------------------------
// Test peers: plain sockets the test drives itself.

inline int MakeNonBlocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

inline sockaddr_in Loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

inline uint16_t BoundPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// Peer is one end of a TCP connection held by the test: the client in front of the
// sidecar, or the upstream behind it. It reads whatever arrives into `received` (unless
// `reading` is off), remembers EOF and errors, and writes without blocking.
struct Peer {
  explicit Peer(int fd) : fd(MakeNonBlocking(fd)) {}
  ~Peer() { Close(); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  void Close() {
    if (fd >= 0) {
      close(fd);
      fd = -1;
    }
  }
  // Reset closes with an RST instead of a FIN.
  void Reset() {
    linger hard{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    Close();
  }
  void ShutdownWrite() { shutdown(fd, SHUT_WR); }

  // Pump reads what the kernel holds, when reading; TLS peers read through their SSL.
  void Pump() {
    if (fd < 0 || !reading || eof || error != 0 || tls != nullptr) {
      return;
    }
    uint8_t buffer[65536];
    for (;;) {
      ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        received.append(reinterpret_cast<char*>(buffer), static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        eof = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error = errno;
      }
      return;
    }
  }

  // TryWrite writes as much of `pending` as the socket takes now.
  void TryWrite() {
    while (pending_written < pending.size() && fd >= 0) {
      ssize_t n = write(fd, pending.data() + pending_written, pending.size() - pending_written);
      if (n <= 0) {
        return;
      }
      pending_written += static_cast<size_t>(n);
    }
    if (pending_written == pending.size()) {
      pending.clear();  // assigning the next bytes starts over
      pending_written = 0;
    }
  }
  // Left: how many bytes of `pending` the socket has not taken yet.
  size_t Left() const { return pending.size() - pending_written; }

  int fd;
  bool reading = true;
  std::string received;
  std::string pending;  // bytes to write; assign only once the previous ones are written
  size_t pending_written = 0;
  bool eof = false;
  int error = 0;
  SSL* tls = nullptr;  // set by TlsClient: reads go through it then
};

// TlsClient speaks TLS over a Peer's socket with BoringSSL (SSL_set_fd), as a driver does;
// with `server`, it is the accepting end (a peer sidecar that egress dials).
struct TlsClient {
  TlsClient(Peer& peer, SSL_CTX* context, bool server = false) : peer(peer), ssl(SSL_new(context)) {
    SSL_set_fd(ssl.get(), peer.fd);
    if (server) {
      SSL_set_accept_state(ssl.get());
    } else {
      SSL_set_connect_state(ssl.get());
      SSL_set_tlsext_host_name(ssl.get(), "localhost");
    }
    peer.tls = ssl.get();
  }

  // Pump advances the handshake, writes what waits and reads what arrived. Returns false
  // once the session failed.
  bool Pump() {
    if (failed) {
      return false;
    }
    if (!SSL_is_init_finished(ssl.get())) {
      int rc = SSL_do_handshake(ssl.get());
      if (rc != 1) {
        return Check(rc);
      }
    }
    while (!pending.empty()) {
      int rc = SSL_write(ssl.get(), pending.data(), static_cast<int>(pending.size()));
      if (rc <= 0) {
        if (!Check(rc)) {
          return false;
        }
        break;
      }
      pending.erase(0, static_cast<size_t>(rc));
    }
    char buffer[16384];
    for (;;) {
      int rc = SSL_read(ssl.get(), buffer, sizeof(buffer));
      if (rc > 0) {
        received.append(buffer, static_cast<size_t>(rc));
        continue;
      }
      return Check(rc);
    }
  }

  bool Check(int rc) {
    switch (SSL_get_error(ssl.get(), rc)) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        return true;
      case SSL_ERROR_ZERO_RETURN:
        close_notify_received = true;
        return true;
      case SSL_ERROR_SYSCALL:
        if (rc == 0) {
          eof = true;  // the socket ended without close_notify
          return true;
        }
        [[fallthrough]];
      default:
        failed = true;
        return false;
    }
  }

  bool handshake_done() const { return SSL_is_init_finished(ssl.get()); }

  Peer& peer;
  bssl::UniquePtr<SSL> ssl;
  std::string pending;
  std::string received;
  bool close_notify_received = false;
  bool eof = false;
  bool failed = false;
};

// ---------------------------------------------------------------------------------------
// MongoDB messages.

inline std::string AsString(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

inline std::string OpMsgHello(int32_t request_id = 7) {
  support::BsonBuilder body;
  body.AppendInt32("hello", 1).AppendString("$db", "admin");
  body.StartDocument("client")
      .StartDocument("application")
      .AppendString("name", "datapath")
      .EndDocument()
      .StartDocument("driver")
      .AppendString("name", "unit")
      .AppendString("version", "1.0")
      .EndDocument()
      .EndDocument();
  std::vector<uint8_t> document = body.Finish();
  return AsString(protocol::BuildOpMsg(request_id, 0, document));
}

inline std::string OpQueryHello(int32_t request_id = 9) {
  protocol::BsonWriter query;
  query.AppendInt32("isMaster", 1);
  std::vector<uint8_t> document = query.Finish();
  return AsString(protocol::BuildOpQuery(request_id, "admin.$cmd", document));
}

// OpMsgCommand is any OP_MSG request, `size` bytes long or a little over.
inline std::string OpMsgCommand(int32_t request_id, size_t size = 0) {
  protocol::BsonWriter body;
  body.AppendInt32("ping", 1).AppendString("$db", "admin");
  if (size > 64) {
    body.AppendString("padding", std::string(size - 64, 'p'));
  }
  std::vector<uint8_t> document = body.Finish();
  return AsString(protocol::BuildOpMsg(request_id, 0, document));
}

inline std::string OpMsgReply(int32_t response_to) {
  protocol::BsonWriter body;
  body.AppendDouble("ok", 1.0);
  std::vector<uint8_t> document = body.Finish();
  return AsString(protocol::BuildOpMsg(0, response_to, document));
}

// ErrorOf parses one whole reply (OP_MSG or OP_REPLY) and returns its code, -1 when it is
// not a reply with a code, and its errmsg in *errmsg.
inline int32_t ErrorOf(const std::string& reply, int32_t* response_to, std::string* errmsg) {
  auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(reply.data()), reply.size());
  protocol::Frame frame = protocol::FrameMessage(bytes);
  if (frame.status != protocol::ParseStatus::kDone || frame.size != bytes.size()) {
    return -1;
  }
  absl::Span<const uint8_t> document;
  if (frame.header.op_code == static_cast<int32_t>(protocol::OpCode::kMsg)) {
    auto msg = protocol::ParseOpMsg(bytes);
    if (!msg.ok()) {
      return -1;
    }
    document = msg->body;
    *response_to = msg->header.response_to;
  } else if (frame.header.op_code == static_cast<int32_t>(protocol::OpCode::kReply)) {
    auto op_reply = protocol::ParseOpReply(bytes);
    if (!op_reply.ok() || op_reply->documents.size() != 1) {
      return -1;
    }
    document = op_reply->documents[0];
    *response_to = op_reply->header.response_to;
  } else {
    return -1;
  }
  auto view = protocol::BsonView::Parse(document);
  if (!view.ok()) {
    return -1;
  }
  if (auto message = view->Find("errmsg"); message && message->AsString()) {
    *errmsg = std::string(*message->AsString());
  }
  auto code = view->Find("code");
  return code && code->AsInt32() ? *code->AsInt32() : -1;
}

// ClientHelloBytes is a real ClientHello, as the first flight of a BoringSSL client.
inline std::string ClientHelloBytes(SSL_CTX* context) {
  bssl::UniquePtr<SSL> ssl(SSL_new(context));
  SSL_set_connect_state(ssl.get());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // set0: the SSL owns both
  SSL_do_handshake(ssl.get());
  const uint8_t* data = nullptr;
  size_t size = 0;
  BIO_mem_contents(out, &data, &size);
  return std::string(reinterpret_cast<const char*>(data), size);
}

// AnswerWithStandin plays mongod on `upstream`: every whole OP_MSG in `upstream->received`
// is run by the stand-in's command set and answered. Returns how many it answered.
inline int AnswerWithStandin(support::Standin& standin, Peer& upstream) {
  int answered = 0;
  for (;;) {
    auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(upstream.received.data()),
                                     upstream.received.size());
    protocol::Frame frame = protocol::FrameMessage(bytes);
    if (frame.status != protocol::ParseStatus::kDone) {
      return answered;
    }
    auto message = protocol::ParseOpMsg(bytes.first(frame.size));
    if (!message.ok()) {
      ADD_FAILURE() << "not an OP_MSG: " << message.status();
      return answered;
    }
    support::CommandRequest request;
    request.body = *protocol::BsonView::Parse(message->body);
    request.connection_id = 1;
    support::Document reply = standin.Run(request);
    upstream.pending += AsString(protocol::BuildOpMsg(0, frame.header.request_id, reply));
    upstream.received.erase(0, frame.size);
    ++answered;
  }
}

}  // namespace sidecar::proxy::data_path

#endif  // SIDECAR_TESTS_PROXY_DATA_PATH_PEERS_H_
