// ClientRegistry is the table behind `ctl clients` and the requireTLS gate: one row per
// client address (IP, without port) + application + transport + state, with the driver, the
// kind (client, or member when the hello carried internalClient), how many connections are
// open now, how many there were, and when one was last seen. A plaintext client refused in
// requireTLS gets a row of its own in state `refused` (never open, `total` counts the
// refusals), so that after the switch the clients still to move are where the runbook looks
// (SPEC §6). Bounded: past `max_rows`, the row idle longest (no open connection, oldest
// lastSeen) is evicted.
//
// Thread-safe. Workers call Opened/Closed/Refused once per identified connection (not per
// byte) and QueuedPeak only when a connection's own peak rises; the control plane reads
// Snapshot().
#ifndef SIDECAR_PROXY_OBSERVE_CLIENT_REGISTRY_H_
#define SIDECAR_PROXY_OBSERVE_CLIENT_REGISTRY_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "proxy/base/vocabulary.h"

namespace sidecar::proxy {

// ClientState says whether a row's connections were let in or refused (SPEC §6 `state`).
enum class ClientState : uint8_t { kConnected = 0, kRefused = 1 };

// Inline: the control plane's library names states without linking the registry.
inline std::string_view ClientStateName(ClientState state) {
  return state == ClientState::kRefused ? "refused" : "connected";
}

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
  ClientState state = ClientState::kConnected;
  // The most bytes that ever waited inside the sidecar for a slow reader, per flow, over
  // the row's connections (open or closed): what backpressure bounds (SPEC §10).
  int64_t max_queued_to_client = 0;
  int64_t max_queued_to_upstream = 0;
};

class ClientRegistry {
 private:
  struct Entry;

 public:
  // An opaque reference to a connected row, valid until Closed is called with it.
  struct Handle {
    Entry* entry = nullptr;
  };

  explicit ClientRegistry(size_t max_rows = 4096) : max_rows_(max_rows) {}

  Handle Opened(std::string_view peer_address, Transport transport, std::string_view application,
                std::string_view driver, bool member, std::string_view subject = {});
  void Closed(Handle handle);

  // Refused counts one plaintext connection refused in requireTLS in the client's
  // `refused` row (created when new). `application` and `driver` are "" when the client
  // was refused before its hello could be read.
  void Refused(std::string_view peer_address, std::string_view application, std::string_view driver,
               bool member);

  // QueuedPeak raises the row's maximum for `flow` to `bytes` if it is higher. Lock-free;
  // a connection calls it only when its own peak rises, so the data path pays one compare
  // per delivery and an atomic only while a queue is growing to a new height. A null handle
  // (a connection not identified) is ignored.
  static void QueuedPeak(Handle handle, FlowDirection flow, size_t bytes);

  // Snapshot copies the rows, optionally only those of one transport.
  std::vector<ClientRow> Snapshot(const Transport* only = nullptr) const;

 private:
  struct Entry {
    ClientRow row;
    // Written without the mutex by QueuedPeak; copied into the row by Snapshot.
    std::array<std::atomic<int64_t>, 2> max_queued{};
  };
  using Key = std::tuple<std::string, std::string, int, int>;

  // Row finds or creates the row for `key`; the caller holds mutex_.
  Entry& Row(Key key, std::string_view driver, bool member);
  void EvictIdle();

  mutable std::mutex mutex_;
  size_t max_rows_;
  std::list<Entry> rows_;  // stable addresses for handles
  std::map<Key, std::list<Entry>::iterator> index_;
};

// AddressWithoutPort turns "1.2.3.4:5" into "1.2.3.4" and "[::1]:5" into "::1".
std::string AddressWithoutPort(std::string_view address);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_CLIENT_REGISTRY_H_
