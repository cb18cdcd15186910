// SharedState is what every loop reads and the control plane changes: the running mode,
// the current TLS snapshot and the connection count. Owned by Server, which outlives the
// loops. Any thread may read; only the control loop writes mode and snapshot.
#ifndef SIDECAR_PROXY_NET_SHARED_STATE_H_
#define SIDECAR_PROXY_NET_SHARED_STATE_H_

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "certs/tls_snapshot.h"
#include "proxy/base/mode.h"
#include "proxy/config/config.h"
#include "proxy/observe/client_registry.h"
#include "proxy/observe/metrics.h"

namespace sidecar::proxy {

// EgressPeer as resolved at start: where the local mongod dials and whom we dial for it.
// A transparent route has no fixed target: each connection's original destination (read
// with SO_ORIGINAL_DST after an iptables REDIRECT) is its target.
struct EgressRoute {
  HostPort listen;
  HostPort target;                   // the name checked against the peer's certificate
  // Set when target.host is an IP literal; a name is resolved for every connection, as
  // mongod does, so a peer that moves (a rescheduled pod) is followed.
  std::optional<sockaddr_storage> target_address;
  bool transparent = false;
};

struct SharedState {
  SharedState(const Config& config, Metrics& metrics)
      : config(config),
        metrics(metrics),
        max_connections(config.max_connections),
        max_egress_connections(config.max_egress_connections) {}

  const Config& config;
  Metrics& metrics;

  // A mode change applies to connections accepted after it (SPEC §2): each connection reads
  // the mode once, when its first bytes are sniffed.
  std::atomic<Mode> mode{Mode::kDisabled};

  // Connections keep the snapshot they started with; reload swaps in a new one.
  std::atomic<std::shared_ptr<const certs::TlsSnapshot>> tls;

  // The limits in force: the configured ones, clamped at start to what RLIMIT_NOFILE allows
  // (Server::ClampConnectionLimits). Written before the loops start, read-only after.
  int64_t max_connections;
  int64_t max_egress_connections;

  // Admitted client connections (against max_connections) and egress connections (against
  // max_egress_connections), counted apart so that a client flood never refuses mongod's
  // connections to its peers; `connections` is both together.
  std::atomic<int64_t> ingress_connections{0};
  std::atomic<int64_t> egress_connections{0};
  std::atomic<int64_t> connections{0};

  // Identified clients, for `ctl clients` and the requireTLS gate.
  ClientRegistry clients;

  // The upstream mongod, resolved at start.
  sockaddr_storage upstream_address{};

  // One per [[egress.peers]] entry, in configuration order, then the transparent one.
  std::vector<EgressRoute> egress_routes;

  // SO_MARK put on every socket the sidecar dials, so that an iptables redirect of mongod's
  // outbound connections can exclude the sidecar's own (0: none).
  uint32_t outbound_mark = 0;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_SHARED_STATE_H_
