// ControlCommands answers the control socket's requests (SPEC §6): one JSON object in, one
// JSON object out, always with "ok"; when ok is false, always with "error" (a sentence).
// It knows the commands, their fields and the transition rules, and reaches the running
// sidecar only through ControlTarget, so it is tested without sockets or loops.
//
// Requests:
//   {"cmd":"status"}
//   {"cmd":"setMode","mode":"preferTLS","force":false,"persist":false}
//   {"setParameter":1,"tlsMode":"preferTLS"}   (or "sslMode": mongod's command, no force)
//   {"cmd":"reload"}
//   {"cmd":"drainPlaintext","overSeconds":60}
//   {"cmd":"preflight","mode":"preferTLS"}
//   {"cmd":"clients","transport":"plaintext"}
//   {"cmd":"readiness","mode":"requireTLS"}      ("mode" optional: the next step)
//
// Threading: one loop (the main loop) calls Handle and every ControlTarget method, and the
// target calls its completion callbacks on that same loop.
#ifndef SIDECAR_PROXY_CONTROL_CONTROL_COMMANDS_H_
#define SIDECAR_PROXY_CONTROL_CONTROL_COMMANDS_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "certs/certificate_info.h"
#include "proxy/base/mode.h"
#include "proxy/config/mode_persistence.h"
#include "proxy/control/mode_transition.h"
#include "proxy/observe/client_registry.h"
#include "proxy/observe/status_board.h"

namespace sidecar::proxy {

struct TransportCounts {
  int64_t tls = 0;
  int64_t plaintext = 0;
};

// StatusFacts is what `status` reports that the target measures.
struct StatusFacts {
  std::string version;
  int64_t uptime_seconds = 0;
  int64_t now_unix = 0;
  TransportCounts active;    // ingress connections open now
  TransportCounts accepted;  // ingress connections admitted since start
  std::vector<std::pair<std::string, int64_t>> rejected;  // reason name → count
  std::vector<certs::CertificateInfo> certificates;
  // Keys readable by group/others, a configuration file writable by others (sentences).
  std::vector<std::string> file_permission_warnings;
};

// DrainStarted is what `drainPlaintext` answers.
struct DrainStarted {
  int64_t clients = 0;   // application connections it will close
  int64_t members = 0;   // cluster-member connections it will close, after the clients
  int64_t replaced = 0;  // closes of an earlier drain still pending, now replaced
};

// PeerPreflight is what `preflight` found for one configured egress peer.
struct PeerPreflight {
  std::string target;      // as configured: "host:port"
  bool connected = false;  // the TCP connection was made
  bool handshake = false;  // the TLS handshake completed (false in a plaintext preflight)
  // "ok" when the peer's certificate chain and name were accepted; the verification error
  // when they were not; "" when the handshake did not get that far (or no TLS was tried).
  std::string verification;
  std::string version;  // "TLSv1.3" once the handshake completed
  std::string error;    // why it failed, "" when it did not
};

// ControlTarget is the running sidecar as the commands see it (Server implements it).
class ControlTarget {
 public:
  virtual ~ControlTarget() = default;

  virtual Mode mode() const = 0;
  // startup_mode is the mode the sidecar was started with (flags and file); mode_source says
  // which of them set it, and mode_flag names the flag as written when one did.
  virtual Mode startup_mode() const = 0;
  virtual ModeSource mode_source() const = 0;
  virtual const std::string& mode_flag() const = 0;
  virtual bool certificate_loaded() const = 0;
  // config_file is the --config file, "" when started without one.
  virtual const std::string& config_file() const = 0;
  virtual int egress_peer_count() const = 0;

  // ReadConfiguredMode rereads the mode from config_file() (blocking file I/O).
  virtual absl::StatusOr<Mode> ReadConfiguredMode() = 0;
  // PersistMode rewrites the mode in config_file() atomically.
  virtual absl::Status PersistMode(Mode mode) = 0;
  // ApplyMode makes `to` the mode of every connection accepted from now on, on every loop,
  // and counts the transition from `from`.
  virtual void ApplyMode(Mode from, Mode to) = 0;
  // SetModePersisted sets tls_sidecar_mode_persisted.
  virtual void SetModePersisted(bool persisted) = 0;
  // Reload rereads every certificate, key, CA and CRL; on failure the old ones stay.
  virtual absl::Status Reload() = 0;

  virtual StatusFacts Facts() = 0;
  virtual std::vector<ClientRow> Clients(std::optional<Transport> only) = 0;

  // ListOpenPlaintext collects the open plaintext client connections of every loop, grouped
  // by client address + application + driver; `done` runs later on the control loop.
  virtual void ListOpenPlaintext(
      absl::AnyInvocable<void(std::vector<OpenPlaintextClient>)> done) = 0;
  // DrainPlaintext starts closing every open plaintext client connection, spread evenly
  // over `over_ms` (members last); `done` runs on the control loop once the plan is made.
  virtual void DrainPlaintext(uint64_t over_ms, absl::AnyInvocable<void(DrainStarted)> done) = 0;

  // Preflight dials every [[egress.peers]] target as a new egress connection in `mode`
  // would (TLS when EgressUsesTls(mode), else TCP only), off the data loops; `done` runs on
  // the control loop with one row per peer in configuration order, or with an error when a
  // preflight is already running.
  virtual void Preflight(
      Mode mode, absl::AnyInvocable<void(absl::StatusOr<std::vector<PeerPreflight>>)> done) = 0;
  // RecordPreflight remembers the outcome of a TLS preflight that just finished, for the
  // transition rule; last_preflight returns it with its age (nullopt: none since start).
  virtual void RecordPreflight(bool ok) = 0;
  virtual std::optional<PreflightFacts> last_preflight() const = 0;
  // topology_warnings are the upstream checks' findings (advertised hosts that bypass the
  // sidecar, mongod reachable on a public address), as sentences; empty when none.
  virtual std::vector<std::string> topology_warnings() const = 0;
};

// ControlMemory is what the commands remember for the status page: the recent mode changes
// (at most kMaxChanges, oldest first) and the last preflight, peer by peer.
struct ControlMemory {
  static constexpr size_t kMaxChanges = 20;
  std::deque<ModeChangeRecord> changes;
  std::optional<PreflightRecord> preflight;
};

class ControlCommands {
 public:
  // Longest drain window a request may ask for.
  static constexpr double kMaxDrainSeconds = 86400;

  explicit ControlCommands(ControlTarget& target) : target_(target) {}

  const ControlMemory& memory() const { return memory_; }

  // Handle answers one request line from a peer running as `peer_uid`. `reply` receives one
  // JSON object (no trailing newline) exactly once: before Handle returns, or later on the
  // same loop for the requests that ask the worker loops (setMode and readiness for
  // requireTLS, drainPlaintext) or the peers (preflight).
  void Handle(std::string_view line, uid_t peer_uid, absl::AnyInvocable<void(std::string)> reply);

  // ErrorAnswer is {"ok":false,"error":sentence}, for the socket layer's own refusals.
  static std::string ErrorAnswer(std::string_view sentence);

 private:
  ControlTarget& target_;
  ControlMemory memory_;
};

// Warnings that `status` carries, from its facts: what a restart would run (see
// proxy/mode_persistence.h), a running mode that cannot serve clients for want of a server
// certificate, certificates close to expiry. Exposed for tests.
std::vector<std::string> StatusWarnings(Mode running, bool certificate_loaded,
                                        const RestartOutlook& outlook, const StatusFacts& facts);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_CONTROL_COMMANDS_H_
