// Server is the running sidecar: it loads certificates, binds the listeners of every worker,
// runs the workers' loops, and on the main thread's loop handles signals (SIGTERM/SIGINT:
// drain and exit; SIGHUP: reload) and the control plane. One per process, made by main.cc.
#ifndef SIDECAR_PROXY_SERVER_SERVER_H_
#define SIDECAR_PROXY_SERVER_SERVER_H_

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy/base/uv_handle.h"
#include "proxy/config/config.h"
#include "proxy/net/shared_state.h"
#include "proxy/net/worker.h"
#include "proxy/observe/metrics.h"
#include "proxy/observe/metrics_endpoint.h"
#include "proxy/observe/readiness.h"
#include "proxy/observe/status_board.h"
#include "proxy/ocsp/ocsp_checker.h"
#include "proxy/ocsp/ocsp_metrics.h"
#include "proxy/ocsp/ocsp_stapler.h"
#include "proxy/server/certificate_watcher.h"
#include "proxy/server/port_lock.h"
#include "proxy/server/privileges.h"
#include "proxy/server/takeover.h"
#include "proxy/upstream/upstream_probe.h"

namespace sidecar::proxy {

class Server {
 public:
  // `takeover_from` empty: a normal start that binds and claims every port. Otherwise the
  // takeover socket of the running sidecar whose listening sockets this one continues
  // (takeover.h): the whole configuration is loaded and checked before it is asked.
  explicit Server(Config config, std::string takeover_from = "");
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Run starts everything and returns when the sidecar has shut down: OK after a clean
  // drain, an error when start-up failed (the message names the file or address).
  absl::Status Run();

  // Reload rereads every certificate, key, CA and CRL into a new snapshot and swaps it in;
  // on failure the old one stays and the status says which file and why. Main loop only.
  absl::Status Reload();

 private:
  // Start opens everything in order, each step returning the error that stops the start.
  absl::Status Start();
  absl::Status CheckRunAsUser(std::optional<RunAsUser>* run_as);
  // LoadCertificates builds the first snapshot and starts the expiry timer and the watcher.
  absl::Status LoadCertificates();
  // ResolveRoutes resolves net.upstream and the egress routes into shared_.
  absl::Status ResolveRoutes();
  absl::StatusOr<std::vector<sockaddr_storage>> ResolveListenAddresses();
  absl::Status OpenControlPlane();
  // OpenListeners makes one worker per thread (net.threads, 0: one per core), each bound to
  // every listening address (a port of 0 there becomes the bound one), with the port claims,
  // the control and takeover sockets and /metrics; or, at a takeover, workers on the running
  // sidecar's sockets (AdoptHandover). Returns the thread count.
  absl::StatusOr<int> OpenListeners(std::vector<sockaddr_storage>& listen_addresses);
  absl::Status OpenMetricsEndpoint();
  absl::Status GiveRootUp(const RunAsUser& run_as);
  absl::Status InstallSignals();
  // ClaimPorts takes a PortLock on every ingress and egress listening address, so that
  // no other sidecar process can join them; the error names the setting and the holder.
  absl::Status ClaimPorts(const std::vector<sockaddr_storage>& listen_addresses);
  void RaiseFileLimit();
  // ClampConnectionLimits lowers limits.maxConnections and maxEgressConnections to what
  // RLIMIT_NOFILE allows once everything of the start is open, keeping a reserve for the
  // control socket, /ready and /metrics, the upstream probe and reloads.
  void ClampConnectionLimits();
  void BeginDrain();
  // The takeover, both sides (server_takeover.cc). AdoptHandover receives the running
  // sidecar's sockets and state and builds `threads` workers on them; FinishTakeover, once
  // they serve, tells the old process to stop and binds what it held apart from the sockets
  // (control socket, metrics listener). OfferHandover and HandOver are the running side's
  // hooks; StartTakeoverSource listens for a takeover. Main loop only.
  absl::Status AdoptHandover(const std::vector<sockaddr_storage>& listen_addresses, int threads);
  void FinishTakeover();
  absl::StatusOr<TakeoverSource::Offer> OfferHandover();
  void HandOver();
  absl::Status StartTakeoverSource();
  void FinishIfDrained();
  static void OnSignal(uv_signal_t* handle, int signum);
  static void OnDrainTick(uv_timer_t* timer);
  // Logs a warning for each loaded certificate that expires within 21 days;
  // at start, after each reload, and daily from expiry_timer_ (main loop only).
  void WarnAboutExpiringCertificates();
  // Logs, in one line, whether TLS clients must present a certificate (at start).
  void LogClientCertificatePolicy();
  static void OnExpiryTimer(uv_timer_t* timer);

  Config config_;
  Metrics metrics_;
  SharedState shared_;
  uv_loop_t loop_{};
  std::vector<PortLock> port_locks_;  // held until the process ends
  std::vector<std::string> port_lock_names_;  // the address each lock claims, for hand-over
  std::string takeover_from_;
  std::optional<TakeoverClient> takeover_client_;  // between AdoptHandover and FinishTakeover
  std::unique_ptr<TakeoverSource> takeover_;
  UvHandle<uv_timer_t> handover_timer_;  // from "stop accepting" to the drain
  // Between stopping accepting and draining at a takeover (HandOver).
  static constexpr uint64_t kHandOverGraceMs = 500;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<UvHandle<uv_signal_t>> signals_;
  UvHandle<uv_timer_t> drain_timer_;
  UvHandle<uv_timer_t> expiry_timer_;  // daily; unreferenced, so it never holds the loop open
  std::unique_ptr<CertificateWatcher> certificate_watcher_;  // net.tls.watchCertificates
  uint64_t drain_deadline_ms_ = 0;
  bool draining_ = false;
  bool deadline_passed_ = false;  // limits.drainSeconds is over: close at message boundaries
  bool forced_ = false;           // the boundary grace is over too: cut what is left
  // The control socket and what it acts on (server_control.h); closed once drained.
  class ControlPlane;
  std::unique_ptr<ControlPlane> control_;
  void StartUpstreamProbe(const std::vector<sockaddr_storage>& listen_addresses);
  void PublishCertificateExpiries();
  Readiness readiness_{metrics_};
  // What the status page shows; the control plane publishes, the metrics endpoint renders.
  std::shared_ptr<StatusBoard> status_board_ = std::make_shared<StatusBoard>();
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<UpstreamProbe> upstream_probe_;
  // OCSP (net.tls.ocspEnabled): stapling of the server certificate, checks of peers'.
  absl::Status StartOcsp();
  void CloseOcsp();
  std::unique_ptr<OcspMetrics> ocsp_metrics_;
  std::shared_ptr<OcspChecker> ocsp_checker_;
  std::unique_ptr<OcspStapler> ocsp_stapler_;
};

// kVersion is the sidecar's version; TlsLibraryName() names the TLS library it runs on.
inline constexpr char kVersion[] = "0.1.0";
std::string TlsLibraryName();

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_SERVER_H_
