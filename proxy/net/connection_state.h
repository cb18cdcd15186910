// ConnectionState is where a Connection stands; kTransitions lists every change of state a
// connection may make, one row per arrow of the diagram at the top of connection.h (a unit
// test parses that diagram and compares it with this table both ways). Connection::Enter is
// the only place a state changes: it checks the row, counts it, and logs it at debug level.
//
// The counters are process-wide atomics so that tests can show that every row was reached;
// any thread may read them.
#ifndef SIDECAR_PROXY_NET_CONNECTION_STATE_H_
#define SIDECAR_PROXY_NET_CONNECTION_STATE_H_

#include <array>
#include <cstdint>
#include <string_view>

namespace sidecar::proxy {

enum class ConnectionState : uint8_t {
  kSniffing,           // ingress: reading the first bytes to tell TLS from MongoDB
  kConnecting,         // egress: dialing the peer
  kHandshaking,        // a TLS handshake on one side is in progress
  kProxying,           // bytes flow both ways
  kHalfClosed,         // one side finished sending; the other way still flows
  kRejecting,          // refused: waiting for the first request so the client can be told why
  kClosingAfterFlush,  // reads stopped; closes once what is queued has been written
  kClosing,            // handles closing; freed after the last close callback
  kCount               // not a state
};

inline constexpr int kConnectionStateCount = static_cast<int>(ConnectionState::kCount);

// ConnectionStateName is the enumerator's name without the k ("Sniffing"), for logs.
std::string_view ConnectionStateName(ConnectionState state);

struct ConnectionTransition {
  ConnectionState from;
  ConnectionState to;
};

// kTransitions: the legal changes of state. Keep in step with the diagram in connection.h.
inline constexpr std::array<ConnectionTransition, 23> kTransitions = {{
    {ConnectionState::kSniffing, ConnectionState::kHandshaking},
    {ConnectionState::kSniffing, ConnectionState::kProxying},
    {ConnectionState::kSniffing, ConnectionState::kRejecting},
    {ConnectionState::kSniffing, ConnectionState::kClosingAfterFlush},
    {ConnectionState::kSniffing, ConnectionState::kClosing},
    {ConnectionState::kConnecting, ConnectionState::kHandshaking},
    {ConnectionState::kConnecting, ConnectionState::kProxying},
    {ConnectionState::kConnecting, ConnectionState::kClosingAfterFlush},
    {ConnectionState::kConnecting, ConnectionState::kClosing},
    {ConnectionState::kHandshaking, ConnectionState::kProxying},
    {ConnectionState::kHandshaking, ConnectionState::kRejecting},
    {ConnectionState::kHandshaking, ConnectionState::kClosingAfterFlush},
    {ConnectionState::kHandshaking, ConnectionState::kClosing},
    {ConnectionState::kProxying, ConnectionState::kHalfClosed},
    {ConnectionState::kProxying, ConnectionState::kRejecting},
    {ConnectionState::kProxying, ConnectionState::kClosingAfterFlush},
    {ConnectionState::kProxying, ConnectionState::kClosing},
    {ConnectionState::kHalfClosed, ConnectionState::kRejecting},
    {ConnectionState::kHalfClosed, ConnectionState::kClosingAfterFlush},
    {ConnectionState::kHalfClosed, ConnectionState::kClosing},
    {ConnectionState::kRejecting, ConnectionState::kClosingAfterFlush},
    {ConnectionState::kRejecting, ConnectionState::kClosing},
    {ConnectionState::kClosingAfterFlush, ConnectionState::kClosing},
}};

// IsLegalTransition: whether `from` -> `to` is a row of kTransitions.
constexpr bool IsLegalTransition(ConnectionState from, ConnectionState to) {
  for (const ConnectionTransition& t : kTransitions) {
    if (t.from == from && t.to == to) {
      return true;
    }
  }
  return false;
}

// RecordTransition counts one change of state (legal or not) for the counters below.
void RecordTransition(ConnectionState from, ConnectionState to);
// TransitionCount: how many times `from` -> `to` happened in this process.
uint64_t TransitionCount(ConnectionState from, ConnectionState to);
// IllegalTransitionCount: how many attempted changes were not in kTransitions (each a bug).
uint64_t IllegalTransitionCount();

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_CONNECTION_STATE_H_
