#include "proxy/upstream/upstream_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protocol/hello_probe.h"
#include "protocol/proxy_header.h"
#include "protocol/wire.h"
#include "proxy/base/host_port.h"
#include "proxy/base/socket_address.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {

namespace {

// A hello reply is a few hundred bytes; a replica set of 50 members a few KiB.
constexpr size_t kMaxReplySize = 1 << 20;
constexpr size_t kReadChunk = 16 * 1024;

bool IsLoopback(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
      return true;
    }
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      return in6->sin6_addr.s6_addr[12] == 127;
    }
  }
  return false;
}

bool IsWildcard(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&address)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (address.ss_family == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr);
  }
  return false;
}

// SameIp compares the IP part only (ports and scope ids aside); a v4-mapped v6 address
// equals its v4 form.
bool SameIp(const sockaddr_storage& a, const sockaddr_storage& b) {
  auto v4 = [](const sockaddr_storage& s, in_addr* out) {
    if (s.ss_family == AF_INET) {
      *out = reinterpret_cast<const sockaddr_in*>(&s)->sin_addr;
      return true;
    }
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
    if (s.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      std::memcpy(&out->s_addr, &in6->sin6_addr.s6_addr[12], 4);
      return true;
    }
    return false;
  };
  in_addr a4{}, b4{};
  bool a_is_v4 = v4(a, &a4);
  bool b_is_v4 = v4(b, &b4);
  if (a_is_v4 || b_is_v4) {
    return a_is_v4 && b_is_v4 && a4.s_addr == b4.s_addr;
  }
  if (a.ss_family != AF_INET6 || b.ss_family != AF_INET6) {
    return false;
  }
  return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr,
                     &reinterpret_cast<const sockaddr_in6*>(&b)->sin6_addr, 16) == 0;
}

bool ContainsIp(const std::vector<sockaddr_storage>& addresses, const sockaddr_storage& a) {
  return std::any_of(addresses.begin(), addresses.end(),
                     [&](const sockaddr_storage& b) { return SameIp(a, b); });
}

// SidecarListensOn: the sidecar accepts on ip:port (its own port, on that address or on a
// wildcard of the address's family).
bool SidecarListensOn(const SidecarAddresses& sidecar, const sockaddr_storage& ip, uint16_t port) {
  if (port != sidecar.port) {
    return false;
  }
  for (const sockaddr_storage& listening : sidecar.listening) {
    if (SameIp(listening, ip)) {
      return true;
    }
    if (IsWildcard(listening) && (listening.ss_family == AF_INET6 || ip.ss_family == AF_INET)) {
      return true;  // "::" also takes IPv4 unless IPV6_V6ONLY; "0.0.0.0" only IPv4
    }
  }
  return false;
}

std::string ListeningText(const SidecarAddresses& sidecar) {
  std::vector<std::string> names;
  for (const sockaddr_storage& address : sidecar.listening) {
    names.push_back(FormatAddress(address));
  }
  return absl::StrJoin(names, ", ");
}

// ConnectsWithin: a TCP connect to `address` completes within `timeout_ms`.
bool ConnectsWithin(const sockaddr_storage& address, int timeout_ms) {
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  socklen_t length = address.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  bool connected = false;
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&address), length);
  if (rc == 0) {
    connected = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, timeout_ms) == 1) {
      int error = 0;
      socklen_t error_length = sizeof(error);
      connected = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length) == 0 && error == 0;
    }
  }
  close(fd);
  return connected;
}

}  // namespace

std::vector<sockaddr_storage> SystemResolver(const std::string& host) {
  std::vector<sockaddr_storage> result;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &list) != 0) {
    return result;
  }
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage address{};
    std::memcpy(&address, ai->ai_addr, std::min<size_t>(ai->ai_addrlen, sizeof(address)));
    result.push_back(address);
  }
  freeaddrinfo(list);
  return result;
}

std::vector<sockaddr_storage> LocalInterfaceAddresses() {
  std::vector<sockaddr_storage> result;
  uv_interface_address_t* interfaces = nullptr;
  int count = 0;
  if (uv_interface_addresses(&interfaces, &count) != 0) {
    return result;
  }
  for (int i = 0; i < count; ++i) {
    sockaddr_storage address{};
    if (interfaces[i].address.address4.sin_family == AF_INET) {
      std::memcpy(&address, &interfaces[i].address.address4, sizeof(sockaddr_in));
    } else {
      std::memcpy(&address, &interfaces[i].address.address6, sizeof(sockaddr_in6));
    }
    result.push_back(address);
  }
  uv_free_interface_addresses(interfaces, count);
  return result;
}

std::vector<std::string> AdvertisedHostWarnings(const HelloSummary& hello,
                                                const SidecarAddresses& sidecar,
                                                const Resolver& resolve) {
  std::vector<std::string> warnings;
  if (hello.hosts.empty()) {
    return warnings;  // a standalone advertises nothing: drivers use the address they have
  }
  bool some_host_is_sidecar = false;
  std::vector<std::string> resolved_hosts;
  for (const std::string& advertised : hello.hosts) {
    // "host" alone is port 27017, as drivers read it.
    absl::StatusOr<HostPort> split =
        ParseHostPortBare(advertised, HostPortRules{.default_port = 27017});
    if (!split.ok()) {
      continue;
    }
    uint16_t port = split->port;
    std::vector<sockaddr_storage> addresses = resolve(split->host);
    if (addresses.empty()) {
      continue;
    }
    resolved_hosts.push_back(advertised);
    bool on_this_host = false;
    bool is_sidecar = false;
    for (const sockaddr_storage& address : addresses) {
      if (IsLoopback(address) || ContainsIp(sidecar.local, address)) {
        on_this_host = true;
        if (SidecarListensOn(sidecar, address, port)) {
          is_sidecar = true;
        }
      }
    }
    some_host_is_sidecar = some_host_is_sidecar || is_sidecar;
    if (on_this_host && !is_sidecar) {
      warnings.push_back(absl::StrCat(
          "the replica set advertises ", advertised,
          ", which is this host but not the sidecar (listening on ", ListeningText(sidecar),
          "): drivers that discover it connect around the sidecar; advertise the sidecar's "
          "address in the replica set configuration"));
    }
  }
  if (!some_host_is_sidecar && warnings.empty() && !resolved_hosts.empty()) {
    warnings.push_back(absl::StrCat(
        "none of the hosts the replica set advertises (", absl::StrJoin(hello.hosts, ", "),
        ") is this sidecar (listening on ", ListeningText(sidecar),
        "): drivers connect to the advertised hosts and would not come through it"));
  }
  return warnings;
}

std::vector<std::string> ExposedUpstreamWarnings(const SidecarAddresses& sidecar, int timeout_ms) {
  std::vector<std::string> warnings;
  uint16_t upstream_port = AddressPort(sidecar.upstream);
  if (!IsLoopback(sidecar.upstream)) {
    warnings.push_back(absl::StrCat(
        "mongod is reached on a non-loopback address (net.upstream ",
        FormatAddress(sidecar.upstream),
        "): clients can connect to it directly, without TLS; bind mongod to 127.0.0.1"));
    return warnings;
  }
  std::vector<std::string> exposed;
  for (sockaddr_storage address : sidecar.local) {
    if (IsLoopback(address) || IsWildcard(address)) {
      continue;
    }
    if (address.ss_family == AF_INET6 &&
        IN6_IS_ADDR_LINKLOCAL(&reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr)) {
      continue;  // needs a scope id to dial; mongod bound to all addresses shows elsewhere
    }
    if (SidecarListensOn(sidecar, address, upstream_port)) {
      continue;  // that would be the sidecar answering, not mongod
    }
    SetAddressPort(address, upstream_port);
    if (ConnectsWithin(address, timeout_ms)) {
      exposed.push_back(FormatAddress(address));
    }
  }
  if (!exposed.empty()) {
    warnings.push_back(absl::StrCat(
        "mongod (upstream port ", upstream_port, ") is reachable on non-loopback address",
        exposed.size() > 1 ? "es " : " ", absl::StrJoin(exposed, ", "),
        ": clients can connect to it directly, without TLS; bind mongod to 127.0.0.1"));
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------
// The probe

// Attempt is one connection to mongod. It is freed by its socket's close callback, so an
// abandoned attempt (owner_ cleared) never touches the probe again.
struct UpstreamProbe::Attempt {
  UpstreamProbe* owner = nullptr;
  UvHandle<uv_tcp_t> socket;
  uv_connect_t connect_req{};
  uv_write_t write_req{};
  std::vector<uint8_t> request;
  std::vector<uint8_t> reply;
  std::vector<char> read_buffer = std::vector<char>(kReadChunk);

  static void Free(void* self) { delete static_cast<Attempt*>(self); }
  void Abandon() {
    owner = nullptr;
    socket.Close(&Attempt::Free, this);
  }
};

// CheckJob runs the host and exposure checks on libuv's thread pool and logs what it
// finds; it owns copies of its inputs and frees itself in the after-work callback.
struct UpstreamProbe::CheckJob {
  uv_work_t work{};
  HelloSummary hello;
  SidecarAddresses sidecar;
  bool check_exposure = false;
  std::function<void(std::vector<std::string>, std::optional<std::vector<std::string>>)>
      on_findings;

  static void Run(uv_work_t* work) {
    auto* job = static_cast<CheckJob*>(work->data);
    // Each finding is logged as soon as it is known: the exposure check dials every
    // interface address and may take a while.
    std::vector<std::string> advertised =
        AdvertisedHostWarnings(job->hello, job->sidecar, &SystemResolver);
    for (const std::string& warning : advertised) {
      Log(Severity::kWarning, Component::kNetwork, "upstream check", {{"warning", warning}});
    }
    std::optional<std::vector<std::string>> exposed;
    if (job->check_exposure) {
      exposed = ExposedUpstreamWarnings(job->sidecar, 500);
      for (const std::string& warning : *exposed) {
        Log(Severity::kWarning, Component::kNetwork, "upstream check", {{"warning", warning}});
      }
    }
    if (job->on_findings) {
      job->on_findings(std::move(advertised), std::move(exposed));
    }
  }
  static void Done(uv_work_t* work, int status) { delete static_cast<CheckJob*>(work->data); }
};

absl::StatusOr<std::unique_ptr<UpstreamProbe>> UpstreamProbe::Create(uv_loop_t* loop,
                                                                     Options options,
                                                                     OnResult on_result) {
  std::unique_ptr<UpstreamProbe> probe(
      new UpstreamProbe(loop, std::move(options), std::move(on_result)));
  auto timer = UvHandle<uv_timer_t>::Create("uv_timer_init",
                                            [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  probe->timer_ = *std::move(timer);
  probe->timer_.get()->data = probe.get();
  return probe;
}

UpstreamProbe::UpstreamProbe(uv_loop_t* loop, Options options, OnResult on_result)
    : loop_(loop),
      options_(std::move(options)),
      on_result_(std::move(on_result)),
      next_retry_ms_(options_.first_retry_ms) {}

UpstreamProbe::~UpstreamProbe() {
  if (attempt_ != nullptr) {
    attempt_->Abandon();
    attempt_ = nullptr;
  }
  timer_.Close();
}

void UpstreamProbe::Start() { StartAttempt(); }

void UpstreamProbe::StartAttempt() {
  auto* attempt = new Attempt();
  attempt->owner = this;
  auto socket =
      UvHandle<uv_tcp_t>::Create("uv_tcp_init", [&](uv_tcp_t* t) { return uv_tcp_init(loop_, t); });
  if (!socket.ok()) {
    delete attempt;
    FailSoon(socket.status());
    return;
  }
  attempt->socket = *std::move(socket);
  attempt->socket.get()->data = attempt;
  attempt->connect_req.data = attempt;
  attempt_ = attempt;
  uv_timer_start(timer_.get(), &UpstreamProbe::OnTimer, options_.attempt_timeout_ms, 0);
  if (int rc = uv_tcp_connect(&attempt->connect_req, attempt->socket.get(),
                              reinterpret_cast<const sockaddr*>(&options_.upstream),
                              &UpstreamProbe::OnConnected);
      rc != 0) {
    FailSoon(UvError("connect", rc));
  }
}

void UpstreamProbe::FailSoon(absl::Status status) {
  // Reported from the loop, never from inside Start().
  pending_error_ = std::move(status);
  uv_timer_start(timer_.get(), &UpstreamProbe::OnTimer, 0, 0);
}

void UpstreamProbe::OnTimer(uv_timer_t* timer) {
  auto* self = static_cast<UpstreamProbe*>(timer->data);
  if (!self->pending_error_.ok()) {
    self->Finish(std::exchange(self->pending_error_, absl::OkStatus()));
    return;
  }
  if (self->attempt_ != nullptr) {
    self->Finish(absl::DeadlineExceededError(
        absl::StrCat("no answer to hello within ", self->options_.attempt_timeout_ms, " ms")));
    return;
  }
  self->StartAttempt();
}

void UpstreamProbe::OnConnected(uv_connect_t* req, int status) {
  auto* attempt = static_cast<Attempt*>(req->data);
  UpstreamProbe* self = attempt->owner;
  if (self == nullptr || status == UV_ECANCELED) {
    return;
  }
  if (status != 0) {
    self->Finish(absl::UnavailableError(uv_strerror(status)));
    return;
  }
  attempt->request.clear();
  if (self->options_.proxy_protocol != 0) {
    // mongod's proxyPort takes only connections that start with a PROXY header; ours names
    // this probe's own socket as the client.
    protocol::ProxyHeaderInfo info;
    info.source = ToIpEndpoint(LocalSockaddr(attempt->socket.get()));
    info.destination = ToIpEndpoint(PeerSockaddr(attempt->socket.get()));
    attempt->request = protocol::BuildProxyHeader(self->options_.proxy_protocol, info);
  }
  std::vector<uint8_t> hello = protocol::BuildHelloProbe(self->next_request_id_++);
  attempt->request.insert(attempt->request.end(), hello.begin(), hello.end());
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(attempt->request.data()),
                             static_cast<unsigned>(attempt->request.size()));
  attempt->write_req.data = attempt;
  if (int rc = uv_write(&attempt->write_req, attempt->socket.stream(), &buf, 1,
                        &UpstreamProbe::OnWritten);
      rc != 0) {
    self->Finish(UvError("write", rc));
    return;
  }
  if (int rc =
          uv_read_start(attempt->socket.stream(), &UpstreamProbe::OnAlloc, &UpstreamProbe::OnRead);
      rc != 0) {
    self->Finish(UvError("read", rc));
  }
}

void UpstreamProbe::OnWritten(uv_write_t* req, int status) {
  auto* attempt = static_cast<Attempt*>(req->data);
  UpstreamProbe* self = attempt->owner;
  if (self == nullptr || status == 0 || status == UV_ECANCELED) {
    return;
  }
  self->Finish(UvError("write", status));
}

void UpstreamProbe::OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  auto* attempt = static_cast<Attempt*>(handle->data);
  *buf =
      uv_buf_init(attempt->read_buffer.data(), static_cast<unsigned>(attempt->read_buffer.size()));
}

void UpstreamProbe::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* attempt = static_cast<Attempt*>(stream->data);
  UpstreamProbe* self = attempt->owner;
  if (self == nullptr) {
    return;
  }
  if (nread < 0) {
    self->Finish(absl::UnavailableError(
        nread == UV_EOF ? "closed the connection before answering hello" : uv_strerror(nread)));
    return;
  }
  attempt->reply.insert(attempt->reply.end(), buf->base, buf->base + nread);
  protocol::Frame frame = protocol::FrameMessage(attempt->reply);
  if (frame.status == protocol::ParseStatus::kNeedMore) {
    if (attempt->reply.size() > kMaxReplySize) {
      self->Finish(absl::InvalidArgumentError("hello reply too large"));
    }
    return;
  }
  if (frame.status == protocol::ParseStatus::kError) {
    self->Finish(absl::InvalidArgumentError(absl::StrCat(
        "answered hello with bytes that are not MongoDB: ", std::string(frame.error))));
    return;
  }
  self->Finish(protocol::ParseHelloReply(absl::MakeConstSpan(attempt->reply.data(), frame.size)));
}

void UpstreamProbe::Finish(absl::StatusOr<HelloSummary> result) {
  uv_timer_stop(timer_.get());
  if (attempt_ != nullptr) {
    attempt_->Abandon();
    attempt_ = nullptr;
  }
  absl::Status status = result.status();
  if (!status.ok()) {
    status =
        absl::Status(status.code(), absl::StrCat(options_.upstream_name, ": ", status.message()));
  }
  bool changed = !reported_ || status.ok() != was_ok_;
  if (status.ok()) {
    if (changed) {
      Log(Severity::kInfo, Component::kNetwork, "upstream mongod answered hello",
          {{"upstream", options_.upstream_name},
           {"setName", result->set_name},
           {"hosts", absl::StrJoin(result->hosts, ",")},
           {"maxWireVersion", static_cast<int64_t>(result->max_wire_version)}});
    }
    MaybeRunChecks(*result);
    next_retry_ms_ = options_.first_retry_ms;
    ScheduleNext(options_.recheck_ms);
  } else {
    if (changed) {
      Log(Severity::kWarning, Component::kNetwork,
          "upstream mongod does not answer hello; not ready, retrying",
          {{"upstream", options_.upstream_name}, {"error", std::string(status.message())}});
    }
    ScheduleNext(next_retry_ms_);
    next_retry_ms_ = std::min(next_retry_ms_ * 2, options_.max_retry_ms);
  }
  was_ok_ = status.ok();
  reported_ = true;
  if (on_result_) {
    on_result_(status);
  }
}

void UpstreamProbe::ScheduleNext(uint64_t delay_ms) {
  uv_timer_start(timer_.get(), &UpstreamProbe::OnTimer, delay_ms, 0);
}

void UpstreamProbe::MaybeRunChecks(const HelloSummary& hello) {
  if (!options_.check_addresses.has_value()) {
    return;
  }
  if (checks_ran_ && hello.hosts == checked_hosts_) {
    return;
  }
  auto* job = new CheckJob();
  job->work.data = job;
  job->hello = hello;
  job->sidecar = *options_.check_addresses;
  job->check_exposure = !checks_ran_;  // mongod's bind addresses do not change while it runs
  job->on_findings = options_.on_findings;
  if (uv_queue_work(loop_, &job->work, &CheckJob::Run, &CheckJob::Done) != 0) {
    delete job;
    return;
  }
  checks_ran_ = true;
  checked_hosts_ = hello.hosts;
}

}  // namespace sidecar::proxy
