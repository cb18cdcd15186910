#include "proxy/server/descriptor_passing.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {

absl::Status SendPacket(int socket, std::string_view data, std::span<const int> fds, int flags) {
  if (fds.size() > kMaxDescriptorsPerPacket || data.size() > kMaxPacketBytes) {
    return absl::InvalidArgumentError("takeover packet too large");
  }
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxDescriptorsPerPacket)] = {};
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t sent;
  do {
    sent = sendmsg(socket, &message, flags | MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Packet> ReceivePacket(int socket, int flags) {
  Packet packet;
  packet.data.resize(kMaxPacketBytes);
  iovec iov{packet.data.data(), packet.data.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxDescriptorsPerPacket)] = {};
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  ssize_t received;
  do {
    // MSG_CMSG_CLOEXEC: a descriptor received must not leak into anything this process runs.
    received = recvmsg(socket, &message, flags | MSG_CMSG_CLOEXEC);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return absl::DeadlineExceededError("no answer in time");
    }
    return absl::UnavailableError(absl::StrCat("receive: ", std::strerror(errno)));
  }
  // Descriptors first, so they are owned (and closed) whatever is wrong with the packet.
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      packet.fds.emplace_back(fd);
    }
  }
  if (received == 0 && packet.fds.empty()) {
    return absl::UnavailableError("the other side closed the connection");
  }
  if ((message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return absl::DataLossError("takeover packet cut short");
  }
  packet.data.resize(static_cast<size_t>(received));
  return packet;
}

absl::StatusOr<uid_t> PeerUid(int socket) {
  ucred peer{};
  socklen_t length = sizeof(peer);
  if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) {
    return absl::UnavailableError(absl::StrCat("SO_PEERCRED: ", std::strerror(errno)));
  }
  return peer.uid;
}

}  // namespace sidecar::proxy
