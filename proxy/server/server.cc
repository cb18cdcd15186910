#include "proxy/server/server.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "certs/tls_snapshot.h"
#include "proxy/base/socket_address.h"
#include "proxy/config/runtime_dir.h"
#include "proxy/observe/log.h"
#include "proxy/server/privileges.h"
#include "proxy/server/server_control.h"

namespace sidecar::proxy {
namespace {

// kDrainBoundaryGraceMs: after limits.drainSeconds, a connection in the middle of a message
// gets this long to reach the end of it before it is cut. A reply already streaming at the
// deadline ends within milliseconds on the links a sidecar serves (the 48 MB maximum message
// takes well under this at 100 MB/s), and cutting it mid-message costs the client the whole
// reply; a peer that stalls mid-message will not finish it at all, so a longer wait buys
// nothing and only delays the exit past what orchestrators wait before their SIGKILL.
constexpr uint64_t kDrainBoundaryGraceMs = 2000;
}  // namespace

std::string TlsLibraryName() {
  // Debian's BoringSSL keeps OpenSSL's version macros for compatibility; the name is ours.
  return "BoringSSL";
}

Server::Server(Config config, std::string takeover_from)
    : config_(std::move(config)),
      takeover_from_(std::move(takeover_from)),
      metrics_(kVersion, TlsLibraryName()),
      shared_(config_, metrics_) {
  uv_loop_init(&loop_);
}

Server::~Server() {
  control_.reset();  // closes the control socket (and removes its file) on this loop
  takeover_.reset();
  upstream_probe_.reset();  // its handles must close while the loop still runs
  signals_.clear();
  drain_timer_.Close();
  handover_timer_.Close();
  expiry_timer_.Close();
  certificate_watcher_.reset();
  CloseOcsp();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

absl::Status Server::Start() {
  RaiseFileLimit();
  std::optional<RunAsUser> run_as;
  if (absl::Status status = CheckRunAsUser(&run_as); !status.ok()) {
    return status;
  }
  for (const std::string& notice : config_.notices) {
    Log(Severity::kInfo, Component::kControl, "notice", {{"notice", notice}});
  }
  // Certificates first: a bad file is a start-up error, before any port is taken.
  if (absl::Status status = LoadCertificates(); !status.ok()) {
    return status;
  }
  shared_.mode.store(config_.mode);
  metrics_.SetMode(config_.mode);
  readiness_.SetServing(config_.mode, shared_.tls.load()->server_context() != nullptr);
  if (absl::Status status = ResolveRoutes(); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::vector<sockaddr_storage>> listen_addresses = ResolveListenAddresses();
  if (!listen_addresses.ok()) {
    return listen_addresses.status();
  }
  absl::StatusOr<int> threads = OpenListeners(*listen_addresses);
  if (!threads.ok()) {
    return threads.status();
  }
  // What the start opens is open, so what is left of the descriptor limit is known; counted
  // before root is given up, as /proc/self/fd may then no longer be readable.
  ClampConnectionLimits();
  // Every listener is bound and every key read: root is no longer needed. Before the loops
  // start, so no connection is ever served as root.
  if (run_as) {
    if (absl::Status status = GiveRootUp(*run_as); !status.ok()) {
      return status;
    }
  }
  if (absl::Status status = InstallSignals(); !status.ok()) {
    return status;
  }
  for (auto& worker : workers_) {
    worker->Start();
  }
  if (takeover_client_) {
    FinishTakeover();
  }
  readiness_.SetListenersBound(true);
  StartUpstreamProbe(*listen_addresses);
  std::vector<std::string> bound;
  for (const auto& address : *listen_addresses) {
    bound.push_back(FormatAddress(address));
  }
  Log(Severity::kInfo, Component::kNetwork, "listening",
      {{"addresses", absl::StrJoin(bound, ",")},
       {"upstream", config_.upstream.ToString()},
       {"mode", ModeName(config_.mode)},
       {"modeSource", ModeSourceName(config_.mode_source)},
       {"threads", static_cast<int64_t>(*threads)},
       {"version", kVersion},
       {"tlsLibrary", TlsLibraryName()}});
  return absl::OkStatus();
}

absl::Status Server::CheckRunAsUser(std::optional<RunAsUser>* run_as) {
  // The user is looked up before anything is bound, so a typo fails fast.
  if (!config_.run_as_user.empty()) {
    auto user = LookUpUser(config_.run_as_user);
    if (!user.ok()) {
      return user.status();
    }
    *run_as = *user;
    // Marking the sidecar's own sockets (SO_MARK) needs CAP_NET_ADMIN, which a dropped root
    // no longer has: every transparent egress connection would fail later, one by one.
    if (config_.egress_transparent_listen && geteuid() == 0 && (*run_as)->uid != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--user ", (*run_as)->name,
          ": egress.transparent marks the sidecar's sockets with SO_MARK, which needs "
          "CAP_NET_ADMIN; without root, run under systemd with "
          "AmbientCapabilities=CAP_NET_ADMIN instead"));
    }
  } else if (geteuid() == 0) {
    Log(Severity::kWarning, Component::kControl,
        "running as root; start with --user NAME to give root up once the listeners are bound "
        "and the keys are read",
        {});
  }
  return absl::OkStatus();
}

absl::Status Server::ResolveRoutes() {
  auto upstream = Resolve(config_.upstream.host, config_.upstream.port);
  if (!upstream.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("net.upstream: ", upstream.status().message()));
  }
  shared_.upstream_address = upstream->front();

  for (const EgressPeer& peer : config_.egress_peers) {
    EgressRoute route{peer.listen, peer.target};
    if (IsIpLiteral(peer.target.host)) {
      auto target = Resolve(peer.target.host, peer.target.port);
      if (!target.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("egress.peers.target: ", target.status().message()));
      }
      route.target_address = target->front();
    } else if (auto target = Resolve(peer.target.host, peer.target.port); !target.ok()) {
      // Not fatal: names are resolved per connection, and a peer may not exist yet.
      Log(Severity::kWarning, Component::kEgress,
          "egress peer does not resolve now; it is looked up again for every connection",
          {{"target", peer.target.ToString()}, {"error", std::string(target.status().message())}});
    }
    shared_.egress_routes.push_back(std::move(route));
  }

  if (config_.egress_transparent_listen) {
    EgressRoute route;
    route.listen = *config_.egress_transparent_listen;
    route.transparent = true;
    shared_.egress_routes.push_back(std::move(route));
    shared_.outbound_mark = static_cast<uint32_t>(config_.egress_transparent_mark);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<sockaddr_storage>> Server::ResolveListenAddresses() {
  std::vector<sockaddr_storage> listen_addresses;
  for (const std::string& ip : config_.bind_ips) {
    auto resolved = Resolve(ip, config_.port);
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("net.bindIp: ", resolved.status().message()));
    }
    listen_addresses.push_back(resolved->front());
  }
  return listen_addresses;
}

absl::Status Server::OpenControlPlane() {
  if (config_.control_socket == DefaultControlSocketPath(config_.port)) {
    std::string dir = config_.control_socket.substr(0, config_.control_socket.rfind('/'));
    if (absl::Status status = PrepareRuntimeDirectory(dir); !status.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(config_.Origin("control.socket"), ": ", status.message()));
    }
  }
  auto control = ControlPlane::Create(*this);
  if (!control.ok()) {
    return control.status();
  }
  control_ = *std::move(control);
  return absl::OkStatus();
}

absl::StatusOr<int> Server::OpenListeners(std::vector<sockaddr_storage>& listen_addresses) {
  int threads = config_.threads > 0 ? config_.threads
                                    : static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) {
    threads = 1;
  }
  if (!takeover_from_.empty()) {
    // The running sidecar keeps its control socket and /metrics until it stops accepting;
    // this one binds them after (FinishTakeover).
    if (absl::Status status = AdoptHandover(listen_addresses, threads); !status.ok()) {
      return status;
    }
    return threads;
  }
  // Every port before the control socket, so that a second sidecar on the same port is told
  // so (with the first one's pid), whichever control socket it was given.
  if (absl::Status status = ClaimPorts(listen_addresses); !status.ok()) {
    return status;
  }
  if (absl::Status status = OpenControlPlane(); !status.ok()) {
    return status;
  }
  if (absl::Status status = StartTakeoverSource(); !status.ok()) {
    return status;
  }
  for (int i = 0; i < threads; ++i) {
    auto worker = Worker::Create(shared_, i, listen_addresses);
    if (!worker.ok()) {
      return worker.status();
    }
    workers_.push_back(*std::move(worker));
  }
  if (absl::Status status = OpenMetricsEndpoint(); !status.ok()) {
    return status;
  }
  return threads;
}

absl::Status Server::OpenMetricsEndpoint() {
  if (config_.metrics_listen.empty()) {
    return absl::OkStatus();
  }
  auto endpoint =
      MetricsEndpoint::Create(config_.metrics_listen, metrics_.registry(), &readiness_,
                              StatusPageOptions{status_board_, config_.metrics_status_page});
  if (!endpoint.ok()) {
    // Name what set the address: the flag (--metrics) or the file's metrics.listen.
    std::string message(endpoint.status().message());
    if (message.starts_with("metrics.listen")) {
      message = config_.Origin("metrics.listen") + message.substr(14);
    }
    return absl::Status(endpoint.status().code(), message);
  }
  metrics_endpoint_ = *std::move(endpoint);
  return absl::OkStatus();
}

absl::Status Server::GiveRootUp(const RunAsUser& run_as) {
  // The socket goes to the user, and so does the default runtime directory the sidecar
  // made for it: the user then removes its socket at exit, and root's `ctl` trusts a
  // socket in a directory only its server's user can write to. A takeover binds its
  // sockets after this, as the user already.
  std::vector<std::string> handed_over;
  if (takeover_from_.empty()) {
    handed_over = {config_.control_socket, TakeoverSocketPath(config_.control_socket)};
  }
  if (takeover_from_.empty() && config_.control_socket == DefaultControlSocketPath(config_.port)) {
    handed_over.push_back(config_.control_socket.substr(0, config_.control_socket.rfind('/')));
  }
  if (absl::Status status = DropPrivileges(run_as, handed_over); !status.ok()) {
    return status;
  }
  Log(Severity::kInfo, Component::kControl, "gave root up",
      {{"user", run_as.name},
       {"uid", static_cast<int64_t>(run_as.uid)},
       {"gid", static_cast<int64_t>(run_as.gid)}});
  return absl::OkStatus();
}

absl::Status Server::InstallSignals() {
  for (int signum : {SIGTERM, SIGINT, SIGHUP}) {
    auto handle = UvHandle<uv_signal_t>::Create(
        "uv_signal_init", [&](uv_signal_t* s) { return uv_signal_init(&loop_, s); });
    if (!handle.ok()) {
      return handle.status();
    }
    handle->get()->data = this;
    uv_signal_start(handle->get(), &Server::OnSignal, signum);
    signals_.push_back(*std::move(handle));
  }
  // SIGPIPE would kill us when a peer goes away mid-write; libuv reports EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  return absl::OkStatus();
}

absl::Status Server::Run() {
  if (absl::Status status = Start(); !status.ok()) {
    for (auto& worker : workers_) {
      worker->Post([](Worker& w) { w.StopAccepting(); });
    }
    workers_.clear();
    return status;
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& worker : workers_) {
    worker->Join();
  }
  workers_.clear();
  Log(Severity::kInfo, Component::kControl, "stopped", {});
  return absl::OkStatus();
}

void Server::OnSignal(uv_signal_t* handle, int signum) {
  auto* self = static_cast<Server*>(handle->data);
  if (signum == SIGHUP) {
    (void)self->Reload();
    return;
  }
  self->BeginDrain();
}

void Server::BeginDrain() {
  if (draining_) {
    return;
  }
  draining_ = true;
  Log(Severity::kInfo, Component::kControl,
      "shutting down: listeners closed; idle connections close now, requests in flight get "
      "drainSeconds for their replies",
      {{"drainSeconds", config_.drain_seconds},
       {"connections", static_cast<int64_t>(shared_.connections.load())}});
  for (auto& worker : workers_) {
    worker->Post([](Worker& w) {
      w.StopAccepting();
      w.DrainConnections();
    });
  }
  // /metrics stays up through the drain (the connections going down are worth seeing);
  // /ready says 503 from now on, and the probe stops.
  readiness_.SetDraining();
  upstream_probe_.reset();
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&loop_, t); });
  if (timer.ok()) {
    drain_timer_ = *std::move(timer);
    drain_timer_.get()->data = this;
    drain_deadline_ms_ = uv_now(&loop_) + static_cast<uint64_t>(config_.drain_seconds) * 1000;
    uv_timer_start(drain_timer_.get(), &Server::OnDrainTick, 50, 50);
  }
}

void Server::OnDrainTick(uv_timer_t* timer) {
  auto* self = static_cast<Server*>(timer->data);
  self->FinishIfDrained();
}

void Server::FinishIfDrained() {
  if (shared_.connections.load() == 0) {
    if (control_) {
      control_->Close();
    }
    takeover_.reset();
    signals_.clear();
    drain_timer_.Close();
    expiry_timer_.Close();
    certificate_watcher_.reset();
    CloseOcsp();
    return;  // the main loop now has nothing left and Run() joins the workers
  }
  uint64_t now = uv_now(&loop_);
  if (!deadline_passed_ && now >= drain_deadline_ms_) {
    deadline_passed_ = true;
    Log(Severity::kWarning, Component::kControl,
        "drain window over; closing connections with requests still in flight at the next "
        "message boundary",
        {{"connections", shared_.connections.load()}, {"drainSeconds", config_.drain_seconds}});
    for (auto& worker : workers_) {
      worker->Post([](Worker& w) { w.OnDrainDeadline(); });
    }
  }
  if (!forced_ && now >= drain_deadline_ms_ + kDrainBoundaryGraceMs) {
    forced_ = true;
    Log(Severity::kWarning, Component::kControl,
        "no message boundary reached after the drain window; cutting the remaining connections",
        {{"connections", shared_.connections.load()},
         {"graceMs", static_cast<int64_t>(kDrainBoundaryGraceMs)}});
    for (auto& worker : workers_) {
      worker->Post([](Worker& w) { w.CloseAll(CloseReason::kShutdown); });
    }
  }
}

void Server::StartUpstreamProbe(const std::vector<sockaddr_storage>& listen_addresses) {
  UpstreamProbe::Options options;
  options.upstream = shared_.upstream_address;
  options.upstream_name = config_.upstream.ToString();
  options.proxy_protocol = config_.upstream_proxy_protocol;
  SidecarAddresses addresses;
  addresses.port = config_.port;
  addresses.listening = listen_addresses;
  addresses.local = LocalInterfaceAddresses();
  addresses.upstream = shared_.upstream_address;
  options.check_addresses = std::move(addresses);
  options.on_findings = [board = status_board_](std::vector<std::string> advertised,
                                                std::optional<std::vector<std::string>> exposed) {
    board->SetTopology(std::move(advertised), std::move(exposed));
  };
  auto probe = UpstreamProbe::Create(&loop_, std::move(options), [this](const absl::Status& s) {
    readiness_.SetUpstream(s);
  });
  if (!probe.ok()) {
    // Without a probe /ready stays 503 and says why; serving goes on.
    readiness_.SetUpstream(probe.status());
    Log(Severity::kError, Component::kNetwork, "cannot probe the upstream",
        {{"error", std::string(probe.status().message())}});
    return;
  }
  upstream_probe_ = *std::move(probe);
  upstream_probe_->Start();
}

}  // namespace sidecar::proxy
