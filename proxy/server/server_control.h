// Server::ControlPlane is the control socket with everything it acts on: it implements
// ControlTarget over the running Server (mode, snapshot, metrics, workers), owns the
// ControlServer that listens, the mailbox through which worker loops answer, and the
// scheduler of plaintext drains. Made by Server::Start, closed when the server has drained.
// Main loop only, except where noted.
#ifndef SIDECAR_PROXY_SERVER_SERVER_CONTROL_H_
#define SIDECAR_PROXY_SERVER_SERVER_CONTROL_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/base/loop_mailbox.h"
#include "proxy/control/control_commands.h"
#include "proxy/control/control_server.h"
#include "proxy/control/plaintext_drain.h"
#include "proxy/control/status_feed.h"
#include "proxy/server/server.h"

namespace sidecar::proxy {

// PlaintextConnection is one open plaintext client connection as its worker saw it.
struct PlaintextConnection {
  int worker = 0;
  ConnectionRef connection;
  std::string application;
  std::string driver;
  bool member = false;
};

class Server::ControlPlane : public ControlTarget {
 public:
  // Create binds the control socket (config.control_socket) on the server's main loop, sets
  // tls_sidecar_mode_persisted from what a restart would run (the mode flag, else the
  // configuration file) and logs a warning when the flag and the file disagree.
  static absl::StatusOr<std::unique_ptr<ControlPlane>> Create(Server& server);
  ~ControlPlane() override;

  // Close stops the socket (removing its file), drops a drain in progress and pending
  // answers from the workers. Idempotent.
  void Close();

  // ControlTarget.
  Mode mode() const override;
  Mode startup_mode() const override { return startup_mode_; }
  ModeSource mode_source() const override;
  const std::string& mode_flag() const override;
  bool certificate_loaded() const override;
  const std::string& config_file() const override;
  int egress_peer_count() const override;
  absl::StatusOr<Mode> ReadConfiguredMode() override;
  absl::Status PersistMode(Mode mode) override;
  void ApplyMode(Mode from, Mode to) override;
  void SetModePersisted(bool persisted) override;
  absl::Status Reload() override;
  StatusFacts Facts() override;
  std::vector<ClientRow> Clients(std::optional<Transport> only) override;
  void ListOpenPlaintext(absl::AnyInvocable<void(std::vector<OpenPlaintextClient>)> done) override;
  void DrainPlaintext(uint64_t over_ms, absl::AnyInvocable<void(DrainStarted)> done) override;
  void Preflight(
      Mode mode,
      absl::AnyInvocable<void(absl::StatusOr<std::vector<PeerPreflight>>)> done) override;
  void RecordPreflight(bool ok) override;
  std::optional<PreflightFacts> last_preflight() const override;
  std::vector<std::string> topology_warnings() const override;

  // How long preflight waits for each peer's connection and handshake.
  static constexpr std::chrono::milliseconds kPreflightTimeout{5000};

 private:
  explicit ControlPlane(Server& server);
  // GatherPlaintext asks every worker for its open plaintext client connections; `done`
  // runs on the main loop once all have answered (or are gone).
  void GatherPlaintext(absl::AnyInvocable<void(std::vector<PlaintextConnection>)> done);
  // CloseOnWorker closes, on worker `index`'s loop, those of `connections` still open.
  void CloseOnWorker(int index, std::vector<ConnectionRef> connections);

  Server& server_;
  const Mode startup_mode_;
  const std::chrono::steady_clock::time_point started_;
  std::shared_ptr<LoopMailbox> mailbox_;
  std::unique_ptr<DrainScheduler> drain_;
  ControlCommands commands_{*this};
  std::unique_ptr<ControlServer> socket_;
  std::unique_ptr<StatusFeed> status_feed_;  // keeps the status page and readiness metric fresh
  // The preflight in progress: its dialing thread (joined by Close, so a shutdown waits for
  // at most kPreflightTimeout) and the answer it owes.
  std::thread preflight_thread_;
  absl::AnyInvocable<void(absl::StatusOr<std::vector<PeerPreflight>>)> preflight_done_;
  bool preflight_running_ = false;
  struct PreflightOutcome {
    bool ok = false;
    std::chrono::steady_clock::time_point finished;
  };
  std::optional<PreflightOutcome> last_preflight_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_SERVER_CONTROL_H_
