// UpstreamProbe asks the upstream mongod for `hello` (SPEC §8): at start, then again with
// backoff while it does not answer (100 ms doubling to 5 s), and every 10 s once it does, so
// that /ready and tls_sidecar_ready follow mongod going down and coming back. After the
// first answer (and whenever the advertised hosts change) it checks, off the loop, that the
// replica set advertises this sidecar's address and that mongod cannot be reached on a
// non-loopback address, and warns, naming them, when either is wrong: drivers connect to
// the advertised hosts and would go around the sidecar.
//
// Lives on the main loop: Create, Start and the destructor run on that loop's thread, and
// every callback runs there. Destroying it abandons an attempt in flight safely (its socket
// is freed by its own close callback).
#ifndef SIDECAR_PROXY_UPSTREAM_UPSTREAM_PROBE_H_
#define SIDECAR_PROXY_UPSTREAM_UPSTREAM_PROBE_H_

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/hello_probe.h"
#include "proxy/base/uv_handle.h"

namespace sidecar::proxy {

// HelloSummary, BuildHelloProbe and ParseHelloReply are the probe's bytes (protocol/).
using protocol::HelloSummary;

// SidecarAddresses is what the host check compares the advertised hosts with.
struct SidecarAddresses {
  uint16_t port = 0;                        // net.port
  std::vector<sockaddr_storage> listening;  // net.bindIp with net.port (may be wildcards)
  std::vector<sockaddr_storage> local;      // every address of this host's interfaces
  sockaddr_storage upstream{};              // net.upstream, resolved
};

// Resolver resolves "host" to its addresses (port 0); an empty result when it cannot.
using Resolver = std::function<std::vector<sockaddr_storage>(const std::string& host)>;
// SystemResolver is getaddrinfo (blocking: call it off the loop).
std::vector<sockaddr_storage> SystemResolver(const std::string& host);
// LocalInterfaceAddresses lists this host's interface addresses (uv_interface_addresses).
std::vector<sockaddr_storage> LocalInterfaceAddresses();

// AdvertisedHostWarnings returns one sentence per problem with the advertised hosts: a
// host that is this machine but not the sidecar's address (e.g. mongod's own port), or,
// when no advertised host is this sidecar at all, the list of them. Hosts that do not
// resolve are left out (the caller cannot tell where they point). Blocking when `resolve`
// is: call it off the loop.
std::vector<std::string> AdvertisedHostWarnings(const HelloSummary& hello,
                                                const SidecarAddresses& sidecar,
                                                const Resolver& resolve);

// ExposedUpstreamWarnings returns a sentence when mongod answers on an address other than
// loopback: the configured upstream itself, or the upstream's port on one of this host's
// non-loopback addresses (tried with a TCP connect of `timeout_ms`), skipping addresses the
// sidecar itself listens on. Blocking: call it off the loop.
std::vector<std::string> ExposedUpstreamWarnings(const SidecarAddresses& sidecar, int timeout_ms);

class UpstreamProbe {
 public:
  struct Options {
    sockaddr_storage upstream{};  // resolved net.upstream
    std::string upstream_name;    // net.upstream as configured, for messages
    int proxy_protocol = 0;       // net.upstreamProxyProtocol: send that PROXY header first
    uint64_t first_retry_ms = 100;
    uint64_t max_retry_ms = 5000;
    uint64_t recheck_ms = 10000;
    uint64_t attempt_timeout_ms = 3000;
    // When set, the host and exposure checks run (on libuv's thread pool) after the first
    // answer and whenever the advertised hosts change; warnings are logged.
    std::optional<SidecarAddresses> check_addresses;
    // Called on libuv's thread pool with each run's findings (the exposure sentences only
    // when that check ran, else nullopt), for readiness and the status page: thread-safe.
    std::function<void(std::vector<std::string> advertised,
                       std::optional<std::vector<std::string>> exposed)>
        on_findings;
  };
  // OnResult runs on the loop after every attempt: OK when mongod answered hello, else why
  // not ("127.0.0.1:27018: connection refused").
  using OnResult = absl::AnyInvocable<void(const absl::Status& status)>;

  static absl::StatusOr<std::unique_ptr<UpstreamProbe>> Create(uv_loop_t* loop, Options options,
                                                               OnResult on_result);
  ~UpstreamProbe();
  UpstreamProbe(const UpstreamProbe&) = delete;
  UpstreamProbe& operator=(const UpstreamProbe&) = delete;

  // Start makes the first attempt now (its result comes later, from the loop).
  void Start();

 private:
  struct Attempt;
  struct CheckJob;

  UpstreamProbe(uv_loop_t* loop, Options options, OnResult on_result);
  void StartAttempt();
  void Finish(absl::StatusOr<HelloSummary> result);
  void FailSoon(absl::Status status);
  void ScheduleNext(uint64_t delay_ms);
  void MaybeRunChecks(const HelloSummary& hello);

  static void OnTimer(uv_timer_t* timer);
  static void OnConnected(uv_connect_t* req, int status);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWritten(uv_write_t* req, int status);

  uv_loop_t* loop_;
  Options options_;
  OnResult on_result_;
  UvHandle<uv_timer_t> timer_;  // the next attempt, or the deadline of the current one
  Attempt* attempt_ = nullptr;  // in flight; owned by its socket's close callback
  uint64_t next_retry_ms_;
  int32_t next_request_id_ = 1;
  bool was_ok_ = false;
  bool reported_ = false;
  std::vector<std::string> checked_hosts_;
  bool checks_ran_ = false;
  absl::Status pending_error_;  // a failure found synchronously, reported by the timer
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_UPSTREAM_UPSTREAM_PROBE_H_
