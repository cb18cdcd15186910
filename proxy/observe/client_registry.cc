#include "proxy/observe/client_registry.h"

#include <chrono>

#include "proxy/base/host_port.h"

namespace sidecar::proxy {

namespace {

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string AddressWithoutPort(std::string_view address) {
  absl::StatusOr<HostPort> split =
      ParseHostPortBare(address, HostPortRules{.allow_port_zero = true, .default_port = 0});
  return split.ok() ? split->host : std::string(address);
}

ClientRegistry::Entry& ClientRegistry::Row(Key key, std::string_view driver, bool member) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    ClientRow& row = it->second->row;
    row.driver = std::string(driver);
    row.member = member;
    return *it->second;
  }
  if (rows_.size() >= max_rows_) {
    EvictIdle();
  }
  Entry& entry = rows_.emplace_back();
  entry.row.address = std::get<0>(key);
  entry.row.application = std::get<1>(key);
  entry.row.driver = std::string(driver);
  entry.row.member = member;
  entry.row.transport = static_cast<Transport>(std::get<2>(key));
  entry.row.state = static_cast<ClientState>(std::get<3>(key));
  index_.emplace(std::move(key), std::prev(rows_.end()));
  return entry;
}

ClientRegistry::Handle ClientRegistry::Opened(std::string_view peer_address, Transport transport,
                                              std::string_view application,
                                              std::string_view driver, bool member,
                                              std::string_view subject) {
  Key key{AddressWithoutPort(peer_address), std::string(application), static_cast<int>(transport),
          static_cast<int>(ClientState::kConnected)};
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& entry = Row(std::move(key), driver, member);
  entry.row.subject = std::string(subject);
  ++entry.row.active;
  ++entry.row.total;
  entry.row.last_seen_unix_ms = NowUnixMs();
  return Handle{&entry};
}

void ClientRegistry::Closed(Handle handle) {
  if (handle.entry == nullptr) {
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  --handle.entry->row.active;
  handle.entry->row.last_seen_unix_ms = NowUnixMs();
}

void ClientRegistry::Refused(std::string_view peer_address, std::string_view application,
                             std::string_view driver, bool member) {
  Key key{AddressWithoutPort(peer_address), std::string(application),
          static_cast<int>(Transport::kPlaintext), static_cast<int>(ClientState::kRefused)};
  std::lock_guard<std::mutex> lock(mutex_);
  Entry& entry = Row(std::move(key), driver, member);
  ++entry.row.total;
  entry.row.last_seen_unix_ms = NowUnixMs();
}

void ClientRegistry::QueuedPeak(Handle handle, FlowDirection flow, size_t bytes) {
  if (handle.entry == nullptr) {
    return;
  }
  std::atomic<int64_t>& max = handle.entry->max_queued[static_cast<int>(flow)];
  auto value = static_cast<int64_t>(bytes);
  int64_t seen = max.load(std::memory_order_relaxed);
  while (seen < value && !max.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

void ClientRegistry::EvictIdle() {
  // Rows with open connections are never evicted: their handles point at them. When every
  // row is busy the table grows past max_rows_ until some close.
  auto oldest = rows_.end();
  for (auto it = rows_.begin(); it != rows_.end(); ++it) {
    if (it->row.active == 0 &&
        (oldest == rows_.end() || it->row.last_seen_unix_ms < oldest->row.last_seen_unix_ms)) {
      oldest = it;
    }
  }
  if (oldest == rows_.end()) {
    return;
  }
  const ClientRow& row = oldest->row;
  index_.erase(Key{row.address, row.application, static_cast<int>(row.transport),
                   static_cast<int>(row.state)});
  rows_.erase(oldest);
}

std::vector<ClientRow> ClientRegistry::Snapshot(const Transport* only) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ClientRow> copy;
  for (const Entry& entry : rows_) {
    if (only == nullptr || entry.row.transport == *only) {
      ClientRow& row = copy.emplace_back(entry.row);
      row.max_queued_to_client =
          entry.max_queued[static_cast<int>(FlowDirection::kServerToClient)].load(
              std::memory_order_relaxed);
      row.max_queued_to_upstream =
          entry.max_queued[static_cast<int>(FlowDirection::kClientToServer)].load(
              std::memory_order_relaxed);
    }
  }
  return copy;
}

}  // namespace sidecar::proxy
