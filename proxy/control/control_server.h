// ControlServer is the control socket (SPEC §6): a UNIX stream socket on the main loop,
// created mode 0600, whose peers must run as root or as the sidecar's own uid (checked
// with SO_PEERCRED on accept; others get one ok:false line and are closed). Requests are
// JSON lines, answered one at a time per connection and in order, by ControlCommands; many
// connections may be open at once. Only the main loop runs here, never a data loop.
//
// At start, a socket file left at the path by a sidecar that is gone (nothing answers on it)
// is removed; if something answers, another sidecar owns the path and Create fails. Close
// removes the file, unless it has been replaced by someone else's since.
//
// Loop thread only. The owner calls Close (or destroys it) before the loop ends.
#ifndef SIDECAR_PROXY_CONTROL_CONTROL_SERVER_H_
#define SIDECAR_PROXY_CONTROL_CONTROL_SERVER_H_

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proxy/base/uv_handle.h"
#include "proxy/control/control_commands.h"

namespace sidecar::proxy {

class ControlServer {
 public:
  // A line longer than this without a newline is refused and the connection closed.
  static constexpr size_t kMaxLineBytes = 64 * 1024;
  // Requests read ahead while one is being answered; more is refused and closed.
  static constexpr size_t kMaxQueuedRequests = 64;
  // Connections open at once; more are refused and closed.
  static constexpr size_t kMaxConnections = 64;

  // Create binds `path` on `loop` and starts accepting. `commands` must outlive the server.
  // Errors name the path and say what is wrong.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Create(uv_loop_t* loop,
                                                               const std::string& path,
                                                               ControlCommands& commands);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Close stops listening, closes every connection and removes the socket file. Idempotent.
  void Close();

  const std::string& path() const { return path_; }

 private:
  struct Peer;

  ControlServer(uv_loop_t* loop, std::string path, ControlCommands& commands);
  static void OnConnection(uv_stream_t* listener, int status);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);

  void Accept();
  void OnBytes(Peer& peer, std::string_view bytes);
  void OnPeerFinished(Peer& peer);
  void Dispatch(Peer& peer);
  void Send(Peer& peer, std::string line);
  void Refuse(Peer& peer, std::string_view sentence);
  void MaybeClose(Peer& peer);
  void ClosePeer(uint64_t id);

  uv_loop_t* loop_;
  std::string path_;
  ControlCommands& commands_;
  UvHandle<uv_pipe_t> listener_;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  uint64_t next_peer_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Peer>> peers_;
  // Replies that arrive after the server closed find this expired and are dropped.
  std::shared_ptr<ControlServer*> alive_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONTROL_CONTROL_SERVER_H_
