#include "proxy/upstream/upstream_probe.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protocol/hello_probe.h"
#include "protocol/proxy_header.h"
#include "protocol/wire.h"
#include "proxy/base/socket_address.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {
namespace {

// A hello reply is a few hundred bytes; a replica set of 50 members a few KiB.
constexpr size_t kMaxReplySize = 1 << 20;
constexpr size_t kReadChunk = 16 * 1024;

}  // namespace

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
