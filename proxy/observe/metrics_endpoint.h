// MetricsEndpoint serves HTTP on metrics.listen (SPEC §5, §7, §8):
//   GET /metrics  Prometheus text format (0.0.4) of the registry
//   GET /ready    200 "ready", or 503 with one line per unmet condition
//   GET /live     200 "live" whenever the process answers at all: a liveness probe that,
//                 unlike /ready, does not depend on mongod or on certificates, so a down
//                 upstream makes an orchestrator stop routing to the sidecar, not restart it
//   GET / and /status   the HTML status page (status_page.h) from the StatusBoard; because
//                 it names clients, only on a loopback listener unless metrics.statusPage
//                 is set (403 with the reason otherwise)
// Anything else is 404, matched on the path exactly as sent (no case folding, no dot
// segments, no %XX decoding); methods other than GET and HEAD are 405.
//
// HTTP is civetweb's (Debian's libcivetweb, the server prometheus-cpp's exposer uses), on
// threads of its own, so a scrape never runs on a data loop. Enough threads and a bound on
// reading a request keep /ready answering while idle or dribbling connections hold some of
// them (SPEC §10; tests/hostile/test_metrics_port.py). No TLS port is configured, so
// civetweb never loads OpenSSL (it would dlopen libssl only for an "s" port).
//
// Owned by Server; built on the main thread, destroyed there (which stops civetweb and
// joins its threads). The registry and the readiness must outlive it.
#ifndef SIDECAR_PROXY_OBSERVE_METRICS_ENDPOINT_H_
#define SIDECAR_PROXY_OBSERVE_METRICS_ENDPOINT_H_

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proxy/observe/readiness.h"
#include "proxy/observe/status_board.h"

struct mg_context;
struct mg_connection;

namespace sidecar::proxy {

// StatusPageOptions: where the status page's data comes from (none: / is 404) and whether
// it may be served on a listener that is not loopback (metrics.statusPage).
struct StatusPageOptions {
  std::shared_ptr<const StatusBoard> board;
  bool on_any_listener = false;
};

// IsLoopbackListen: the host of `listen` ("127.0.0.1:9442", "[::1]:0", "localhost:9442")
// is a loopback address, so only this machine can reach it.
bool IsLoopbackListen(const std::string& listen);

class MetricsEndpoint {
 public:
  // Create binds `listen` ("127.0.0.1:9442", "[::1]:9442"; port 0 picks a free port) and
  // starts serving; with a board in `status_page`, / and /status serve the status page
  // (when `listen` is loopback or on_any_listener is set; 403 otherwise). Fails (UnavailableError naming the address and why) when it cannot bind.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Create(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
      const Readiness* readiness, StatusPageOptions status_page = {});
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // port is the TCP port actually bound.
  int port() const { return port_; }

 private:
  MetricsEndpoint(std::shared_ptr<prometheus::Registry> registry, const Readiness* readiness)
      : registry_(std::move(registry)), readiness_(readiness) {}

  static int OnMetrics(mg_connection* connection, void* self);
  static int OnReady(mg_connection* connection, void* self);
  static int OnLive(mg_connection* connection, void* self);
  static int OnStatusPage(mg_connection* connection, void* self);

  std::shared_ptr<prometheus::Registry> registry_;
  const Readiness* readiness_;
  std::shared_ptr<const StatusBoard> board_;
  bool page_allowed_ = false;  // loopback listener, or metrics.statusPage
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_METRICS_ENDPOINT_H_
