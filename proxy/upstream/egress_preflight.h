// DialPeers is the work behind `preflight` (SPEC §6): it dials each configured egress peer
// the way a new egress connection in a given mode would (same address, same SO_MARK, and
// for a TLS mode the same client context, cluster certificate, CA and hostname check, through
// the same TlsSession over memory BIOs) and reports what happened per peer. It never touches
// the data loops: the session's bytes go over plain blocking sockets with deadlines, one
// thread per peer, and it returns when every peer has answered or timed out.
//
// Threading: any thread except a loop's (it blocks for up to `timeout`); the control plane
// runs it on a thread of its own and hands the rows back to the main loop.
#ifndef SIDECAR_PROXY_UPSTREAM_EGRESS_PREFLIGHT_H_
#define SIDECAR_PROXY_UPSTREAM_EGRESS_PREFLIGHT_H_

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "certs/tls_snapshot.h"
#include "proxy/control/control_commands.h"

namespace sidecar::proxy {

// PreflightTarget is one [[egress.peers]] entry as resolved at start.
struct PreflightTarget {
  std::string name;  // "host:port" as configured, for the report
  std::string host;  // checked against the peer's certificate
  uint16_t port = 0;
  // Left empty (AF_UNSPEC), the host is resolved when dialing, as egress does per connection.
  sockaddr_storage address{};
};

// DialPeers dials every target; with `tls` it completes a TLS handshake on `snapshot`'s
// client context (a null snapshot or context is reported per peer), without it only the TCP
// connection is made. `mark` (0: none) is set with SO_MARK on each socket, as on egress
// connections. The rows come back in the order of `targets`.
std::vector<PeerPreflight> DialPeers(const std::vector<PreflightTarget>& targets,
                                     std::shared_ptr<const certs::TlsSnapshot> snapshot, bool tls,
                                     uint32_t mark, std::chrono::milliseconds timeout);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_UPSTREAM_EGRESS_PREFLIGHT_H_
