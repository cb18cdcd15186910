// Copyright the tls-sidecar authors.
//
// echo_backend: the stand-in for mongod under load. It echoes every byte it receives,
// so the bench measures the proxy in front of it rather than a wire-protocol server.
// One epoll loop per thread, each with its own SO_REUSEPORT listener so the kernel
// spreads connections; nothing is shared between threads.
//
// Two concessions to the proxies in front of it:
//   - with --answer-hello (default on), the first message of a connection, when it is an
//     OP_MSG whose command is hello/isMaster, gets a minimal hello reply instead of its
//     echo, so a proxy that asks its upstream for hello at start sees a primary;
//   - with --tls --cert FILE it terminates TLS 1.3 itself (BoringSSL): the "backend
//     terminating TLS itself, no hop" limit of BENCH.md.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/common/flags.h"

namespace sidecar::bench {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int threads = 1;
  bool tls = false;
  std::string cert_file;
  bool answer_hello = true;
};

// HelloReply returns the OP_MSG reply to a hello whose request id is `request_id`:
// {ismaster: true, isWritablePrimary: true, maxBsonObjectSize, maxMessageSizeBytes,
// maxWriteBatchSize, minWireVersion: 0, maxWireVersion: 21, ok: 1.0}.
std::vector<uint8_t> HelloReply(uint32_t request_id) {
  std::vector<uint8_t> doc;
  auto put32 = [](std::vector<uint8_t>& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
  };
  auto key = [&](uint8_t type, const char* name) {
    doc.push_back(type);
    doc.insert(doc.end(), name, name + strlen(name) + 1);
  };
  key(0x08, "ismaster");
  doc.push_back(1);
  key(0x08, "isWritablePrimary");
  doc.push_back(1);
  key(0x10, "maxBsonObjectSize");
  put32(doc, 16 * 1024 * 1024);
  key(0x10, "maxMessageSizeBytes");
  put32(doc, 48000000);
  key(0x10, "maxWriteBatchSize");
  put32(doc, 100000);
  key(0x10, "minWireVersion");
  put32(doc, 0);
  key(0x10, "maxWireVersion");
  put32(doc, 21);
  key(0x01, "ok");
  const double one = 1.0;
  uint8_t bytes[8];
  memcpy(bytes, &one, 8);
  doc.insert(doc.end(), bytes, bytes + 8);
  std::vector<uint8_t> body;
  put32(body, static_cast<uint32_t>(doc.size() + 5));
  body.insert(body.end(), doc.begin(), doc.end());
  body.push_back(0);
  std::vector<uint8_t> msg;
  put32(msg, static_cast<uint32_t>(16 + 4 + 1 + body.size()));
  put32(msg, 1);
  put32(msg, request_id);
  put32(msg, 2013);
  put32(msg, 0);
  msg.push_back(0);
  msg.insert(msg.end(), body.begin(), body.end());
  return msg;
}

// IsHello says whether `data` starts with a complete OP_MSG whose body's first key is
// hello or isMaster (any case), and sets `request_id`.
bool IsHello(const uint8_t* data, size_t len, uint32_t* request_id) {
  if (len < 21 + 5 + 1) {
    return false;
  }
  auto get32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) {
      v = (v << 8) | data[at + i];
    }
    return v;
  };
  if (get32(12) != 2013 || get32(0) > len || data[20] != 0) {
    return false;
  }
  *request_id = get32(4);
  const char* key = reinterpret_cast<const char*>(data + 26);
  const size_t room = len - 26;
  for (const char* name : {"hello", "isMaster", "ismaster"}) {
    const size_t n = strlen(name) + 1;
    if (room >= n && memcmp(key, name, n) == 0) {
      return true;
    }
  }
  return false;
}

// Conn is one accepted connection; owned by its Worker's map, freed when closed.
struct Conn {
  int fd = -1;
  bssl::UniquePtr<SSL> ssl;
  bool handshaking = false;
  bool first_message = true;
  uint32_t interest = 0;
  std::vector<uint8_t> pending;  // Echo bytes the socket has not taken yet.
  size_t pending_offset = 0;
};

// Worker is one thread's loop: a listener and its connections. Touched only by its thread.
class Worker {
 public:
  Worker(const Options& options, SSL_CTX* ctx) : options_(options), ctx_(ctx) {}

  ~Worker() {
    for (auto& [fd, conn] : conns_) {
      close(fd);
    }
    if (listener_ >= 0) {
      close(listener_);
    }
    if (epoll_fd_ >= 0) {
      close(epoll_fd_);
    }
  }

  absl::Status Listen() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener_ < 0) {
      return absl::ErrnoToStatus(errno, "socket");
    }
    int one = 1;
    setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(listener_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(options_.port));
    if (inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--host: not an IPv4 address: ", options_.host));
    }
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("bind port ", options_.port));
    }
    if (listen(listener_, 4096) < 0) {
      return absl::ErrnoToStatus(errno, "listen");
    }
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      return absl::ErrnoToStatus(errno, "epoll_create1");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listener_;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listener_, &ev) < 0) {
      return absl::ErrnoToStatus(errno, "epoll_ctl");
    }
    return absl::OkStatus();
  }

  // Loop serves until the process exits.
  void Loop() {
    epoll_event events[256];
    for (;;) {
      int n = epoll_wait(epoll_fd_, events, 256, -1);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == listener_) {
          Accept();
          continue;
        }
        auto it = conns_.find(fd);
        if (it != conns_.end()) {
          Serve(*it->second);
        }
      }
    }
  }

 private:
  void Accept() {
    for (int i = 0; i < 64; ++i) {
      int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        return;  // EAGAIN, or out of descriptors: the listener stays readable, retried.
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto conn = std::make_unique<Conn>();
      conn->fd = fd;
      if (ctx_ != nullptr) {
        conn->ssl.reset(SSL_new(ctx_));
        if (!conn->ssl || !SSL_set_fd(conn->ssl.get(), fd)) {
          close(fd);
          continue;
        }
        SSL_set_accept_state(conn->ssl.get());
        conn->handshaking = true;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        continue;
      }
      conn->interest = EPOLLIN;
      conns_[fd] = std::move(conn);
    }
  }

  void Close(Conn& c) {
    const int fd = c.fd;
    close(fd);
    conns_.erase(fd);  // Frees c.
  }

  void SetInterest(Conn& c, uint32_t interest) {
    if (c.interest == interest) {
      return;
    }
    epoll_event ev{};
    ev.events = interest;
    ev.data.fd = c.fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = interest;
  }

  // Result of one read or write: bytes moved, or would-block waiting for `want`, or done.
  struct Io {
    ssize_t bytes;  // > 0 progress, 0 would block, < 0 close the connection.
    uint32_t want;
  };

  Io TlsResult(Conn& c, int r) {
    if (r > 0) {
      return {r, 0};
    }
    switch (SSL_get_error(c.ssl.get(), r)) {
      case SSL_ERROR_WANT_READ:
        return {0, EPOLLIN};
      case SSL_ERROR_WANT_WRITE:
        return {0, EPOLLOUT};
      default:
        ERR_clear_error();
        return {-1, 0};
    }
  }

  Io Read(Conn& c, uint8_t* data, size_t len) {
    if (c.ssl) {
      return TlsResult(c, SSL_read(c.ssl.get(), data, static_cast<int>(len)));
    }
    ssize_t r = recv(c.fd, data, len, 0);
    if (r > 0) {
      return {r, 0};
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return {0, EPOLLIN};
    }
    return {-1, 0};
  }

  Io Write(Conn& c, const uint8_t* data, size_t len) {
    if (c.ssl) {
      return TlsResult(c, SSL_write(c.ssl.get(), data, static_cast<int>(len)));
    }
    ssize_t r = send(c.fd, data, len, MSG_NOSIGNAL);
    if (r >= 0) {
      return {r, 0};
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return {0, EPOLLOUT};
    }
    return {-1, 0};
  }

  // WriteAll writes data[0..len) or keeps the rest in c.pending. Returns false when the
  // connection must close; sets `want` when the socket is full.
  bool WriteAll(Conn& c, const uint8_t* data, size_t len, uint32_t* want) {
    size_t done = 0;
    while (done < len) {
      Io io = Write(c, data + done, len - done);
      if (io.bytes < 0) {
        return false;
      }
      if (io.bytes == 0) {
        c.pending.assign(data + done, data + len);
        c.pending_offset = 0;
        *want = io.want;
        return true;
      }
      done += static_cast<size_t>(io.bytes);
    }
    return true;
  }

  void Serve(Conn& c) {
    if (c.handshaking) {
      int r = SSL_do_handshake(c.ssl.get());
      if (r != 1) {
        Io io = TlsResult(c, r);
        if (io.bytes < 0) {
          Close(c);
        } else {
          SetInterest(c, io.want);
        }
        return;
      }
      c.handshaking = false;
    }
    // A bounded number of rounds per wake-up keeps one busy connection from starving
    // the others; level-triggered epoll brings us back.
    for (int round = 0; round < 16; ++round) {
      if (!c.pending.empty()) {
        uint32_t want = 0;
        std::vector<uint8_t> rest(c.pending.begin() + static_cast<ptrdiff_t>(c.pending_offset),
                                  c.pending.end());
        c.pending.clear();
        if (!WriteAll(c, rest.data(), rest.size(), &want)) {
          Close(c);
          return;
        }
        if (!c.pending.empty()) {
          SetInterest(c, want);  // Stop reading until the echo drains: backpressure.
          return;
        }
      }
      Io io = Read(c, buffer_, sizeof(buffer_));
      if (io.bytes < 0) {
        Close(c);
        return;
      }
      if (io.bytes == 0) {
        SetInterest(c, io.want);
        return;
      }
      const uint8_t* reply = buffer_;
      size_t reply_len = static_cast<size_t>(io.bytes);
      std::vector<uint8_t> hello;
      uint32_t request_id = 0;
      if (c.first_message && options_.answer_hello && IsHello(buffer_, reply_len, &request_id)) {
        hello = HelloReply(request_id);
        reply = hello.data();
        reply_len = hello.size();
      }
      c.first_message = false;
      uint32_t want = 0;
      if (!WriteAll(c, reply, reply_len, &want)) {
        Close(c);
        return;
      }
      if (!c.pending.empty()) {
        SetInterest(c, want);
        return;
      }
    }
    SetInterest(c, EPOLLIN);
  }

  const Options& options_;
  SSL_CTX* ctx_;  // Not owned; null for plaintext.
  int listener_ = -1;
  int epoll_fd_ = -1;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
  uint8_t buffer_[kReadBufferSize];
};

absl::StatusOr<bssl::UniquePtr<SSL_CTX>> MakeServerContext(const std::string& cert_file) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx || !SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION)) {
    return absl::InternalError("SSL_CTX_new failed");
  }
  if (!SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) ||
      !SSL_CTX_use_PrivateKey_file(ctx.get(), cert_file.c_str(), SSL_FILETYPE_PEM)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cert: ", cert_file, " must hold the certificate chain and its key"));
  }
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

constexpr char kUsage[] =
    "usage: echo_backend --port P [--host 127.0.0.1] [--threads N (0 = one per core)]\n"
    "  [--tls --cert PEM] [--answer-hello=false]\n";

int Main(int argc, char** argv) {
  absl::StatusOr<Flags> parsed = Flags::Parse(argc, argv);
  if (!parsed.ok()) {
    fprintf(stderr, "echo_backend: %s\n%s", std::string(parsed.status().message()).c_str(), kUsage);
    return 2;
  }
  Flags& flags = *parsed;
  Options options;
  options.host = flags.String("host", options.host);
  options.port = static_cast<int>(flags.Number("port", 0));
  options.threads = static_cast<int>(flags.Number("threads", 1));
  options.tls = flags.Bool("tls");
  options.cert_file = flags.String("cert", "");
  options.answer_hello = flags.String("answer-hello", "true") != "false";
  if (!flags.error().empty() || options.port <= 0 || options.threads < 0 ||
      (options.tls && options.cert_file.empty())) {
    fprintf(stderr, "echo_backend: %s\n%s", flags.error().c_str(), kUsage);
    return 2;
  }
  if (options.threads == 0) {
    options.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  signal(SIGPIPE, SIG_IGN);
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  bssl::UniquePtr<SSL_CTX> ctx;
  if (options.tls) {
    absl::StatusOr<bssl::UniquePtr<SSL_CTX>> made = MakeServerContext(options.cert_file);
    if (!made.ok()) {
      fprintf(stderr, "echo_backend: %s\n", std::string(made.status().message()).c_str());
      return 2;
    }
    ctx = std::move(*made);
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < options.threads; ++i) {
    workers.push_back(std::make_unique<Worker>(options, ctx.get()));
    absl::Status status = workers.back()->Listen();
    if (!status.ok()) {
      fprintf(stderr, "echo_backend: %s\n", std::string(status.message()).c_str());
      return 1;
    }
  }
  std::vector<std::thread> threads;
  for (size_t i = 1; i < workers.size(); ++i) {
    threads.emplace_back([w = workers[i].get()] { w->Loop(); });
  }
  workers[0]->Loop();  // Never returns; the process ends by signal.
  return 0;
}

}  // namespace
}  // namespace sidecar::bench

int main(int argc, char** argv) { return sidecar::bench::Main(argc, argv); }
