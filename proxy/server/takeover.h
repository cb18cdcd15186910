// Takeover: a new tls-sidecar binary takes the listening sockets of the running one without a
// moment in which the port refuses a connection (SPEC §8, §10; as HAProxy's -x and Envoy's
// hot restart). Two sides of one conversation over a UNIX SOCK_SEQPACKET socket beside the
// control socket (TakeoverSocketPath), messages in takeover_wire.h:
//
//   new process (TakeoverClient)               running process (TakeoverSource)
//   connect ---------------------------------> SO_PEERCRED: same uid or root, else "error"
//   "hello" ---------------------------------> offer(): mode, counters, descriptors
//           <--------------------------------- "state", "sockets" (SCM_RIGHTS)..., "end"
//   (starts serving on the same sockets; both accept from the same queues for a moment)
//   "stop"  ---------------------------------> stop(): stop accepting, drain as at SIGTERM
//           <--------------------------------- "stopped"
//
// The sockets themselves are shared, never reopened: a connection waiting in an accept queue
// is accepted by whichever process polls first, and the old one's closing its copies of the
// descriptors leaves the new one's open. Until "stop" the old process changes nothing, so a
// new process that fails (or dies) before it leaves the old one serving as before.
#ifndef SIDECAR_PROXY_SERVER_TAKEOVER_H_
#define SIDECAR_PROXY_SERVER_TAKEOVER_H_

#include <sys/types.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "proxy/base/uv_handle.h"
#include "proxy/server/descriptor_passing.h"
#include "proxy/server/takeover_wire.h"

namespace sidecar::proxy {

// TakeoverSocketPath is where a sidecar whose control socket is `control_socket` listens for
// a takeover: "<dir>/27017.takeover.sock" beside "<dir>/27017.sock" (or the control socket's
// path with ".takeover" appended when it does not end in ".sock").
std::string TakeoverSocketPath(const std::string& control_socket);

// ShareListeners says which of `sockets` listening sockets of one address each of `workers`
// loops polls: element i lists worker i's. With at least as many sockets as workers each
// worker polls its share; with fewer, workers share sockets. Either way every socket is
// polled by some worker (a connection the kernel hashed to a socket nobody polls would wait
// forever) and every worker polls at least one when there is one.
std::vector<std::vector<size_t>> ShareListeners(size_t sockets, size_t workers);

// TakeoverSource is the running sidecar's side: it listens on `path` (mode 0600) on the main
// loop and serves one conversation at a time. Main loop only.
class TakeoverSource {
 public:
  // Offer is what the sidecar hands over; the descriptors are borrowed (the receiver gets
  // its own copies) and `labels` names each, in the same order.
  struct Offer {
    HandoverState state;
    std::vector<SocketLabel> labels;
    std::vector<int> fds;
  };
  struct Hooks {
    // offer is asked at "hello"; an error status refuses the takeover with its message.
    absl::AnyInvocable<absl::StatusOr<Offer>()> offer;
    // stop is called once, at "stop": stop accepting and drain. "stopped" is answered after
    // it returned, so the hook closes whatever the new process must bind after it.
    absl::AnyInvocable<void()> stop;
  };

  static absl::StatusOr<std::unique_ptr<TakeoverSource>> Create(uv_loop_t* loop, std::string path,
                                                                Hooks hooks);
  ~TakeoverSource();
  TakeoverSource(const TakeoverSource&) = delete;
  TakeoverSource& operator=(const TakeoverSource&) = delete;

  // Close stops listening and removes the socket file; idempotent.
  void Close();
  const std::string& path() const { return path_; }

  // How long a conversation may take before it is dropped (the old process then goes on).
  static constexpr uint64_t kConversationTimeoutMs = 30000;

 private:
  TakeoverSource(uv_loop_t* loop, std::string path, Hooks hooks);
  static void OnListenerReadable(uv_poll_t* poll, int status, int events);
  static void OnConversationReadable(uv_poll_t* poll, int status, int events);
  static void OnTimeout(uv_timer_t* timer);
  void Accept();
  void Converse();
  // Refuse sends an "error" with `sentence` and ends the conversation.
  void Refuse(std::string_view sentence);
  absl::Status SendOffer();
  void EndConversation();

  uv_loop_t* loop_;
  std::string path_;
  Hooks hooks_;
  UniqueFd listener_fd_;
  // The socket file this process bound, to leave a newer process's file alone at Close.
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  UvHandle<uv_poll_t> listener_poll_;
  UniqueFd conversation_fd_;
  UvHandle<uv_poll_t> conversation_poll_;
  UvHandle<uv_timer_t> timer_;
  bool offered_ = false;
  bool stopped_ = false;
  std::string refusal_;  // why this conversation's peer may not take over, "" when it may
};

// ReceivedSocket is one descriptor handed over, now this process's.
struct ReceivedSocket {
  SocketLabel label;
  UniqueFd fd;
};

struct ReceivedHandover {
  HandoverState state;
  std::vector<ReceivedSocket> sockets;
};

// TakeoverClient is the new process's side: blocking calls with timeouts, made on the main
// thread during start-up.
class TakeoverClient {
 public:
  // Connect reaches the running sidecar at `path`; the error says that no sidecar could be
  // reached there, and why.
  static absl::StatusOr<TakeoverClient> Connect(const std::string& path);

  // Receive says "hello" and collects the state and every descriptor; an "error" answer (a
  // refusal: another user, a sidecar shutting down) becomes the status.
  absl::StatusOr<ReceivedHandover> Receive();

  // Stop tells the old process to stop accepting and waits for it to confirm.
  absl::Status Stop();

  static constexpr int kAnswerTimeoutSeconds = 10;

 private:
  explicit TakeoverClient(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(path) {}
  absl::StatusOr<Message> Expect(Packet& packet);

  UniqueFd fd_;
  std::string path_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_TAKEOVER_H_
