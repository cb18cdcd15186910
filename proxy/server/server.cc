#include "proxy/server/server.h"

#include <dirent.h>
#include <openssl/crypto.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <optional>
#include <set>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "certs/certificate_info.h"
#include "certs/pem_file.h"
#include "certs/tls_snapshot.h"
#include "proxy/base/socket_address.h"
#include "proxy/config/runtime_dir.h"
#include "proxy/observe/log.h"
#include "proxy/server/privileges.h"
#include "proxy/server/server_control.h"

namespace sidecar::proxy {
namespace {

// A certificate expiring within this many days is warned about at start, after a reload and
// once a day, early enough for a rotation that waits on another team.
constexpr int kExpiryWarningDays = 21;

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
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

void Server::RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  Log(Severity::kInfo, Component::kControl, "open file limit",
      {{"before", static_cast<int64_t>(before)},
       {"now", static_cast<int64_t>(limit.rlim_cur)}});
}

void Server::ClampConnectionLimits() {
  // Descriptors kept free of connections: the signal pipes opened after the count,
  // control-socket clients, /ready and /metrics scrapes, the upstream probe, certificate
  // reloads and a refused connection being closed on each loop. Without it a flood leaves
  // the sidecar unable to answer its operator.
  constexpr int64_t kDescriptorReserve = 24;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return;
  }
  int64_t in_use = 0;
  if (DIR* dir = opendir("/proc/self/fd"); dir != nullptr) {
    while (readdir(dir) != nullptr) {
      ++in_use;
    }
    closedir(dir);
    in_use -= 3;  // ".", ".." and the directory's own descriptor
  }
  // Each admitted connection holds two descriptors: its client's and the one it dials.
  int64_t budget =
      std::max<int64_t>(static_cast<int64_t>(limit.rlim_cur) - in_use - kDescriptorReserve, 4) /
      2;
  int64_t wanted = config_.max_connections + config_.max_egress_connections;
  if (wanted <= budget) {
    return;
  }
  // Shared in proportion to the configured limits, neither below one.
  int64_t egress =
      std::max<int64_t>(1, config_.max_egress_connections * budget / wanted);
  int64_t ingress = std::max<int64_t>(1, budget - egress);
  shared_.max_connections = std::min(config_.max_connections, ingress);
  shared_.max_egress_connections = std::min(config_.max_egress_connections, egress);
  Log(Severity::kWarning, Component::kControl,
      "connection limits lowered to fit the open file limit (each connection takes two "
      "descriptors); raise it (ulimit -n, LimitNOFILE) to allow the configured ones",
      {{"openFileLimit", static_cast<int64_t>(limit.rlim_cur)},
       {"descriptorsInUse", in_use},
       {"reserve", kDescriptorReserve},
       {"maxConnections", shared_.max_connections},
       {"configuredMaxConnections", config_.max_connections},
       {"maxEgressConnections", shared_.max_egress_connections},
       {"configuredMaxEgressConnections", config_.max_egress_connections}});
}

absl::Status Server::Start() {
  RaiseFileLimit();
  // The user is looked up before anything is bound, so a typo fails fast.
  std::optional<RunAsUser> run_as;
  if (!config_.run_as_user.empty()) {
    auto user = LookUpUser(config_.run_as_user);
    if (!user.ok()) {
      return user.status();
    }
    run_as = *user;
    // Marking the sidecar's own sockets (SO_MARK) needs CAP_NET_ADMIN, which a dropped root
    // no longer has: every transparent egress connection would fail later, one by one.
    if (config_.egress_transparent_listen && geteuid() == 0 && run_as->uid != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--user ", run_as->name,
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
  for (const std::string& notice : config_.notices) {
    Log(Severity::kInfo, Component::kControl, "notice", {{"notice", notice}});
  }

  // Certificates first: a bad file is a start-up error, before any port is taken.
  auto snapshot = certs::TlsSnapshot::Create(config_.tls);
  if (!snapshot.ok()) {
    return config_.NameOrigin(snapshot.status());
  }
  shared_.tls.store(*snapshot);
  for (const auto& cert : (*snapshot)->certificates()) {
    Log(Severity::kInfo, Component::kTls, "certificate loaded",
        {{"role", cert.role},
         {"subject", cert.subject},
         {"notAfter", cert.not_after},
         {"sha1", cert.sha1_hex}});
  }
  readiness_.SetCertificatesLoaded(true);
  LogClientCertificatePolicy();
  PublishCertificateExpiries();
  WarnAboutExpiringCertificates();
  for (const std::string& warning :
       certs::FilePermissionWarnings(config_.tls, config_.config_file)) {
    Log(Severity::kWarning, Component::kTls, "file permissions", {{"warning", warning}});
  }
  auto expiry_timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&loop_, t); });
  if (!expiry_timer.ok()) {
    return expiry_timer.status();
  }
  expiry_timer_ = *std::move(expiry_timer);
  expiry_timer_.get()->data = this;
  constexpr uint64_t kDayMs = 24 * 60 * 60 * 1000;
  uv_timer_start(expiry_timer_.get(), &Server::OnExpiryTimer, kDayMs, kDayMs);
  // Daily warnings must not keep a draining sidecar from exiting.
  uv_unref(expiry_timer_.base());
  if (config_.watch_certificates) {
    auto watcher = CertificateWatcher::Create(&loop_, config_.tls, [this] { (void)Reload(); });
    if (!watcher.ok()) {
      return watcher.status();
    }
    certificate_watcher_ = *std::move(watcher);
    Log(Severity::kInfo, Component::kTls, "watching certificate files for changes",
        {{"directories", absl::StrJoin(certificate_watcher_->directories(), ",")}});
  }
  shared_.mode.store(config_.mode);
  metrics_.SetMode(config_.mode);
  readiness_.SetServing(config_.mode, (*snapshot)->server_context() != nullptr);

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

  std::vector<sockaddr_storage> listen_addresses;
  for (const std::string& ip : config_.bind_ips) {
    auto resolved = Resolve(ip, config_.port);
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("net.bindIp: ", resolved.status().message()));
    }
    listen_addresses.push_back(resolved->front());
  }
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
  } else {
    // Every port before the control socket, so that a second sidecar on the same port is
    // told so (with the first one's pid), whichever control socket it was given.
    if (absl::Status status = ClaimPorts(listen_addresses); !status.ok()) {
      return status;
    }
    if (absl::Status status = StartControlPlane(); !status.ok()) {
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
    if (absl::Status status = StartMetricsEndpoint(); !status.ok()) {
      return status;
    }
  }
  std::vector<std::string> bound;
  for (const auto& address : listen_addresses) {
    bound.push_back(FormatAddress(address));
  }

  // What the start opens is open, so what is left of the descriptor limit is known; counted
  // before root is given up, as /proc/self/fd may then no longer be readable.
  ClampConnectionLimits();

  // Every listener is bound and every key read: root is no longer needed. Before the loops
  // start, so no connection is ever served as root.
  if (run_as) {
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
    if (absl::Status status = DropPrivileges(*run_as, handed_over); !status.ok()) {
      return status;
    }
    Log(Severity::kInfo, Component::kControl, "gave root up",
        {{"user", run_as->name},
         {"uid", static_cast<int64_t>(run_as->uid)},
         {"gid", static_cast<int64_t>(run_as->gid)}});
  }

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

  for (auto& worker : workers_) {
    worker->Start();
  }
  if (takeover_client_) {
    FinishTakeover();
  }
  readiness_.SetListenersBound(true);
  StartUpstreamProbe(listen_addresses);
  Log(Severity::kInfo, Component::kNetwork, "listening",
      {{"addresses", absl::StrJoin(bound, ",")},
       {"upstream", config_.upstream.ToString()},
       {"mode", ModeName(config_.mode)},
       {"modeSource", ModeSourceName(config_.mode_source)},
       {"threads", static_cast<int64_t>(threads)},
       {"version", kVersion},
       {"tlsLibrary", TlsLibraryName()}});
  return absl::OkStatus();
}

absl::Status Server::StartControlPlane() {
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

absl::Status Server::StartMetricsEndpoint() {
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

absl::Status Server::ClaimPorts(const std::vector<sockaddr_storage>& listen_addresses) {
  std::vector<std::pair<std::string, sockaddr_storage>> claims;
  for (const sockaddr_storage& address : listen_addresses) {
    claims.emplace_back(config_.Origin("net.port"), address);
  }
  for (const EgressRoute& route : shared_.egress_routes) {
    auto resolved = Resolve(route.listen.host, route.listen.port);
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("egress.peers.listen: ", resolved.status().message()));
    }
    claims.emplace_back(route.transparent ? "egress.transparent.listen" : "egress.peers.listen",
                        resolved->front());
  }
  for (const auto& [origin, address] : claims) {
    absl::StatusOr<PortLock> lock = PortLock::Claim(address);
    if (!lock.ok()) {
      return absl::Status(lock.status().code(),
                          absl::StrCat(origin, ": ", lock.status().message()));
    }
    port_locks_.push_back(*std::move(lock));
    port_lock_names_.push_back(FormatAddress(address));
  }
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

absl::Status Server::Reload() {
  auto snapshot = certs::TlsSnapshot::Create(config_.tls);
  if (!snapshot.ok()) {
    absl::Status status = config_.NameOrigin(snapshot.status());
    metrics_.CertificateReload(false);
    Log(Severity::kError, Component::kTls, "certificate reload failed; keeping the old certificates",
        {{"error", std::string(status.message())}});
    if (!config_.run_as_user.empty() &&
        (absl::IsPermissionDenied(status) ||
         absl::StrContains(status.message(), std::strerror(EACCES)))) {
      return absl::PermissionDeniedError(absl::StrCat(
          status.message(), " (since start the sidecar runs as user ", config_.run_as_user,
          " (--user), so the files must be readable by that user)"));
    }
    return status;
  }
  shared_.tls.store(*snapshot);
  metrics_.CertificateReload(true);
  readiness_.SetServing(shared_.mode.load(), (*snapshot)->server_context() != nullptr);
  PublishCertificateExpiries();
  Log(Severity::kInfo, Component::kTls, "certificates reloaded", {});
  WarnAboutExpiringCertificates();
  return absl::OkStatus();
}

void Server::LogClientCertificatePolicy() {
  const certs::TlsSettings& tls = config_.tls;
  std::string policy;
  std::string why;
  if (!tls.HasServerCertificate()) {
    policy = "none";
    why = "no server certificate: TLS clients are not served";
  } else if (tls.ca_file.empty()) {
    policy = "not requested";
    why = "no CA file, so client certificates are neither asked for nor checked";
  } else if (tls.allow_connections_without_certificates) {
    policy = "optional";
    why = absl::StrCat("a client certificate, when presented, must chain to ", tls.ca_file,
                       "; clients without one are served (",
                       config_.Origin("net.tls.allowConnectionsWithoutCertificates"), ")");
  } else {
    policy = "required";
    why = absl::StrCat("every TLS client must present a certificate that chains to ",
                       tls.ca_file, ", as mongod with a CA file; set "
                       "net.tls.allowConnectionsWithoutCertificates to serve clients without one");
  }
  Log(Severity::kInfo, Component::kTls, "client certificate policy",
      {{"clientCertificates", policy}, {"detail", why}});
}

void Server::WarnAboutExpiringCertificates() {
  auto snapshot = shared_.tls.load();
  if (snapshot == nullptr) {
    return;
  }
  // One warning per certificate: the cluster role defaults to the server certificate, and
  // the same CA may serve both roles.
  std::vector<certs::CertificateInfo> distinct;
  std::set<std::string> seen;
  for (const certs::CertificateInfo& cert : snapshot->certificates()) {
    if (seen.insert(cert.sha1_hex).second) {
      distinct.push_back(cert);
    }
  }
  for (const std::string& warning :
       certs::ExpiryWarnings(distinct, kExpiryWarningDays, static_cast<int64_t>(time(nullptr)))) {
    Log(Severity::kWarning, Component::kTls, "certificate expires soon", {{"warning", warning}});
  }
}

void Server::OnExpiryTimer(uv_timer_t* timer) {
  static_cast<Server*>(timer->data)->WarnAboutExpiringCertificates();
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

void Server::PublishCertificateExpiries() {
  std::vector<std::tuple<std::string, std::string, int64_t>> rows;
  if (auto snapshot = shared_.tls.load(); snapshot != nullptr) {
    for (const auto& cert : snapshot->certificates()) {
      rows.emplace_back(cert.role, cert.subject, cert.not_after);
    }
  }
  metrics_.SetCertificateExpiries(rows);
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
