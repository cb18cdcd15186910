#include "proxy/server/server_control.h"

#include <prometheus/metric_family.h>

#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "certs/pem_file.h"
#include "proxy/config/config_file_edit.h"
#include "proxy/net/connection.h"
#include "proxy/observe/client_registry.h"
#include "proxy/observe/log.h"
#include "proxy/upstream/egress_preflight.h"

namespace sidecar::proxy {

namespace {

// Gather collects the workers' answers: each posted task holds a reference, and when the
// last one is gone (the task ran, or a finished worker dropped it) the rows go to the main
// loop. So the answer always comes, whatever state the workers are in.
class Gather {
 public:
  Gather(std::shared_ptr<LoopMailbox> mailbox,
         absl::AnyInvocable<void(std::vector<PlaintextConnection>)> done)
      : mailbox_(std::move(mailbox)), done_(std::move(done)) {}
  ~Gather() {
    mailbox_->Post(
        [rows = std::move(rows_), done = std::move(done_)]() mutable { done(std::move(rows)); });
  }
  void Add(std::vector<PlaintextConnection> rows) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (PlaintextConnection& row : rows) {
      rows_.push_back(std::move(row));
    }
  }

 private:
  std::shared_ptr<LoopMailbox> mailbox_;
  absl::AnyInvocable<void(std::vector<PlaintextConnection>)> done_;
  std::mutex mutex_;
  std::vector<PlaintextConnection> rows_;
};

bool IsOpenPlaintextClient(const Connection& c) {
  return c.direction() == Direction::kIngress && c.admitted() &&
         c.transport() == Transport::kPlaintext;
}

std::string LabelValue(const prometheus::ClientMetric& metric, const std::string& name) {
  for (const prometheus::ClientMetric::Label& label : metric.label) {
    if (label.name == name) {
      return label.value;
    }
  }
  return "";
}

}  // namespace

Server::ControlPlane::ControlPlane(Server& server)
    : server_(server),
      startup_mode_(server.config_.mode),
      started_(std::chrono::steady_clock::now()) {}

Server::ControlPlane::~ControlPlane() { Close(); }

absl::StatusOr<std::unique_ptr<Server::ControlPlane>> Server::ControlPlane::Create(Server& server) {
  std::unique_ptr<ControlPlane> plane(new ControlPlane(server));
  auto mailbox = LoopMailbox::Create(&server.loop_);
  if (!mailbox.ok()) {
    return mailbox.status();
  }
  plane->mailbox_ = *std::move(mailbox);
  ControlPlane* raw = plane.get();
  auto drain = DrainScheduler::Create(&server.loop_,
                                      [raw](int worker, std::vector<ConnectionRef> connections) {
                                        raw->CloseOnWorker(worker, std::move(connections));
                                      });
  if (!drain.ok()) {
    plane->Close();
    return drain.status();
  }
  plane->drain_ = *std::move(drain);
  auto socket =
      ControlServer::Create(&server.loop_, server.config_.control_socket, plane->commands_);
  if (!socket.ok()) {
    plane->Close();
    return socket.status();
  }
  plane->socket_ = *std::move(socket);
  auto feed = StatusFeed::Create(&server.loop_, *plane, plane->commands_.memory(),
                                 server.metrics_, server.status_board_);
  if (!feed.ok()) {
    plane->Close();
    return feed.status();
  }
  plane->status_feed_ = *std::move(feed);
  absl::StatusOr<Mode> file_mode = server.config_.config_file.empty()
                                       ? absl::StatusOr<Mode>(Mode::kDisabled)
                                       : plane->ReadConfiguredMode();
  RestartOutlook outlook =
      PredictRestart(StartupMode{server.config_.mode, server.config_.mode_source,
                                 server.config_.mode_flag, server.config_.config_file},
                     server.config_.mode, file_mode);
  server.metrics_.SetModePersisted(outlook.persisted);
  for (const std::string& warning : outlook.warnings) {
    Log(Severity::kWarning, Component::kControl, "a restart would not keep the mode as expected",
        {{"warning", warning}});
  }
  return plane;
}

void Server::ControlPlane::Close() {
  if (status_feed_) {
    status_feed_->Close();
    status_feed_.reset();
  }
  if (socket_) {
    socket_->Close();
    socket_.reset();
  }
  if (drain_) {
    drain_->Stop();
    drain_.reset();
  }
  if (mailbox_) {
    mailbox_->Close();  // a preflight finishing now is dropped with its rows
  }
  if (preflight_thread_.joinable()) {
    preflight_thread_.join();
  }
  preflight_done_ = nullptr;
  preflight_running_ = false;
}

Mode Server::ControlPlane::mode() const { return server_.shared_.mode.load(); }

ModeSource Server::ControlPlane::mode_source() const { return server_.config_.mode_source; }

const std::string& Server::ControlPlane::mode_flag() const { return server_.config_.mode_flag; }

bool Server::ControlPlane::certificate_loaded() const {
  std::shared_ptr<const certs::TlsSnapshot> snapshot = server_.shared_.tls.load();
  return snapshot != nullptr && snapshot->server_context() != nullptr;
}

const std::string& Server::ControlPlane::config_file() const { return server_.config_.config_file; }

int Server::ControlPlane::egress_peer_count() const {
  return static_cast<int>(server_.config_.egress_peers.size());
}

absl::StatusOr<Mode> Server::ControlPlane::ReadConfiguredMode() {
  return sidecar::proxy::ReadConfiguredMode(server_.config_.config_file);
}

absl::Status Server::ControlPlane::PersistMode(Mode mode) {
  return sidecar::proxy::PersistMode(server_.config_.config_file, mode);
}

void Server::ControlPlane::ApplyMode(Mode from, Mode to) {
  // Every loop reads the mode once per connection, when it sniffs: the store is seen by the
  // next connection accepted anywhere; established ones keep the mode they were sniffed in.
  server_.shared_.mode.store(to);
  server_.metrics_.ModeTransition(from, to);
  server_.readiness_.SetServing(to, certificate_loaded());
}

void Server::ControlPlane::SetModePersisted(bool persisted) {
  server_.metrics_.SetModePersisted(persisted);
}

absl::Status Server::ControlPlane::Reload() { return server_.Reload(); }

StatusFacts Server::ControlPlane::Facts() {
  StatusFacts facts;
  facts.version = kVersion;
  facts.uptime_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count();
  facts.now_unix = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  Metrics& metrics = server_.metrics_;
  facts.active.tls =
      static_cast<int64_t>(metrics.ActiveConnections(Direction::kIngress, Transport::kTls));
  facts.active.plaintext =
      static_cast<int64_t>(metrics.ActiveConnections(Direction::kIngress, Transport::kPlaintext));
  // Accepted and rejected counts are read back from the exported series, so `status` and
  // /metrics cannot disagree.
  for (const prometheus::MetricFamily& family : metrics.registry()->Collect()) {
    if (family.name == "tls_sidecar_connections_accepted_total") {
      for (const prometheus::ClientMetric& metric : family.metric) {
        if (LabelValue(metric, "direction") != "ingress") {
          continue;
        }
        auto value = static_cast<int64_t>(metric.counter.value);
        (LabelValue(metric, "transport") == "tls" ? facts.accepted.tls
                                                  : facts.accepted.plaintext) += value;
      }
    } else if (family.name == "tls_sidecar_connections_rejected_total") {
      for (const prometheus::ClientMetric& metric : family.metric) {
        facts.rejected.emplace_back(LabelValue(metric, "reason"),
                                    static_cast<int64_t>(metric.counter.value));
      }
    }
  }
  if (std::shared_ptr<const certs::TlsSnapshot> snapshot = server_.shared_.tls.load()) {
    facts.certificates = snapshot->certificates();
  }
  // Looked at again for every status, so a chmod is seen without a restart.
  facts.file_permission_warnings =
      certs::FilePermissionWarnings(server_.config_.tls, server_.config_.config_file);
  return facts;
}

std::vector<ClientRow> Server::ControlPlane::Clients(std::optional<Transport> only) {
  return server_.shared_.clients.Snapshot(only ? &*only : nullptr);
}

void Server::ControlPlane::GatherPlaintext(
    absl::AnyInvocable<void(std::vector<PlaintextConnection>)> done) {
  auto gather = std::make_shared<Gather>(mailbox_, std::move(done));
  for (auto& worker : server_.workers_) {
    worker->Post([gather](Worker& w) {
      std::vector<PlaintextConnection> rows;
      w.ForEachConnection([&](Connection& c) {
        if (IsOpenPlaintextClient(c)) {
          rows.push_back({w.index(),
                          {reinterpret_cast<uintptr_t>(&c), c.peer_address()},
                          c.metadata().application,
                          c.metadata().driver,
                          c.metadata().internal_client});
        }
      });
      gather->Add(std::move(rows));
    });
  }
}

void Server::ControlPlane::ListOpenPlaintext(
    absl::AnyInvocable<void(std::vector<OpenPlaintextClient>)> done) {
  GatherPlaintext([done = std::move(done)](std::vector<PlaintextConnection> rows) mutable {
    std::map<std::tuple<std::string, std::string, std::string, bool>, int64_t> groups;
    for (const PlaintextConnection& row : rows) {
      ++groups[{AddressWithoutPort(row.connection.peer), row.application, row.driver, row.member}];
    }
    std::vector<OpenPlaintextClient> clients;
    for (const auto& [key, count] : groups) {
      const auto& [address, application, driver, member] = key;
      clients.push_back({address, application, driver, member, count});
    }
    done(std::move(clients));
  });
}

void Server::ControlPlane::DrainPlaintext(uint64_t over_ms,
                                          absl::AnyInvocable<void(DrainStarted)> done) {
  GatherPlaintext(
      [this, over_ms, done = std::move(done)](std::vector<PlaintextConnection> rows) mutable {
        DrainStarted started;
        std::vector<DrainCandidate> candidates;
        for (PlaintextConnection& row : rows) {
          (row.member ? started.members : started.clients) += 1;
          candidates.push_back({row.worker, std::move(row.connection), row.member});
        }
        if (drain_) {
          started.replaced =
              static_cast<int64_t>(drain_->Start(PlanDrain(std::move(candidates), over_ms)));
        }
        done(started);
      });
}

void Server::ControlPlane::Preflight(
    Mode mode, absl::AnyInvocable<void(absl::StatusOr<std::vector<PeerPreflight>>)> done) {
  if (preflight_running_) {
    done(absl::FailedPreconditionError(
        "a preflight is already running; its answer comes within a few seconds"));
    return;
  }
  if (!mailbox_ || !socket_) {
    done(absl::UnavailableError("the sidecar is shutting down"));
    return;
  }
  if (preflight_thread_.joinable()) {
    preflight_thread_.join();  // the previous one, finished: its answer was delivered
  }
  std::vector<PreflightTarget> targets;
  for (const EgressRoute& route : server_.shared_.egress_routes) {
    if (!route.transparent) {
      // Resolved afresh on the preflight's thread: a peer's address may have changed.
      targets.push_back({route.target.ToString(), route.target.host, route.target.port});
    }
  }
  preflight_running_ = true;
  preflight_done_ = std::move(done);
  // The dialing blocks, so it runs on a thread of its own; the rows come back to this loop
  // through the mailbox. The thread touches nothing of the server but what it is given.
  preflight_thread_ = std::thread([this, mailbox = mailbox_, targets = std::move(targets),
                                   snapshot = server_.shared_.tls.load(), tls = EgressUsesTls(mode),
                                   mark = server_.shared_.outbound_mark]() {
    std::vector<PeerPreflight> rows = DialPeers(targets, snapshot, tls, mark, kPreflightTimeout);
    mailbox->Post([this, rows = std::move(rows)]() mutable {
      preflight_running_ = false;
      if (auto done = std::move(preflight_done_)) {
        preflight_done_ = nullptr;
        done(std::move(rows));
      }
    });
  });
}

void Server::ControlPlane::RecordPreflight(bool ok) {
  last_preflight_ = PreflightOutcome{ok, std::chrono::steady_clock::now()};
}

std::optional<PreflightFacts> Server::ControlPlane::last_preflight() const {
  if (!last_preflight_) {
    return std::nullopt;
  }
  auto age = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                              last_preflight_->finished);
  return PreflightFacts{last_preflight_->ok, age.count()};
}

std::vector<std::string> Server::ControlPlane::topology_warnings() const {
  return server_.status_board_->TopologyWarnings();
}

void Server::ControlPlane::CloseOnWorker(int index, std::vector<ConnectionRef> connections) {
  for (auto& worker : server_.workers_) {
    if (worker->index() != index) {
      continue;
    }
    worker->Post([connections = std::move(connections)](Worker& w) {
      std::unordered_set<uintptr_t> wanted;
      for (const ConnectionRef& ref : connections) {
        wanted.insert(ref.pointer);
      }
      std::vector<Connection*> closing;
      w.ForEachConnection([&](Connection& c) {
        auto pointer = reinterpret_cast<uintptr_t>(&c);
        if (!wanted.contains(pointer) || !IsOpenPlaintextClient(c)) {
          return;
        }
        for (const ConnectionRef& ref : connections) {
          if (ref.pointer == pointer && ref.peer == c.peer_address()) {
            closing.push_back(&c);
            return;
          }
        }
      });
      for (Connection* c : closing) {
        c->BeginClose(CloseReason::kDrainedPlaintext);
      }
    });
    return;
  }
}

}  // namespace sidecar::proxy
