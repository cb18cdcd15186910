// Descriptor passing over a UNIX SOCK_SEQPACKET socket: one packet is one message (its bytes
// and the descriptors that travel with it in SCM_RIGHTS), so neither side needs framing and
// descriptors can never be matched to the wrong message. Used by the takeover (takeover.h);
// plain blocking or non-blocking calls on any thread, no loop.
#ifndef SIDECAR_PROXY_SERVER_DESCRIPTOR_PASSING_H_
#define SIDECAR_PROXY_SERVER_DESCRIPTOR_PASSING_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/base/unique_fd.h"

namespace sidecar::proxy {

// The most descriptors one packet carries (the kernel's SCM_MAX_FD is 253), and the largest
// packet either side sends or accepts.
inline constexpr size_t kMaxDescriptorsPerPacket = 64;
inline constexpr size_t kMaxPacketBytes = 64 * 1024;

// Packet is one received message: its bytes and the descriptors it carried, now ours.
struct Packet {
  std::string data;
  std::vector<UniqueFd> fds;
};

// SendPacket sends `data` with `fds` (borrowed; the receiver gets its own copies) as one
// packet. `flags` as for sendmsg (MSG_DONTWAIT on a loop). At most kMaxDescriptorsPerPacket.
absl::Status SendPacket(int socket, std::string_view data, std::span<const int> fds,
                        int flags = 0);

// ReceivePacket receives one packet. The error is UnavailableError when the peer closed,
// DeadlineExceededError when a receive timeout or MSG_DONTWAIT found nothing, and
// DataLossError when the packet or its descriptors were cut short (the received
// descriptors are closed then).
absl::StatusOr<Packet> ReceivePacket(int socket, int flags = 0);

// PeerUid is the uid of the process at the other end of a connected UNIX socket
// (SO_PEERCRED, recorded by the kernel at connect, not claimed by the peer).
absl::StatusOr<uid_t> PeerUid(int socket);

// MayTakeOver: only the same user, or root, may take a sidecar's sockets.
inline bool MayTakeOver(uid_t peer, uid_t self) { return peer == 0 || peer == self; }

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_DESCRIPTOR_PASSING_H_
