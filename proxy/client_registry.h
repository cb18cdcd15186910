// ClientRegistry is the table behind `ctl clients` and the requireTLS gate: one row per
// client address (IP, without port) + application + transport, with the driver, the kind
// (client, or member when the hello carried internalClient), how many connections are open
// now, how many there were, and when one was last seen. Bounded: past `max_rows`, the row
// idle longest (no open connection, oldest lastSeen) is evicted.
//
// Thread-safe. Workers call Opened/Closed once per identified connection (not per byte);
// the control plane reads Snapshot().
#ifndef SIDECAR_PROXY_CLIENT_REGISTRY_H_
#define SIDECAR_PROXY_CLIENT_REGISTRY_H_

#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "proxy/metrics.h"

namespace sidecar::proxy {

struct ClientRow {
  std::string address;  // client IP
  std::string application;
  std::string driver;
  bool member = false;
  Transport transport = Transport::kPlaintext;
  int64_t active = 0;
  int64_t total = 0;
  int64_t last_seen_unix_ms = 0;
  // The verified client certificate subject of the row's latest TLS connection ("" when it
  // presented none); not part of the row's identity.
  std::string subject;
};

class ClientRegistry {
 public:
  // An opaque reference to a row, valid until Closed is called with it.
  struct Handle {
    ClientRow* row = nullptr;
  };

  explicit ClientRegistry(size_t max_rows = 4096) : max_rows_(max_rows) {}

  Handle Opened(std::string_view peer_address, Transport transport, std::string_view application,
                std::string_view driver, bool member, std::string_view subject = {});
  void Closed(Handle handle);

  // Snapshot copies the rows, optionally only those of one transport.
  std::vector<ClientRow> Snapshot(const Transport* only = nullptr) const;

 private:
  using Key = std::tuple<std::string, std::string, int>;
  void EvictIdle();

  mutable std::mutex mutex_;
  size_t max_rows_;
  std::list<ClientRow> rows_;  // stable addresses for handles
  std::map<Key, std::list<ClientRow>::iterator> index_;
};

// AddressWithoutPort turns "1.2.3.4:5" into "1.2.3.4" and "[::1]:5" into "::1".
std::string AddressWithoutPort(std::string_view address);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CLIENT_REGISTRY_H_
