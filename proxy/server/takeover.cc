#include "proxy/server/takeover.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {
namespace {

absl::StatusOr<sockaddr_un> SocketName(const std::string& path) {
  sockaddr_un name{};
  name.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(name.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("takeover socket ", path, ": path empty or longer than ",
                     sizeof(name.sun_path) - 1, " bytes"));
  }
  std::memcpy(name.sun_path, path.data(), path.size());
  return name;
}

}  // namespace

std::string TakeoverSocketPath(const std::string& control_socket) {
  constexpr std::string_view kSuffix = ".sock";
  if (control_socket.ends_with(kSuffix)) {
    return absl::StrCat(control_socket.substr(0, control_socket.size() - kSuffix.size()),
                        ".takeover.sock");
  }
  return absl::StrCat(control_socket, ".takeover");
}

std::vector<std::vector<size_t>> ShareListeners(size_t sockets, size_t workers) {
  std::vector<std::vector<size_t>> shares(workers);
  if (sockets == 0) {
    return shares;
  }
  if (sockets >= workers) {
    for (size_t j = 0; j < sockets; ++j) {
      shares[j % workers].push_back(j);
    }
  } else {
    for (size_t i = 0; i < workers; ++i) {
      shares[i].push_back(i % sockets);
    }
  }
  return shares;
}

// --- the running process ----------------------------------------------------------------

TakeoverSource::TakeoverSource(uv_loop_t* loop, std::string path, Hooks hooks)
    : loop_(loop), path_(std::move(path)), hooks_(std::move(hooks)) {}

TakeoverSource::~TakeoverSource() { Close(); }

absl::StatusOr<std::unique_ptr<TakeoverSource>> TakeoverSource::Create(uv_loop_t* loop,
                                                                      std::string path,
                                                                      Hooks hooks) {
  std::unique_ptr<TakeoverSource> source(new TakeoverSource(loop, std::move(path), std::move(hooks)));
  absl::StatusOr<sockaddr_un> name = SocketName(source->path_);
  if (!name.ok()) {
    return name.status();
  }
  source->listener_fd_ =
      UniqueFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (source->listener_fd_.get() < 0) {
    return absl::UnavailableError(absl::StrCat("takeover socket: ", std::strerror(errno)));
  }
  // The control socket beside it was bound by this process and the port lock is held: a
  // file left here is a dead sidecar's.
  unlink(source->path_.c_str());
  // 0600 from the start (umask around bind), as the control socket.
  mode_t old_umask = umask(0177);
  int rc = bind(source->listener_fd_.get(), reinterpret_cast<const sockaddr*>(&*name),
                sizeof(*name));
  int err = errno;
  umask(old_umask);
  if (rc != 0 || listen(source->listener_fd_.get(), 4) != 0) {
    err = rc != 0 ? err : errno;
    unlink(source->path_.c_str());
    return absl::UnavailableError(
        absl::StrCat("takeover socket ", source->path_, ": ", std::strerror(err)));
  }
  struct stat bound {};
  if (stat(source->path_.c_str(), &bound) == 0) {
    source->socket_dev_ = bound.st_dev;
    source->socket_ino_ = bound.st_ino;
  }
  auto poll = UvHandle<uv_poll_t>::Create("uv_poll_init", [&](uv_poll_t* p) {
    return uv_poll_init(loop, p, source->listener_fd_.get());
  });
  if (!poll.ok()) {
    source->Close();
    return poll.status();
  }
  source->listener_poll_ = *std::move(poll);
  source->listener_poll_.get()->data = source.get();
  uv_poll_start(source->listener_poll_.get(), UV_READABLE, &TakeoverSource::OnListenerReadable);
  auto timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
  if (!timer.ok()) {
    source->Close();
    return timer.status();
  }
  source->timer_ = *std::move(timer);
  source->timer_.get()->data = source.get();
  return source;
}

void TakeoverSource::Close() {
  EndConversation();
  timer_.Close();
  // uv_close on a poll handle stops watching at once, so the descriptor may close now.
  listener_poll_.Close();
  if (listener_fd_.get() >= 0) {
    listener_fd_ = UniqueFd();
    // Remove the file only if it is still ours: after a takeover the new process has bound
    // the same path, and the old one closes this socket when it exits, later.
    struct stat current {};
    if (stat(path_.c_str(), &current) == 0 && current.st_dev == socket_dev_ &&
        current.st_ino == socket_ino_) {
      unlink(path_.c_str());
    }
  }
}

void TakeoverSource::OnListenerReadable(uv_poll_t* poll, int status, int /*events*/) {
  if (status == 0) {
    static_cast<TakeoverSource*>(poll->data)->Accept();
  }
}

void TakeoverSource::Accept() {
  UniqueFd fd(accept4(listener_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (fd.get() < 0) {
    return;
  }
  if (conversation_fd_.get() >= 0 || stopped_) {
    (void)SendPacket(fd.get(), EncodeError(stopped_ ? "this sidecar has been taken over already"
                                                    : "another takeover is in progress"),
                     {}, MSG_DONTWAIT);
    return;
  }
  // Another user is told so in answer to its hello, not at once: closing a UNIX socket with
  // its request unread would reset the connection and lose the answer.
  absl::StatusOr<uid_t> peer = PeerUid(fd.get());
  refusal_.clear();
  if (!peer.ok()) {
    refusal_ = std::string(peer.status().message());
  } else if (!MayTakeOver(*peer, geteuid())) {
    refusal_ = absl::StrCat("uid ", *peer, " may not take over a sidecar of uid ", geteuid(),
                            "; only the same user or root may");
  }
  auto poll = UvHandle<uv_poll_t>::Create(
      "uv_poll_init", [&](uv_poll_t* p) { return uv_poll_init(loop_, p, fd.get()); });
  if (!poll.ok()) {
    return;
  }
  conversation_fd_ = std::move(fd);
  conversation_poll_ = *std::move(poll);
  conversation_poll_.get()->data = this;
  offered_ = false;
  uv_poll_start(conversation_poll_.get(), UV_READABLE, &TakeoverSource::OnConversationReadable);
  uv_timer_start(timer_.get(), &TakeoverSource::OnTimeout, kConversationTimeoutMs, 0);
}

void TakeoverSource::OnConversationReadable(uv_poll_t* poll, int status, int /*events*/) {
  auto* self = static_cast<TakeoverSource*>(poll->data);
  if (status < 0) {
    self->EndConversation();
    return;
  }
  self->Converse();
}

void TakeoverSource::OnTimeout(uv_timer_t* timer) {
  auto* self = static_cast<TakeoverSource*>(timer->data);
  Log(Severity::kWarning, Component::kControl,
      "takeover abandoned: the new process did not finish in time; serving on", {});
  self->EndConversation();
}

void TakeoverSource::Converse() {
  absl::StatusOr<Packet> packet = ReceivePacket(conversation_fd_.get(), MSG_DONTWAIT);
  if (!packet.ok()) {
    if (!absl::IsDeadlineExceeded(packet.status())) {
      if (offered_) {
        Log(Severity::kWarning, Component::kControl,
            "takeover abandoned: the new process went away before taking over; serving on",
            {{"error", std::string(packet.status().message())}});
      }
      EndConversation();
    }
    return;
  }
  absl::StatusOr<Message> message = DecodeMessage(packet->data);
  if (!message.ok() || !packet->fds.empty()) {
    Refuse(message.ok() ? "descriptors are not expected here"
                        : std::string(message.status().message()));
    return;
  }
  if (!refusal_.empty()) {
    Refuse(refusal_);
  } else if (message->verb == "hello" && !offered_) {
    if (absl::Status status = SendOffer(); !status.ok()) {
      Refuse(std::string(status.message()));
      return;
    }
    offered_ = true;
  } else if (message->verb == "stop" && offered_) {
    stopped_ = true;
    hooks_.stop();
    (void)SendPacket(conversation_fd_.get(), EncodeMessage(Message{"stopped", {}}), {},
                     MSG_DONTWAIT);
    EndConversation();
    Close();  // one takeover per process: the new one binds this path next
  } else {
    Refuse(absl::StrCat("unexpected \"", message->verb, "\""));
  }
}

absl::Status TakeoverSource::SendOffer() {
  absl::StatusOr<Offer> offer = hooks_.offer();
  if (!offer.ok()) {
    return offer.status();
  }
  int fd = conversation_fd_.get();
  // The packets are small and few, far below the socket's buffer: sent without waiting.
  if (absl::Status status = SendPacket(fd, EncodeState(offer->state), {}, MSG_DONTWAIT);
      !status.ok()) {
    return status;
  }
  for (size_t first = 0; first < offer->fds.size(); first += kMaxDescriptorsPerPacket) {
    size_t count = std::min(kMaxDescriptorsPerPacket, offer->fds.size() - first);
    std::vector<SocketLabel> labels(offer->labels.begin() + first,
                                    offer->labels.begin() + first + count);
    if (absl::Status status =
            SendPacket(fd, EncodeSockets(labels),
                       std::span<const int>(offer->fds.data() + first, count), MSG_DONTWAIT);
        !status.ok()) {
      return status;
    }
  }
  Log(Severity::kInfo, Component::kControl,
      "takeover: sockets handed over; serving until the new process says it serves",
      {{"sockets", static_cast<int64_t>(offer->fds.size())}});
  return SendPacket(fd, EncodeMessage(Message{"end", {}}), {}, MSG_DONTWAIT);
}

void TakeoverSource::Refuse(std::string_view sentence) {
  Log(Severity::kWarning, Component::kControl, "takeover refused",
      {{"reason", std::string(sentence)}});
  if (conversation_fd_.get() >= 0) {
    (void)SendPacket(conversation_fd_.get(), EncodeError(sentence), {}, MSG_DONTWAIT);
  }
  EndConversation();
}

void TakeoverSource::EndConversation() {
  if (timer_) {
    uv_timer_stop(timer_.get());
  }
  conversation_poll_.Close();
  conversation_fd_ = UniqueFd();
  offered_ = false;
}

// --- the new process --------------------------------------------------------------------

absl::StatusOr<TakeoverClient> TakeoverClient::Connect(const std::string& path) {
  absl::StatusOr<sockaddr_un> name = SocketName(path);
  if (!name.ok()) {
    return name.status();
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return absl::UnavailableError(absl::StrCat("takeover: socket: ", std::strerror(errno)));
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&*name), sizeof(*name)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("--takeover: cannot reach a running sidecar at ", path, ": ",
                     std::strerror(errno)));
  }
  timeval timeout{kAnswerTimeoutSeconds, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  return TakeoverClient(std::move(fd), path);
}

absl::StatusOr<Message> TakeoverClient::Expect(Packet& packet) {
  absl::StatusOr<Message> message = DecodeMessage(packet.data);
  if (!message.ok()) {
    return message.status();
  }
  if (message->verb == "error") {
    return absl::FailedPreconditionError(
        absl::StrCat("--takeover: the sidecar at ", path_, " refused: ", ErrorText(*message)));
  }
  return message;
}

absl::StatusOr<ReceivedHandover> TakeoverClient::Receive() {
  if (absl::Status status = SendPacket(fd_.get(), EncodeMessage(Message{"hello", {}}), {});
      !status.ok()) {
    return status;
  }
  ReceivedHandover handover;
  bool has_state = false;
  while (true) {
    absl::StatusOr<Packet> packet = ReceivePacket(fd_.get());
    if (!packet.ok()) {
      return absl::UnavailableError(absl::StrCat("--takeover: ", path_, ": ",
                                                 packet.status().message()));
    }
    absl::StatusOr<Message> message = Expect(*packet);
    if (!message.ok()) {
      return message.status();
    }
    if (message->verb == "state" && !has_state) {
      absl::StatusOr<HandoverState> state = DecodeState(*message);
      if (!state.ok()) {
        return state.status();
      }
      handover.state = *std::move(state);
      has_state = true;
    } else if (message->verb == "sockets" && has_state) {
      absl::StatusOr<std::vector<SocketLabel>> labels =
          DecodeSockets(*message, packet->fds.size());
      if (!labels.ok()) {
        return labels.status();
      }
      for (size_t i = 0; i < labels->size(); ++i) {
        handover.sockets.push_back({(*labels)[i], std::move(packet->fds[i])});
      }
    } else if (message->verb == "end" && has_state) {
      return handover;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--takeover: unexpected \"", message->verb, "\" from ", path_));
    }
  }
}

absl::Status TakeoverClient::Stop() {
  if (absl::Status status = SendPacket(fd_.get(), EncodeMessage(Message{"stop", {}}), {});
      !status.ok()) {
    return status;
  }
  absl::StatusOr<Packet> packet = ReceivePacket(fd_.get());
  if (!packet.ok()) {
    return packet.status();
  }
  absl::StatusOr<Message> message = Expect(*packet);
  if (!message.ok()) {
    return message.status();
  }
  if (message->verb != "stopped") {
    return absl::InvalidArgumentError(absl::StrCat("unexpected \"", message->verb, "\""));
  }
  return absl::OkStatus();
}

}  // namespace sidecar::proxy
