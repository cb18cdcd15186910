// The upstream probe's address checks (SPEC §8): does the replica set advertise this
// sidecar's address, and can mongod be reached around the sidecar? Each check returns the
// sentences to warn with. Blocking (name resolution, TCP connects): the probe runs them on
// libuv's thread pool, never on a loop.
#ifndef SIDECAR_PROXY_UPSTREAM_HOST_CHECKS_H_
#define SIDECAR_PROXY_UPSTREAM_HOST_CHECKS_H_

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "protocol/hello_probe.h"

namespace sidecar::proxy {

// HelloSummary, BuildHelloProbe and ParseHelloReply are the probe's bytes (protocol/).
using protocol::HelloSummary;

// SidecarAddresses is what the host check compares the advertised hosts with.
struct SidecarAddresses {
  uint16_t port = 0;                        // net.port
  std::vector<sockaddr_storage> listening;  // net.bindIp with net.port (may be wildcards)
  std::vector<sockaddr_storage> local;      // every address of this host's interfaces
  sockaddr_storage upstream{};              // net.upstream, resolved
};

// Resolver resolves "host" to its addresses (port 0); an empty result when it cannot.
using Resolver = std::function<std::vector<sockaddr_storage>(const std::string& host)>;
// SystemResolver is getaddrinfo (blocking: call it off the loop).
std::vector<sockaddr_storage> SystemResolver(const std::string& host);
// LocalInterfaceAddresses lists this host's interface addresses (uv_interface_addresses).
std::vector<sockaddr_storage> LocalInterfaceAddresses();

// AdvertisedHostWarnings returns one sentence per problem with the advertised hosts: a
// host that is this machine but not the sidecar's address (e.g. mongod's own port), or,
// when no advertised host is this sidecar at all, the list of them. Hosts that do not
// resolve are left out (the caller cannot tell where they point). Blocking when `resolve`
// is: call it off the loop.
std::vector<std::string> AdvertisedHostWarnings(const HelloSummary& hello,
                                                const SidecarAddresses& sidecar,
                                                const Resolver& resolve);

// ExposedUpstreamWarnings returns a sentence when mongod answers on an address other than
// loopback: the configured upstream itself, or the upstream's port on one of this host's
// non-loopback addresses (tried with a TCP connect of `timeout_ms`), skipping addresses the
// sidecar itself listens on. Blocking: call it off the loop.
std::vector<std::string> ExposedUpstreamWarnings(const SidecarAddresses& sidecar, int timeout_ms);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_UPSTREAM_HOST_CHECKS_H_
