// Copyright the tls-sidecar authors.
//
// loadgen: the load generator of the bench. One thread, one epoll loop, non-blocking
// sockets, BoringSSL on the client side. Workloads (BENCH.md):
//
//   rr    C connections, closed loop: send an N-byte OP_MSG frame, wait for the N-byte
//         echo, repeat. Figures: req/s and latency percentiles.
//   bulk  C connections each streaming 64 KiB frames while reading the echo. Figure: MB/s
//         of echoed bytes received.
//   hs    W workers, each: connect, full TLS handshake (or resumed with --resume), one
//         round trip, close; repeat. Figures: connections/s and connection latency.
//   idle  C connections, one round trip each, then held open until SIGUSR1 or --hold
//         seconds, so that the harness can read the proxy's memory. Writes --ready-file
//         once every connection is idle.
//
// Prints one JSON object on one line to stdout per run. Exit status 0 when the run
// completed (errors are counted in the JSON), 1 when it could not start, 2 for bad flags.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/common/flags.h"
#include "bench/common/histogram.h"
#include "bench/common/mongo_frame.h"

namespace sidecar::bench {
namespace {

volatile sig_atomic_t g_release_idle = 0;

void OnSigusr1(int) { g_release_idle = 1; }

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

enum class Workload { kRr, kBulk, kHs, kIdle };

const char* WorkloadName(Workload w) {
  switch (w) {
    case Workload::kRr:
      return "rr";
    case Workload::kBulk:
      return "bulk";
    case Workload::kHs:
      return "hs";
    case Workload::kIdle:
      return "idle";
  }
  return "?";
}

struct Options {
  Workload workload = Workload::kRr;
  std::string host = "127.0.0.1";
  int port = 0;
  bool tls = false;
  std::string ca_file;
  std::string sni;
  int conns = 1;  // Connections for rr/bulk/idle, workers for hs.
  size_t size = 1024;
  size_t bulk_chunk = 64 * 1024;
  double duration_s = 2;
  double warmup_s = 0.5;
  bool resume = false;
  double hold_s = 60;
  double setup_timeout_s = 60;
  int setup_concurrency = 64;
  std::string ready_file;
  std::string label;
  bool markers = false;
  bool full_verify = false;
};

// Conn is one client connection. Owned by LoadGenerator::conns_ (one slot per
// connection or hs worker; the slot is reused for the worker's next connection).
struct Conn {
  enum class State {
    kFree,
    kConnecting,
    kHandshaking,
    kEstablished,  // Waiting for the measured phase to start.
    kWriting,
    kReading,
    kStreaming,
    kIdle,
  };

  int fd = -1;
  bssl::UniquePtr<SSL> ssl;
  State state = State::kFree;
  uint32_t generation = 0;  // Tells stale epoll events of a previous socket apart.
  uint32_t interest = 0;
  uint32_t want = 0;  // What the last would-block operation waits for.
  size_t out_offset = 0;
  size_t in_count = 0;
  uint64_t start_ns = 0;  // Request start (rr) or connection start (hs, idle).
};

class LoadGenerator {
 public:
  explicit LoadGenerator(Options options)
      : options_(std::move(options)),
        frame_(MakeOpMsgFrame(options_.size, 1)),
        bulk_frame_(MakeOpMsgFrame(options_.bulk_chunk, 2)),
        read_buffer_(256 * 1024) {}

  ~LoadGenerator() {
    for (auto& c : conns_) {
      if (c.fd >= 0) {
        close(c.fd);
      }
    }
    if (epoll_fd_ >= 0) {
      close(epoll_fd_);
    }
  }

  absl::Status Init() {
    if (inet_pton(AF_INET, options_.host.c_str(), &address_.sin_addr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--host: not an IPv4 address: ", options_.host));
    }
    address_.sin_family = AF_INET;
    address_.sin_port = htons(static_cast<uint16_t>(options_.port));
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      return absl::ErrnoToStatus(errno, "epoll_create1");
    }
    conns_.resize(static_cast<size_t>(options_.conns));
    if (!options_.tls) {
      return absl::OkStatus();
    }
    ctx_.reset(SSL_CTX_new(TLS_method()));
    if (!ctx_ || !SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx_.get(), TLS1_3_VERSION)) {
      return absl::InternalError("SSL_CTX_new failed");
    }
    if (options_.ca_file.empty()) {
      return absl::InvalidArgumentError("--tls needs --ca: the server certificate is verified");
    }
    if (!SSL_CTX_load_verify_locations(ctx_.get(), options_.ca_file.c_str(), nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat("--ca: cannot load ", options_.ca_file));
    }
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_cert_verify_callback(ctx_.get(), &LoadGenerator::VerifyChain, this);
    SSL_CTX_set_mode(ctx_.get(),
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (options_.resume) {
      SSL_CTX_set_session_cache_mode(ctx_.get(),
                                     SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
      SSL_CTX_sess_set_new_cb(ctx_.get(), &LoadGenerator::OnNewSession);
    }
    return absl::OkStatus();
  }

  // Run drives the workload to completion and prints the JSON line. Returns an error
  // only when no connection could be made at all.
  absl::Status Run() {
    const uint64_t setup_deadline = NowNs() + static_cast<uint64_t>(options_.setup_timeout_s * 1e9);
    if (options_.workload == Workload::kHs) {
      for (size_t i = 0; i < conns_.size(); ++i) {
        StartConn(i);
      }
      BeginTimedPhase();
    } else {
      for (size_t i = 0; i < conns_.size(); ++i) {
        pending_.push_back(i);
      }
      StartPending();
      // Setup: rr and bulk wait until every connection is established, idle until every
      // connection has made its round trip.
      while (setup_done_ + failed_setups_ < conns_.size() && NowNs() < setup_deadline) {
        Poll(100);
      }
      setup_ns_ = NowNs() - run_start_ns_;
      if (setup_done_ == 0) {
        return absl::UnavailableError(
            absl::StrFormat("no connection to %s:%d could be set up (%d failed): %s", options_.host,
                            options_.port, failed_setups_, last_error_));
      }
      if (options_.workload == Workload::kIdle) {
        HoldIdle();
        PrintResult();
        return absl::OkStatus();
      }
      BeginTimedPhase();
      for (size_t i = 0; i < conns_.size(); ++i) {
        if (conns_[i].state == Conn::State::kEstablished) {
          BeginWork(i);
        }
      }
    }
    for (;;) {
      const uint64_t now = NowNs();
      if (!measuring_ && now >= measure_start_ns_) {
        measuring_ = true;
        measure_start_ns_ = now;
        Mark("MEASURE_START");
        histogram_.Clear();
        requests_ = bytes_in_ = bytes_out_ = handshakes_ = resumed_ = 0;
      }
      if (now >= measure_end_ns_) {
        measure_end_ns_ = now;
        Mark("MEASURE_END");
        break;
      }
      const uint64_t next = measuring_ ? measure_end_ns_ : measure_start_ns_;
      Poll(static_cast<int>(std::min<uint64_t>((next - now) / 1000000 + 1, 100)));
    }
    PrintResult();
    return absl::OkStatus();
  }

 private:
  static int OnNewSession(SSL* ssl, SSL_SESSION* session) {
    auto* self = static_cast<LoadGenerator*>(SSL_get_app_data(ssl));
    self->latest_session_.reset(session);  // Takes the reference the callback hands over.
    return 1;
  }

  // Mark tells the harness (--markers) on stderr when the measured window starts and
  // ends, so it can read the proxy's CPU time over exactly that window.
  void Mark(const char* what) {
    if (options_.markers) {
      fprintf(stderr, "%s\n", what);
      fflush(stderr);
    }
  }

  // VerifyChain verifies the server's chain against --ca (and its name or IP) the usual
  // way once, then accepts later connections that present the byte-identical leaf
  // certificate without repeating the work, unless --full-verify. The proxies do their
  // share of every handshake; an ECDSA verification that gives the same answer each
  // time would only spend the load generator's core, which it shares with the proxy.
  static int VerifyChain(X509_STORE_CTX* store_ctx, void* arg) {
    auto* self = static_cast<LoadGenerator*>(arg);
    X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
    uint8_t* der = nullptr;
    const int der_len = leaf != nullptr ? i2d_X509(leaf, &der) : -1;
    bssl::UniquePtr<uint8_t> der_owner(der);
    if (der_len > 0 && !self->options_.full_verify && !self->verified_leaf_.empty() &&
        self->verified_leaf_.size() == static_cast<size_t>(der_len) &&
        memcmp(self->verified_leaf_.data(), der, self->verified_leaf_.size()) == 0) {
      return 1;
    }
    const int ok = X509_verify_cert(store_ctx);
    if (ok == 1 && der_len > 0) {
      self->verified_leaf_.assign(der, der + der_len);
    }
    return ok;
  }

  void BeginTimedPhase() {
    run_start_ns_ = run_start_ns_ == 0 ? NowNs() : run_start_ns_;
    const uint64_t now = NowNs();
    measure_start_ns_ = now + static_cast<uint64_t>(options_.warmup_s * 1e9);
    measure_end_ns_ = measure_start_ns_ + static_cast<uint64_t>(options_.duration_s * 1e9);
  }

  void StartPending() {
    if (run_start_ns_ == 0) {
      run_start_ns_ = NowNs();
    }
    while (!pending_.empty() && in_setup_ < options_.setup_concurrency) {
      size_t slot = pending_.front();
      pending_.pop_front();
      ++in_setup_;
      StartConn(slot);
    }
  }

  void Poll(int timeout_ms) {
    epoll_event events[256];
    int n = epoll_wait(epoll_fd_, events, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      const size_t slot = static_cast<size_t>(events[i].data.u64 >> 32);
      const uint32_t generation = static_cast<uint32_t>(events[i].data.u64);
      if (slot >= conns_.size() || conns_[slot].generation != generation || conns_[slot].fd < 0) {
        continue;
      }
      OnEvent(slot, events[i].events);
    }
    std::vector<size_t> restart;
    restart.swap(restart_);
    for (size_t slot : restart) {
      StartConn(slot);
    }
  }

  void StartConn(size_t slot) {
    Conn& c = conns_[slot];
    ++c.generation;
    c.ssl.reset();
    c.out_offset = c.in_count = 0;
    c.interest = 0;
    c.start_ns = NowNs();
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      Fail(slot, absl::StrCat("socket: ", strerror(errno)));
      return;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c.state = Conn::State::kConnecting;
    int r = connect(c.fd, reinterpret_cast<const sockaddr*>(&address_), sizeof(address_));
    if (r < 0 && errno != EINPROGRESS) {
      Fail(slot, absl::StrCat("connect: ", strerror(errno)));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = (static_cast<uint64_t>(slot) << 32) | c.generation;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev) < 0) {
      Fail(slot, absl::StrCat("epoll_ctl: ", strerror(errno)));
      return;
    }
    c.interest = EPOLLOUT;
  }

  void SetInterest(size_t slot, uint32_t interest) {
    Conn& c = conns_[slot];
    if (c.interest == interest) {
      return;
    }
    epoll_event ev{};
    ev.events = interest;
    ev.data.u64 = (static_cast<uint64_t>(slot) << 32) | c.generation;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = interest;
  }

  void CloseConn(size_t slot, bool graceful) {
    Conn& c = conns_[slot];
    if (c.ssl && graceful) {
      SSL_shutdown(c.ssl.get());  // Sends close_notify; the reply is not waited for.
    }
    c.ssl.reset();
    if (c.fd >= 0) {
      close(c.fd);  // Also removes it from the epoll set.
      c.fd = -1;
    }
    c.state = Conn::State::kFree;
  }

  void Fail(size_t slot, std::string why) {
    Conn& c = conns_[slot];
    const bool in_setup = c.state == Conn::State::kConnecting ||
                          c.state == Conn::State::kHandshaking ||
                          (options_.workload == Workload::kIdle && c.state != Conn::State::kIdle);
    last_error_ = std::move(why);
    ++errors_;
    CloseConn(slot, false);
    if (options_.workload == Workload::kHs) {
      // Restarted after the current batch of events, so a failure inside StartConn
      // cannot recurse.
      restart_.push_back(slot);
      return;
    }
    if (in_setup && setup_done_ + failed_setups_ < conns_.size()) {
      ++failed_setups_;
      --in_setup_;
      StartPending();
    } else if (options_.workload == Workload::kIdle) {
      --setup_done_;  // An idle connection that the proxy dropped no longer counts.
      ++dropped_idle_;
    }
  }

  void OnEvent(size_t slot, uint32_t events) {
    Conn& c = conns_[slot];
    switch (c.state) {
      case Conn::State::kConnecting: {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          Fail(slot, absl::StrCat("connect: ", strerror(err)));
          return;
        }
        if (!options_.tls) {
          OnConnected(slot);
          return;
        }
        if (!StartTls(slot)) {
          return;
        }
        c.state = Conn::State::kHandshaking;
        Handshake(slot);
        return;
      }
      case Conn::State::kHandshaking:
        Handshake(slot);
        return;
      case Conn::State::kWriting:
      case Conn::State::kReading:
        DriveRequest(slot);
        return;
      case Conn::State::kStreaming:
        DriveBulk(slot);
        return;
      case Conn::State::kEstablished:
      case Conn::State::kIdle: {
        // Nothing is expected on a parked connection but TLS post-handshake messages
        // (session tickets), which SSL_read consumes: data, EOF or an error all mean the
        // server or proxy misbehaved or dropped it.
        if (c.ssl) {
          ssize_t n = Read(c, read_buffer_.data(), read_buffer_.size());
          if (n == 0) {
            SetInterest(slot, c.want);
            return;
          }
          Fail(slot, n > 0 ? "unexpected data while idle" : last_error_);
          return;
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
          uint8_t byte;
          ssize_t n = recv(c.fd, &byte, 1, MSG_PEEK);
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
          }
          Fail(slot, n == 0 ? "server closed an idle connection" : "unexpected data while idle");
        }
        return;
      }
      case Conn::State::kFree:
        return;
    }
  }

  bool StartTls(size_t slot) {
    Conn& c = conns_[slot];
    c.ssl.reset(SSL_new(ctx_.get()));
    if (!c.ssl || !SSL_set_fd(c.ssl.get(), c.fd)) {
      Fail(slot, "SSL_new failed");
      return false;
    }
    SSL_set_app_data(c.ssl.get(), this);
    SSL_set_connect_state(c.ssl.get());
    X509_VERIFY_PARAM* param = SSL_get0_param(c.ssl.get());
    if (!options_.sni.empty()) {
      SSL_set_tlsext_host_name(c.ssl.get(), options_.sni.c_str());
      X509_VERIFY_PARAM_set1_host(param, options_.sni.data(), options_.sni.size());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(param, options_.host.c_str());
    }
    if (options_.resume && latest_session_) {
      SSL_set_session(c.ssl.get(), latest_session_.get());  // Adds its own reference.
    }
    return true;
  }

  void Handshake(size_t slot) {
    Conn& c = conns_[slot];
    int r = SSL_do_handshake(c.ssl.get());
    if (r == 1) {
      OnConnected(slot);
      return;
    }
    switch (SSL_get_error(c.ssl.get(), r)) {
      case SSL_ERROR_WANT_READ:
        SetInterest(slot, EPOLLIN);
        return;
      case SSL_ERROR_WANT_WRITE:
        SetInterest(slot, EPOLLOUT);
        return;
      default: {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        Fail(slot, absl::StrCat("TLS handshake: ", buf));
        return;
      }
    }
  }

  void OnConnected(size_t slot) {
    Conn& c = conns_[slot];
    switch (options_.workload) {
      case Workload::kRr:
      case Workload::kBulk:
        c.state = Conn::State::kEstablished;
        SetInterest(slot, EPOLLIN);
        ++setup_done_;
        --in_setup_;
        StartPending();
        return;
      case Workload::kHs:
      case Workload::kIdle:
        c.state = Conn::State::kWriting;
        DriveRequest(slot);
        return;
    }
  }

  void BeginWork(size_t slot) {
    Conn& c = conns_[slot];
    c.out_offset = c.in_count = 0;
    c.start_ns = NowNs();
    if (options_.workload == Workload::kBulk) {
      c.state = Conn::State::kStreaming;
      DriveBulk(slot);
    } else {
      c.state = Conn::State::kWriting;
      DriveRequest(slot);
    }
  }

  // Write returns the bytes written, 0 when the socket would block (c.want says for
  // what), or -1 on an error or EOF.
  ssize_t Write(Conn& c, const uint8_t* data, size_t len) {
    if (c.ssl) {
      int r = SSL_write(c.ssl.get(), data, static_cast<int>(len));
      if (r > 0) {
        return r;
      }
      return WouldBlock(c, r);
    }
    ssize_t r = send(c.fd, data, len, MSG_NOSIGNAL);
    if (r >= 0) {
      return r;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c.want = EPOLLOUT;
      return 0;
    }
    last_error_ = absl::StrCat("send: ", strerror(errno));
    return -1;
  }

  // Read returns the bytes read, 0 when nothing is available (c.want says what to wait
  // for), or -1 on an error or EOF.
  ssize_t Read(Conn& c, uint8_t* data, size_t len) {
    if (c.ssl) {
      int r = SSL_read(c.ssl.get(), data, static_cast<int>(len));
      if (r > 0) {
        return r;
      }
      return WouldBlock(c, r);
    }
    ssize_t r = recv(c.fd, data, len, 0);
    if (r > 0) {
      return r;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.want = EPOLLIN;
      return 0;
    }
    last_error_ = r == 0 ? "server closed the connection" : absl::StrCat("recv: ", strerror(errno));
    return -1;
  }

  ssize_t WouldBlock(Conn& c, int r) {
    switch (SSL_get_error(c.ssl.get(), r)) {
      case SSL_ERROR_WANT_READ:
        c.want = EPOLLIN;
        return 0;
      case SSL_ERROR_WANT_WRITE:
        c.want = EPOLLOUT;
        return 0;
      case SSL_ERROR_ZERO_RETURN:
        last_error_ = "server sent close_notify";
        return -1;
      default: {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        last_error_ = absl::StrCat("TLS: ", buf, " (errno ", strerror(errno), ")");
        return -1;
      }
    }
  }

  void DriveRequest(size_t slot) {
    Conn& c = conns_[slot];
    for (;;) {
      if (c.state == Conn::State::kWriting) {
        ssize_t n = Write(c, frame_.data() + c.out_offset, frame_.size() - c.out_offset);
        if (n < 0) {
          Fail(slot, last_error_);
          return;
        }
        if (n == 0) {
          SetInterest(slot, c.want);
          return;
        }
        bytes_out_ += static_cast<uint64_t>(n);
        c.out_offset += static_cast<size_t>(n);
        if (c.out_offset == frame_.size()) {
          c.state = Conn::State::kReading;
          c.in_count = 0;
        }
      } else if (c.state == Conn::State::kReading) {
        ssize_t n =
            Read(c, read_buffer_.data(), std::min(read_buffer_.size(), frame_.size() - c.in_count));
        if (n < 0) {
          Fail(slot, last_error_);
          return;
        }
        if (n == 0) {
          SetInterest(slot, c.want);
          return;
        }
        bytes_in_ += static_cast<uint64_t>(n);
        c.in_count += static_cast<size_t>(n);
        if (c.in_count == frame_.size()) {
          OnResponse(slot);
        }
      } else {
        return;
      }
    }
  }

  void OnResponse(size_t slot) {
    Conn& c = conns_[slot];
    const uint64_t now = NowNs();
    switch (options_.workload) {
      case Workload::kRr:
        if (measuring_) {
          histogram_.Record(now - c.start_ns);
          ++requests_;
        }
        c.start_ns = now;
        c.out_offset = 0;
        c.state = Conn::State::kWriting;
        return;
      case Workload::kHs:
        if (measuring_) {
          histogram_.Record(now - c.start_ns);
          ++handshakes_;
          if (c.ssl && SSL_session_reused(c.ssl.get())) {
            ++resumed_;
          }
        }
        CloseConn(slot, true);
        StartConn(slot);
        return;
      case Workload::kIdle:
        histogram_.Record(now - c.start_ns);
        if (c.ssl && SSL_session_reused(c.ssl.get())) {
          ++resumed_;
        }
        c.state = Conn::State::kIdle;
        SetInterest(slot, EPOLLIN);
        ++setup_done_;
        --in_setup_;
        StartPending();
        return;
      case Workload::kBulk:
        return;
    }
  }

  void DriveBulk(size_t slot) {
    Conn& c = conns_[slot];
    // Read everything available first, so the echo never waits on us.
    for (;;) {
      ssize_t n = Read(c, read_buffer_.data(), read_buffer_.size());
      if (n < 0) {
        Fail(slot, last_error_);
        return;
      }
      if (n == 0) {
        break;
      }
      bytes_in_ += static_cast<uint64_t>(n);
    }
    bool write_waits_for_read = false;
    // A few chunks per wake-up at most, so one connection cannot starve the others.
    for (int i = 0; i < 4; ++i) {
      ssize_t n = Write(c, bulk_frame_.data() + c.out_offset, bulk_frame_.size() - c.out_offset);
      if (n < 0) {
        Fail(slot, last_error_);
        return;
      }
      if (n == 0) {
        write_waits_for_read = c.want == EPOLLIN;
        break;
      }
      bytes_out_ += static_cast<uint64_t>(n);
      c.out_offset += static_cast<size_t>(n);
      if (c.out_offset == bulk_frame_.size()) {
        c.out_offset = 0;
      }
    }
    // Writable interest stays on while streaming: either the socket is full (EPOLLOUT
    // says when it drains) or it has room and the next wake-up writes more. Only a TLS
    // write waiting for a read drops it.
    SetInterest(slot, EPOLLIN | (write_waits_for_read ? 0u : static_cast<uint32_t>(EPOLLOUT)));
  }

  void HoldIdle() {
    if (!options_.ready_file.empty()) {
      FILE* f = fopen(options_.ready_file.c_str(), "w");
      if (f != nullptr) {
        fprintf(f, "%zu\n", setup_done_);
        fclose(f);
      }
    }
    const uint64_t deadline = NowNs() + static_cast<uint64_t>(options_.hold_s * 1e9);
    while (!g_release_idle && NowNs() < deadline) {
      Poll(50);
    }
  }

  void PrintResult() {
    const double window_s = options_.workload == Workload::kIdle
                                ? 0
                                : static_cast<double>(measure_end_ns_ - measure_start_ns_) / 1e9;
    auto per_s = [&](double v) { return window_s > 0 ? v / window_s : 0.0; };
    auto us = [&](double q) { return static_cast<double>(histogram_.Percentile(q)) / 1e3; };
    std::string json = absl::StrFormat(
        "{\"workload\":\"%s\",\"label\":\"%s\",\"tls\":%s,\"resume\":%s,\"conns\":%d,"
        "\"size\":%d,\"window_s\":%.3f,\"requests\":%d,\"req_per_s\":%.1f,"
        "\"handshakes\":%d,\"conn_per_s\":%.1f,\"resumed\":%d,"
        "\"bytes_in\":%d,\"bytes_out\":%d,\"mb_per_s\":%.2f,"
        "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
        "\"established\":%d,\"dropped\":%d,\"setup_s\":%.3f,\"errors\":%d,"
        "\"last_error\":\"%s\"}",
        WorkloadName(options_.workload), options_.label, options_.tls ? "true" : "false",
        options_.resume ? "true" : "false", options_.conns,
        options_.workload == Workload::kBulk ? bulk_frame_.size() : frame_.size(), window_s,
        requests_, per_s(static_cast<double>(requests_)), handshakes_,
        per_s(static_cast<double>(handshakes_)), resumed_, bytes_in_, bytes_out_,
        per_s(static_cast<double>(bytes_in_)) / 1e6, us(0.5), us(0.9), us(0.99), us(0.999),
        static_cast<double>(histogram_.max()) / 1e3, setup_done_, dropped_idle_,
        static_cast<double>(setup_ns_) / 1e9, errors_, JsonEscape(last_error_));
    printf("%s\n", json.c_str());
    fflush(stdout);
  }

  static std::string JsonEscape(const std::string& s) {
    std::string out;
    for (char ch : s) {
      if (ch == '"' || ch == '\\') {
        out.push_back('\\');
        out.push_back(ch);
      } else if (static_cast<unsigned char>(ch) >= 0x20) {
        out.push_back(ch);
      }
    }
    return out;
  }

  Options options_;
  std::vector<uint8_t> frame_;
  std::vector<uint8_t> bulk_frame_;
  std::vector<uint8_t> read_buffer_;
  sockaddr_in address_{};
  int epoll_fd_ = -1;
  bssl::UniquePtr<SSL_CTX> ctx_;
  bssl::UniquePtr<SSL_SESSION> latest_session_;
  std::vector<uint8_t> verified_leaf_;  // DER of the leaf that passed a full verification.
  std::vector<Conn> conns_;
  std::deque<size_t> pending_;
  std::vector<size_t> restart_;
  int in_setup_ = 0;
  size_t setup_done_ = 0;
  size_t failed_setups_ = 0;
  uint64_t dropped_idle_ = 0;
  uint64_t run_start_ns_ = 0;
  uint64_t setup_ns_ = 0;
  uint64_t measure_start_ns_ = 0;
  uint64_t measure_end_ns_ = 0;
  bool measuring_ = false;
  LatencyHistogram histogram_;
  uint64_t requests_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  uint64_t handshakes_ = 0;
  uint64_t resumed_ = 0;
  uint64_t errors_ = 0;
  std::string last_error_;
};

void RaiseFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

constexpr char kUsage[] =
    "usage: loadgen --workload rr|bulk|hs|idle --port P [--host 127.0.0.1]\n"
    "  [--tls --ca FILE [--sni NAME] [--resume]] [--conns C] [--size BYTES]\n"
    "  [--duration S] [--warmup S] [--hold S] [--ready-file PATH] [--label TEXT]\n"
    "  [--setup-concurrency N] [--setup-timeout S] [--markers]\n"
    "  [--full-verify]  verify the whole chain on every handshake, not only the first\n";

int Main(int argc, char** argv) {
  absl::StatusOr<Flags> parsed = Flags::Parse(argc, argv);
  if (!parsed.ok()) {
    fprintf(stderr, "loadgen: %s\n%s", std::string(parsed.status().message()).c_str(), kUsage);
    return 2;
  }
  Flags& flags = *parsed;
  if (flags.Bool("help")) {
    fputs(kUsage, stdout);
    return 0;
  }
  Options options;
  const std::string workload = flags.String("workload", "rr");
  if (workload == "rr") {
    options.workload = Workload::kRr;
  } else if (workload == "bulk") {
    options.workload = Workload::kBulk;
  } else if (workload == "hs") {
    options.workload = Workload::kHs;
  } else if (workload == "idle") {
    options.workload = Workload::kIdle;
  } else {
    fprintf(stderr, "loadgen: --workload: unknown workload %s\n%s", workload.c_str(), kUsage);
    return 2;
  }
  options.host = flags.String("host", options.host);
  options.port = static_cast<int>(flags.Number("port", 0));
  options.tls = flags.Bool("tls");
  options.ca_file = flags.String("ca", "");
  options.sni = flags.String("sni", "");
  options.resume = flags.Bool("resume");
  options.conns =
      static_cast<int>(flags.Number("conns", options.workload == Workload::kHs ? 16 : 1));
  options.conns = static_cast<int>(flags.Number("workers", options.conns));
  options.size = static_cast<size_t>(flags.Number("size", 1024));
  options.bulk_chunk = static_cast<size_t>(flags.Number("chunk", 64 * 1024));
  options.duration_s = flags.Number("duration", options.duration_s);
  options.warmup_s = flags.Number("warmup", options.warmup_s);
  options.hold_s = flags.Number("hold", options.hold_s);
  options.setup_timeout_s = flags.Number("setup-timeout", options.setup_timeout_s);
  options.setup_concurrency =
      static_cast<int>(flags.Number("setup-concurrency", options.setup_concurrency));
  options.ready_file = flags.String("ready-file", "");
  options.label = flags.String("label", "");
  options.markers = flags.Bool("markers");
  options.full_verify = flags.Bool("full-verify");
  if (!flags.error().empty()) {
    fprintf(stderr, "loadgen: %s\n", flags.error().c_str());
    return 2;
  }
  if (options.port <= 0 || options.port > 65535 || options.conns <= 0 ||
      options.setup_concurrency <= 0) {
    fprintf(stderr, "loadgen: --port, --conns and --setup-concurrency must be positive\n%s",
            kUsage);
    return 2;
  }
  if (options.size < kMinOpMsgFrameSize || options.bulk_chunk < kMinOpMsgFrameSize) {
    fprintf(stderr, "loadgen: --size and --chunk must be at least %zu bytes\n", kMinOpMsgFrameSize);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGUSR1, OnSigusr1);
  RaiseFileLimit();
  LoadGenerator generator(std::move(options));
  absl::Status status = generator.Init();
  if (status.ok()) {
    status = generator.Run();
  }
  if (!status.ok()) {
    fprintf(stderr, "loadgen: %s\n", std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace
}  // namespace sidecar::bench

int main(int argc, char** argv) { return sidecar::bench::Main(argc, argv); }
