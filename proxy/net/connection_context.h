// ConnectionContext is everything a connection may use of the world around it, built once
// per worker and borrowed by each of its connections: the loop, the chunk pool, the limits,
// the metrics, the client registry, where the mode and the TLS snapshot are read, where to
// dial, and whom to tell once the connection has closed. A connection reaches nothing else
// (no pointer back to its worker). Loop thread only, except the atomics it points at.
#ifndef SIDECAR_PROXY_NET_CONNECTION_CONTEXT_H_
#define SIDECAR_PROXY_NET_CONNECTION_CONTEXT_H_

#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "certs/tls_snapshot.h"
#include "proxy/base/mode.h"
#include "proxy/base/vocabulary.h"
#include "proxy/net/chunk.h"
#include "proxy/observe/client_registry.h"
#include "proxy/observe/metrics.h"

namespace sidecar::proxy {

class Connection;

// LoopByteCounts adds up one loop's byte counts, published to the shared counters once a
// second by the worker: no atomics shared between loops on the per-read path.
class LoopByteCounts {
 public:
  void Add(Direction direction, Transport transport, FlowDirection flow, uint64_t n) {
    pending_[(static_cast<int>(direction) << 2) | (static_cast<int>(transport) << 1) |
             static_cast<int>(flow)] += n;
  }
  // PublishTo moves what was added since the last call into `metrics`.
  void PublishTo(Metrics& metrics) {
    for (int i = 0; i < 8; ++i) {
      if (pending_[i] == 0) {
        continue;
      }
      metrics.Bytes(static_cast<Direction>(i >> 2), static_cast<Transport>((i >> 1) & 1),
                    static_cast<FlowDirection>(i & 1), pending_[i]);
      pending_[i] = 0;
    }
  }

 private:
  std::array<uint64_t, 8> pending_{};
};

// ConnectionLimits: the timeouts and options a connection applies (from Config).
struct ConnectionLimits {
  int64_t sniff_timeout_ms = 10000;
  int64_t handshake_timeout_ms = 10000;
  int upstream_proxy_protocol = 0;  // PROXY protocol version sent to mongod, 0: none
};

struct ConnectionContext {
  uv_loop_t* loop = nullptr;
  ChunkPool* pool = nullptr;
  ConnectionLimits limits;
  Metrics* metrics = nullptr;
  LoopByteCounts* bytes = nullptr;
  ClientRegistry* clients = nullptr;
  // A mode change applies to connections accepted after it (SPEC §2): each connection reads
  // the mode once, when its first bytes are sniffed (ingress) or when accepted (egress).
  const std::atomic<Mode>* mode = nullptr;
  // Each connection keeps the snapshot it started with; reload swaps in a new one.
  const std::atomic<std::shared_ptr<const certs::TlsSnapshot>>* tls = nullptr;
  // The local mongod, where ingress connections dial.
  const sockaddr_storage* upstream_address = nullptr;
  uint32_t outbound_mark = 0;  // SO_MARK on every dialed socket, 0: none
  int worker_index = 0;
  // on_closed runs once a connection's last handle has closed; it frees the connection.
  std::function<void(Connection&)> on_closed;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_CONNECTION_CONTEXT_H_
