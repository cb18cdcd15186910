// Server's two sides of the takeover (takeover.h): continuing a running sidecar's sockets
// and state at start, and handing its own over to a newer process.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/base/socket_address.h"
#include "proxy/observe/log.h"
#include "proxy/server/server.h"
#include "proxy/server/server_control.h"

namespace sidecar::proxy {
namespace {

std::string LocalAddress(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return "";
  }
  return FormatAddress(address);
}

// Matches `expected` (from this configuration; port 0 stands for any port) to `local`.
bool SameListener(sockaddr_storage expected, const std::string& local, int fd) {
  if (AddressPort(expected) == 0) {
    sockaddr_storage actual{};
    socklen_t length = sizeof(actual);
    getsockname(fd, reinterpret_cast<sockaddr*>(&actual), &length);
    SetAddressPort(expected, AddressPort(actual));
  }
  return FormatAddress(expected) == local;
}

absl::Status DifferentAddresses(std::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(
      "--takeover: ", std::string(what),
      "; a takeover continues the same listening addresses (net.bindIp, net.port, "
      "egress listeners): change them with a restart, not a takeover"));
}

// GroupListeners puts every received listening socket in the group of the address this
// configuration expects it on (`expected`: the ingress addresses first, `ingress` of them,
// then one per egress route), and adopts the port claims into `locks`. An address on one
// side only is an error: a takeover continues the same addresses.
absl::StatusOr<std::vector<std::vector<UniqueFd>>> GroupListeners(
    std::vector<ReceivedSocket>& sockets, const std::vector<sockaddr_storage>& expected,
    size_t ingress, std::vector<PortLock>& locks, std::vector<std::string>& lock_names) {
  std::vector<std::vector<UniqueFd>> by_group(expected.size());
  for (ReceivedSocket& socket : sockets) {
    if (socket.label.kind == SocketKind::kLock) {
      lock_names.push_back(socket.label.address);
      locks.push_back(PortLock::Adopt(socket.fd.release()));
      continue;
    }
    std::string local = LocalAddress(socket.fd.get());
    bool is_ingress = socket.label.kind == SocketKind::kIngress;
    size_t last = is_ingress ? ingress : expected.size();
    size_t group = is_ingress ? 0 : ingress;
    while (group < last && !SameListener(expected[group], local, socket.fd.get())) {
      ++group;
    }
    if (group == last) {
      return DifferentAddresses(absl::StrCat("the running sidecar listens on ", local, " (",
                                             std::string(SocketKindName(socket.label.kind)),
                                             "), which this configuration does not"));
    }
    by_group[group].push_back(std::move(socket.fd));
  }
  for (size_t group = 0; group < expected.size(); ++group) {
    if (by_group[group].empty()) {
      return DifferentAddresses(absl::StrCat("this configuration listens on ",
                                             FormatAddress(expected[group]),
                                             ", which the running sidecar does not"));
    }
  }
  return by_group;
}

}  // namespace

absl::Status Server::AdoptHandover(const std::vector<sockaddr_storage>& listen_addresses,
                                   int threads) {
  absl::StatusOr<TakeoverClient> client = TakeoverClient::Connect(takeover_from_);
  if (!client.ok()) {
    return client.status();
  }
  absl::StatusOr<ReceivedHandover> handover = client->Receive();
  if (!handover.ok()) {
    return handover.status();
  }
  std::vector<sockaddr_storage> expected(listen_addresses);
  for (const EgressRoute& route : shared_.egress_routes) {
    auto resolved = Resolve(route.listen.host, route.listen.port);
    if (!resolved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("egress.peers.listen: ", resolved.status().message()));
    }
    expected.push_back(resolved->front());
  }
  auto by_group = GroupListeners(handover->sockets, expected, listen_addresses.size(),
                                 port_locks_, port_lock_names_);
  if (!by_group.ok()) {
    return by_group.status();
  }
  // Each worker gets a descriptor of its own for every socket it polls (ShareListeners).
  for (int i = 0; i < threads; ++i) {
    std::vector<Worker::ListeningSocket> mine;
    for (size_t group = 0; group < by_group->size(); ++group) {
      const std::vector<UniqueFd>& fds = (*by_group)[group];
      const EgressRoute* route = group < listen_addresses.size()
                                     ? nullptr
                                     : &shared_.egress_routes[group - listen_addresses.size()];
      std::vector<std::vector<size_t>> shares =
          ShareListeners(fds.size(), static_cast<size_t>(threads));
      for (size_t j : shares[i]) {
        int copy = fcntl(fds[j].get(), F_DUPFD_CLOEXEC, 0);
        if (copy < 0) {
          for (const auto& socket : mine) {
            close(socket.fd);
          }
          return absl::UnavailableError(absl::StrCat("--takeover: dup: ", std::strerror(errno)));
        }
        mine.push_back({copy, route});
      }
    }
    auto worker = Worker::Adopt(shared_, i, std::move(mine));
    if (!worker.ok()) {
      return worker.status();
    }
    workers_.push_back(*std::move(worker));
  }
  // The mode in force continues, set at start or by `ctl set-mode`, and so does where the
  // start-up mode came from (status' modeSource, persist's refusal while a flag rules).
  const HandoverState& state = handover->state;
  if (state.mode != config_.mode) {
    Log(Severity::kInfo, Component::kControl,
        "takeover: continuing the running mode, not this configuration's",
        {{"mode", ModeName(state.mode)}, {"configuredMode", ModeName(config_.mode)}});
  }
  config_.mode = state.mode;
  config_.mode_source = state.mode_source;
  config_.mode_flag = state.mode_flag;
  shared_.mode.store(state.mode);
  metrics_.SetMode(state.mode);
  if (auto snapshot = shared_.tls.load(); snapshot != nullptr) {
    readiness_.SetServing(state.mode, snapshot->server_context() != nullptr);
  }
  metrics_.Restarted(static_cast<double>(state.restarts + 1));
  Log(Severity::kInfo, Component::kControl, "takeover: sockets received",
      {{"from", state.pid},
       {"fromVersion", state.version},
       {"sockets", static_cast<int64_t>(handover->sockets.size())},
       {"mode", ModeName(state.mode)},
       {"modeSource", ModeSourceName(state.mode_source)}});
  takeover_client_.emplace(*std::move(client));
  return absl::OkStatus();
}

void Server::FinishTakeover() {
  // The workers poll the sockets now: whichever process polls first accepts. Only now is
  // the old one told to stop.
  absl::Status stopped = takeover_client_->Stop();
  takeover_client_.reset();
  if (!stopped.ok()) {
    // It may have died, or stopped without saying so; either way this process serves.
    Log(Severity::kWarning, Component::kControl,
        "takeover: the old process did not confirm that it stopped accepting",
        {{"error", std::string(stopped.message())}});
  }
  // From here this process is the only one serving: what fails now is reported and the
  // serving goes on, as a failed reload does.
  if (absl::Status status = OpenControlPlane(); !status.ok()) {
    Log(Severity::kError, Component::kControl,
        "takeover: cannot bind the control socket; serving without it",
        {{"error", std::string(status.message())}});
  }
  if (absl::Status status = StartTakeoverSource(); !status.ok()) {
    Log(Severity::kError, Component::kControl,
        "takeover: cannot listen for a later takeover", {{"error", std::string(status.message())}});
  }
  if (absl::Status status = OpenMetricsEndpoint(); !status.ok()) {
    Log(Severity::kError, Component::kControl,
        "takeover: cannot bind the metrics listener; serving without it",
        {{"error", std::string(status.message())}});
  }
  Log(Severity::kInfo, Component::kControl, "takeover complete: this process serves the port",
      {{"restarts", static_cast<int64_t>(metrics_.TakeoverRestarts())}});
}

absl::StatusOr<TakeoverSource::Offer> Server::OfferHandover() {
  if (draining_) {
    return absl::FailedPreconditionError("this sidecar is shutting down");
  }
  TakeoverSource::Offer offer;
  offer.state.mode = shared_.mode.load();
  offer.state.mode_source = config_.mode_source;
  offer.state.mode_flag = config_.mode_flag;
  offer.state.restarts = static_cast<int64_t>(metrics_.TakeoverRestarts());
  offer.state.pid = getpid();
  offer.state.version = kVersion;
  for (size_t i = 0; i < port_locks_.size(); ++i) {
    if (port_locks_[i].fd() >= 0) {
      offer.labels.push_back({SocketKind::kLock, port_lock_names_[i]});
      offer.fds.push_back(port_locks_[i].fd());
    }
  }
  // Workers may share a socket (each through a descriptor of its own): it goes once.
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const auto& worker : workers_) {
    for (const Worker::ListeningSocket& socket : worker->listening_sockets()) {
      struct stat info {};
      if (fstat(socket.fd, &info) != 0 || !seen.insert({info.st_dev, info.st_ino}).second) {
        continue;
      }
      offer.labels.push_back({socket.route == nullptr ? SocketKind::kIngress : SocketKind::kEgress,
                              LocalAddress(socket.fd)});
      offer.fds.push_back(socket.fd);
    }
  }
  return offer;
}

void Server::HandOver() {
  Log(Severity::kInfo, Component::kControl,
      "taken over: the new process serves the port; this one stops accepting and drains",
      {{"graceMs", static_cast<int64_t>(kHandOverGraceMs)}});
  // Every loop stops accepting before any connection is drained: a client that reconnects
  // because its idle connection closed then always reaches the new process. The grace lets
  // a connection accepted in the last instant send its first request (a TLS handshake, a
  // hello) so that the drain finds it in flight rather than closing it mid-setup.
  for (auto& worker : workers_) {
    worker->Post([](Worker& w) { w.StopAccepting(); });
  }
  // What the new process binds next: the control socket's path and the metrics port.
  if (control_) {
    control_->Close();
  }
  metrics_endpoint_.reset();
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&loop_, t); });
  if (!timer.ok()) {
    BeginDrain();
    return;
  }
  handover_timer_ = *std::move(timer);
  handover_timer_.get()->data = this;
  uv_timer_start(
      handover_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Server*>(t->data);
        self->handover_timer_.Close();
        self->BeginDrain();
      },
      kHandOverGraceMs, 0);
}

absl::Status Server::StartTakeoverSource() {
  TakeoverSource::Hooks hooks;
  hooks.offer = [this] { return OfferHandover(); };
  hooks.stop = [this] { HandOver(); };
  auto source =
      TakeoverSource::Create(&loop_, TakeoverSocketPath(config_.control_socket), std::move(hooks));
  if (!source.ok()) {
    return source.status();
  }
  takeover_ = *std::move(source);
  return absl::OkStatus();
}

}  // namespace sidecar::proxy
