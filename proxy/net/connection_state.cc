#include "proxy/net/connection_state.h"

#include <atomic>

namespace sidecar::proxy {

namespace {

constexpr std::array<std::string_view, kConnectionStateCount> kStateNames = {
    "Sniffing",   "Connecting", "Handshaking",       "Proxying",
    "HalfClosed", "Rejecting",  "ClosingAfterFlush", "Closing"};

// A few changes per connection: relaxed atomics cost nothing next to the syscalls around them.
std::array<std::atomic<uint64_t>, kConnectionStateCount * kConnectionStateCount> counts{};
std::atomic<uint64_t> illegal{0};

int Index(ConnectionState from, ConnectionState to) {
  return static_cast<int>(from) * kConnectionStateCount + static_cast<int>(to);
}

}  // namespace

std::string_view ConnectionStateName(ConnectionState state) {
  int i = static_cast<int>(state);
  return i < kConnectionStateCount ? kStateNames[i] : "unknown";
}

void RecordTransition(ConnectionState from, ConnectionState to) {
  counts[Index(from, to)].fetch_add(1, std::memory_order_relaxed);
  if (!IsLegalTransition(from, to)) {
    illegal.fetch_add(1, std::memory_order_relaxed);
  }
}

uint64_t TransitionCount(ConnectionState from, ConnectionState to) {
  return counts[Index(from, to)].load(std::memory_order_relaxed);
}

uint64_t IllegalTransitionCount() { return illegal.load(std::memory_order_relaxed); }

}  // namespace sidecar::proxy
