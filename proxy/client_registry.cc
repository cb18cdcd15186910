#include "proxy/client_registry.h"

#include <chrono>

#include "proxy/host_port.h"

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

ClientRegistry::Handle ClientRegistry::Opened(std::string_view peer_address, Transport transport,
                                              std::string_view application,
                                              std::string_view driver, bool member,
                                              std::string_view subject) {
  Key key{AddressWithoutPort(peer_address), std::string(application),
          static_cast<int>(transport)};
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = index_.find(key);
  ClientRow* row;
  if (it == index_.end()) {
    if (rows_.size() >= max_rows_) {
      EvictIdle();
    }
    rows_.push_back(ClientRow{std::get<0>(key), std::get<1>(key), std::string(driver), member,
                              transport});
    index_.emplace(std::move(key), std::prev(rows_.end()));
    row = &rows_.back();
  } else {
    row = &*it->second;
    row->driver = std::string(driver);
    row->member = member;
  }
  row->subject = std::string(subject);
  ++row->active;
  ++row->total;
  row->last_seen_unix_ms = NowUnixMs();
  return Handle{row};
}

void ClientRegistry::Closed(Handle handle) {
  if (handle.row == nullptr) {
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  --handle.row->active;
  handle.row->last_seen_unix_ms = NowUnixMs();
}

void ClientRegistry::EvictIdle() {
  // Rows with open connections are never evicted: their handles point at them. When every
  // row is busy the table grows past max_rows_ until some close.
  auto oldest = rows_.end();
  for (auto it = rows_.begin(); it != rows_.end(); ++it) {
    if (it->active == 0 &&
        (oldest == rows_.end() || it->last_seen_unix_ms < oldest->last_seen_unix_ms)) {
      oldest = it;
    }
  }
  if (oldest == rows_.end()) {
    return;
  }
  index_.erase(Key{oldest->address, oldest->application, static_cast<int>(oldest->transport)});
  rows_.erase(oldest);
}

std::vector<ClientRow> ClientRegistry::Snapshot(const Transport* only) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ClientRow> copy;
  for (const ClientRow& row : rows_) {
    if (only == nullptr || row.transport == *only) {
      copy.push_back(row);
    }
  }
  return copy;
}

}  // namespace sidecar::proxy
