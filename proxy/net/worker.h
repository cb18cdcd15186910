// Worker is one event loop on its own thread with its own SO_REUSEPORT listeners: the
// kernel spreads accepted connections across workers, and nothing on the data path is
// shared between them but atomics. The control plane talks to a worker only through
// Post(). Created and destroyed by Server on the main thread.
#ifndef SIDECAR_PROXY_NET_WORKER_H_
#define SIDECAR_PROXY_NET_WORKER_H_

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "proxy/base/close_reason.h"
#include "proxy/base/uv_handle.h"
#include "proxy/net/chunk.h"
#include "proxy/net/connection.h"
#include "proxy/net/connection_context.h"
#include "proxy/net/shared_state.h"
#include "proxy/observe/metrics.h"

namespace sidecar::proxy {

class Worker {
 public:
  // Create makes the loop and binds one listener per address (on the calling thread, so
  // bind errors surface at start). A port of 0 in an address is replaced by the bound port.
  // Egress listeners come from shared.egress_routes.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(SharedState& shared, int index,
                                                        std::vector<sockaddr_storage>& addresses);

  // ListeningSocket is a listening descriptor and what arrives on it: ingress (route null)
  // or egress along `route` (an element of shared.egress_routes).
  struct ListeningSocket {
    int fd = -1;
    const EgressRoute* route = nullptr;
  };
  // Adopt makes the loop and watches listening sockets opened elsewhere (handed over by the
  // sidecar this process takes over from). The worker owns each fd from here on, on success
  // and on failure; each must be a descriptor of its own (dup() one to share a socket).
  static absl::StatusOr<std::unique_ptr<Worker>> Adopt(SharedState& shared, int index,
                                                       std::vector<ListeningSocket> sockets);
  // listening_sockets lists this worker's listeners; the descriptors stay the worker's and
  // are open until StopAccepting. Only StopAccepting changes the list, so another thread may
  // call this while it has not posted StopAccepting.
  std::vector<ListeningSocket> listening_sockets() const;
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Start runs the loop on a new thread; Join waits for it to end (after Stop).
  void Start();
  void Join();

  // Post runs `task` on this worker's loop thread. Any thread may call it.
  void Post(absl::AnyInvocable<void(Worker&)> task);

  // Loop thread only.
  uv_loop_t* loop() { return &loop_; }
  int index() const { return index_; }

  // StopAccepting closes the listeners; the loop ends once no connection is left.
  void StopAccepting();
  // CloseAll ends every connection now.
  void CloseAll(CloseReason reason);
  // DrainConnections starts the SIGTERM drain of every connection (Connection::StartDrain):
  // the idle ones close now; logs how many wait for a reply. OnDrainDeadline passes on the end
  // of limits.drainSeconds (Connection::OnDrainDeadline).
  void DrainConnections();
  void OnDrainDeadline();
  // ForEachConnection visits open connections (not those already closing), oldest first.
  template <typename F>
  void ForEachConnection(F&& visit) {
    for (auto& [id, connection] : connections_) {
      if (connection->state() != Connection::State::kClosing) {
        visit(*connection);
      }
    }
  }
  // FindConnection: the open connection `id` names (Connection::id), or null when it has
  // closed meanwhile. Ids are never reused, so a stale id finds nothing.
  Connection* FindConnection(uint64_t id);

  // PublishBytes moves this loop's byte counts to the shared counters (once a second).
  void PublishBytes();

 private:
  Worker(SharedState& shared, int index);
  // Init makes the loop, its wake-up and its timers (Create and Adopt share it).
  absl::Status Init();
  // Listener is one listening socket, accepted from by the worker itself rather than by
  // uv_listen: libuv 1.44 answers EMFILE with a single spare descriptor per loop, which
  // another thread can take, and then retries accept() without returning to epoll, forever.
  // Owning the accept lets the worker stop watching the socket and retry later instead.
  struct Listener {
    Listener() = default;
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;
    ~Listener();

    Worker* worker = nullptr;
    int fd = -1;
    const EgressRoute* route = nullptr;  // null: ingress
    UvHandle<uv_poll_t> poll;
  };

  // Listen binds `address`; connections on it are ingress, or egress along `route`.
  absl::Status Listen(sockaddr_storage& address, const EgressRoute* route);
  // Watch starts accepting from the listening `fd` (owned by the worker from the call on).
  absl::Status Watch(int fd, const EgressRoute* route, std::string_view name);
  static void OnListenerReadable(uv_poll_t* poll, int status, int events);
  void AcceptFrom(Listener& listener);
  void Admit(Listener& listener, int fd);
  // PauseAccepting stops watching every listener after accept() ran out of descriptors
  // (or failed otherwise) and retries after accept_backoff_ms_, doubled at each failure up
  // to a second: pending connections wait in the kernel's backlog instead of the loop
  // spinning (as HAProxy pauses its listeners and nginx delays its accept mutex).
  void PauseAccepting(int error);
  static void OnAcceptRetry(uv_timer_t* timer);
  static void OnAsync(uv_async_t* async);
  static void OnPublishTimer(uv_timer_t* timer);
  void MaybeFinish();
  // Release frees `connection` once its last handle has closed (ConnectionContext::on_closed).
  void Release(Connection& connection);

  SharedState& shared_;
  int index_;
  uv_loop_t loop_{};
  bool loop_initialised_ = false;
  ChunkPool pool_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  UvHandle<uv_timer_t> accept_retry_timer_;
  bool accept_paused_ = false;
  uint64_t accept_backoff_ms_ = 0;  // 0: the last accept succeeded
  UvHandle<uv_async_t> async_;
  UvHandle<uv_timer_t> publish_timer_;
  LoopByteCounts bytes_;
  // What every connection of this worker is given, built once in Create.
  ConnectionContext context_;
  std::mutex tasks_mutex_;
  std::vector<absl::AnyInvocable<void(Worker&)>> tasks_;
  bool finished_ = false;  // guarded by tasks_mutex_: async_ is closed
  // The connections this loop owns, by id; freed when their last handle has closed.
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_WORKER_H_
