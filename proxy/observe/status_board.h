// StatusBoard holds what the status page shows (SPEC §8): the control plane publishes a
// fresh StatusPageData every few seconds from its loop, the metrics endpoint's threads
// render the latest one, and the upstream checks' findings (topology warnings) are kept
// here for both. Thread-safe; shared by Server, its control plane, the probe and the
// endpoint.
#ifndef SIDECAR_PROXY_OBSERVE_STATUS_BOARD_H_
#define SIDECAR_PROXY_OBSERVE_STATUS_BOARD_H_

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "certs/certificate_info.h"
#include "proxy/observe/client_registry.h"

namespace sidecar::proxy {

// ModeChangeRecord is one mode change made through the control socket.
struct ModeChangeRecord {
  int64_t unix = 0;
  std::string from;
  std::string to;
  int64_t uid = 0;       // who asked (SO_PEERCRED)
  bool forced = false;
  std::string command;   // "setMode" or "setParameter"
};

// PreflightRecord is the last preflight's outcome, peer by peer.
struct PreflightRecord {
  struct Peer {
    std::string target;
    bool passed = false;
    std::string detail;  // "TLSv1.3, verified" or the error
  };
  int64_t unix = 0;
  std::string mode;
  bool ok = false;
  std::vector<Peer> peers;
};

// MixSample is the ingress connections open at one moment, by transport.
struct MixSample {
  int64_t unix = 0;
  int64_t tls = 0;
  int64_t plaintext = 0;
};

struct StatusPageData {
  std::string version;
  int64_t now_unix = 0;
  int64_t uptime_seconds = 0;
  std::string mode;
  std::string next_mode;  // the mode the verdict is about; the running one at the last step
  std::string verdict;    // "ready", "ready with warnings", "not ready"
  std::vector<std::string> reasons;
  std::vector<std::string> warnings;
  std::string note;
  std::vector<MixSample> mix;     // oldest first
  std::vector<ClientRow> clients;  // plaintext rows, connected and refused
  int egress_peers = 0;
  std::optional<PreflightRecord> preflight;
  std::vector<certs::CertificateInfo> certificates;
  std::vector<ModeChangeRecord> changes;  // oldest first
};

class StatusBoard {
 public:
  void Publish(StatusPageData data);
  // Latest is the last published data; nullopt before the first.
  std::optional<StatusPageData> Latest() const;

  // SetTopology records the upstream checks' findings: advertised-host sentences every
  // time they run, exposure sentences only when that check ran (nullopt keeps the last).
  void SetTopology(std::vector<std::string> advertised,
                   std::optional<std::vector<std::string>> exposed);
  std::vector<std::string> TopologyWarnings() const;

 private:
  mutable std::mutex mutex_;
  std::optional<StatusPageData> latest_;
  std::vector<std::string> advertised_;
  std::vector<std::string> exposed_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_STATUS_BOARD_H_
