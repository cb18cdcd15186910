// Server's share of the process limits: the open file limit raised at start and the
// connection limits fitted into it, and the port locks that keep a second sidecar off the
// same ports.
#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/base/socket_address.h"
#include "proxy/observe/log.h"
#include "proxy/server/server.h"

namespace sidecar::proxy {

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
      {{"before", static_cast<int64_t>(before)}, {"now", static_cast<int64_t>(limit.rlim_cur)}});
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
      std::max<int64_t>(static_cast<int64_t>(limit.rlim_cur) - in_use - kDescriptorReserve, 4) / 2;
  int64_t wanted = config_.max_connections + config_.max_egress_connections;
  if (wanted <= budget) {
    return;
  }
  // Shared in proportion to the configured limits, neither below one.
  int64_t egress = std::max<int64_t>(1, config_.max_egress_connections * budget / wanted);
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

}  // namespace sidecar::proxy
