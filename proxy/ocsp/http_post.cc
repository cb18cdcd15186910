#include "proxy/ocsp/http_post.h"

#include <cstring>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proxy/base/uv_handle.h"
#include "proxy/ocsp/http_response.h"

namespace sidecar::proxy {

class OcspPostAccess {
 public:
  static void Set(OcspPostToken& token, void* post) { token.post_ = post; }
  static void* Get(const OcspPostToken& token) { return token.post_; }
};

namespace {

class Post {
 public:
  Post(uv_loop_t* loop, absl::AnyInvocable<void(absl::StatusOr<std::string>)> done)
      : loop_(loop), done_(std::move(done)), token_(std::make_shared<OcspPostToken>()) {
    OcspPostAccess::Set(*token_, this);
  }

  std::shared_ptr<OcspPostToken> token() const { return token_; }

  void Cancel() {
    Fail(absl::CancelledError("OCSP request cancelled"));
    Finish();
  }

  void Start(const std::string& url, std::string request, absl::Duration timeout) {
    auto timer = UvHandle<uv_timer_t>::Create(
        "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(loop_, t); });
    if (!timer.ok()) {
      // Without a timer there is no later turn to answer from; answer now (never happens
      // short of running out of memory).
      Fail(timer.status());
      Finish();
      return;
    }
    timer_ = *std::move(timer);
    timer_.get()->data = this;
    auto parsed = ParseHttpUrl(url);
    if (!parsed.ok()) {
      Fail(parsed.status());
      uv_timer_start(timer_.get(), &OnTimeout, 0, 0);  // answers on the next loop turn
      return;
    }
    url_ = *std::move(parsed);
    request_ = BuildOcspPost(url_, request);
    uv_timer_start(timer_.get(), &OnTimeout,
                   static_cast<uint64_t>(absl::ToInt64Milliseconds(timeout)), 0);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    resolve_.data = this;
    std::string port = absl::StrCat(url_.port);
    if (int rc = uv_getaddrinfo(loop_, &resolve_, &OnResolved, url_.host.c_str(), port.c_str(),
                                &hints);
        rc != 0) {
      Fail(UvError(absl::StrCat("resolve ", url_.host), rc));
      uv_timer_start(timer_.get(), &OnTimeout, 0, 0);
      return;
    }
    resolving_ = true;
  }

 private:
  static void OnTimeout(uv_timer_t* timer) {
    auto* self = static_cast<Post*>(timer->data);
    self->Fail(absl::DeadlineExceededError(
        absl::StrCat("no answer from the OCSP responder ", self->url_.host, " in time")));
    self->Finish();
  }

  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
    auto* self = static_cast<Post*>(req->data);
    self->resolving_ = false;
    if (self->finished_) {
      uv_freeaddrinfo(result);
      self->MaybeDelete();
      return;
    }
    if (status != 0) {
      uv_freeaddrinfo(result);
      self->Fail(UvError(absl::StrCat("resolve ", self->url_.host), status));
      self->Finish();
      return;
    }
    self->Connect(result);
    uv_freeaddrinfo(result);
  }

  void Connect(const addrinfo* address) {
    auto tcp = UvHandle<uv_tcp_t>::Create("uv_tcp_init",
                                          [&](uv_tcp_t* t) { return uv_tcp_init(loop_, t); });
    if (!tcp.ok()) {
      Fail(tcp.status());
      Finish();
      return;
    }
    tcp_ = *std::move(tcp);
    tcp_.get()->data = this;
    connect_.data = this;
    if (int rc = uv_tcp_connect(&connect_, tcp_.get(), address->ai_addr, &OnConnected);
        rc != 0) {
      Fail(UvError(absl::StrCat("connect to ", url_.host), rc));
      Finish();
    }
  }

  static void OnConnected(uv_connect_t* req, int status) {
    auto* self = static_cast<Post*>(req->data);
    if (self->finished_) {
      return;  // UV_ECANCELED while closing
    }
    if (status != 0) {
      self->Fail(UvError(absl::StrCat("connect to OCSP responder ", self->url_.host,
                                      ":", self->url_.port), status));
      self->Finish();
      return;
    }
    uv_buf_t buf = uv_buf_init(self->request_.data(),
                               static_cast<unsigned>(self->request_.size()));
    self->write_.data = self;
    if (int rc = uv_write(&self->write_, self->tcp_.stream(), &buf, 1, &OnWritten); rc != 0 ||
        (rc = uv_read_start(self->tcp_.stream(), &OnAlloc, &OnRead)) != 0) {
      self->Fail(UvError("send the OCSP request", rc));
      self->Finish();
    }
  }

  static void OnWritten(uv_write_t* req, int status) {
    auto* self = static_cast<Post*>(req->data);
    if (!self->finished_ && status != 0) {
      self->Fail(UvError("send the OCSP request", status));
      self->Finish();
    }
  }

  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
    auto* self = static_cast<Post*>(handle->data);
    *buf = uv_buf_init(self->read_buffer_, sizeof(self->read_buffer_));
  }

  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* self = static_cast<Post*>(stream->data);
    if (self->finished_ || nread == 0) {
      return;
    }
    bool eof = nread == UV_EOF;
    if (nread < 0 && !eof) {
      self->Fail(UvError("read the OCSP response", static_cast<int>(nread)));
      self->Finish();
      return;
    }
    if (nread > 0) {
      self->received_.append(buf->base, static_cast<size_t>(nread));
    }
    std::string body;
    auto parse = ParseHttpResponse(self->received_, eof, &body);
    if (!parse.ok()) {
      self->Fail(parse.status());
      self->Finish();
    } else if (*parse == HttpParse::kDone) {
      self->result_ = std::move(body);
      self->Finish();
    }
  }

  void Fail(absl::Status status) {
    if (!result_.has_value()) {
      result_ = std::move(status);
    }
  }

  // Finish answers once, then closes everything; the object goes when the last handle has
  // closed and no resolution is pending.
  void Finish() {
    if (finished_) {
      return;
    }
    finished_ = true;
    OcspPostAccess::Set(*token_, nullptr);
    auto done = std::move(done_);
    auto result = std::move(*result_);
    if (resolving_) {
      uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_));  // OnResolved still runs
    }
    open_handles_ = (timer_ ? 1 : 0) + (tcp_ ? 1 : 0);
    timer_.Close(&OnClosed, this);
    tcp_.Close(&OnClosed, this);
    done(std::move(result));
  }

  static void OnClosed(void* context) {
    auto* self = static_cast<Post*>(context);
    --self->open_handles_;
    self->MaybeDelete();
  }

  void MaybeDelete() {
    if (finished_ && open_handles_ == 0 && !resolving_) {
      delete this;
    }
  }

  uv_loop_t* loop_;
  absl::AnyInvocable<void(absl::StatusOr<std::string>)> done_;
  std::shared_ptr<OcspPostToken> token_;
  HttpUrl url_;
  std::string request_;
  std::string received_;
  std::optional<absl::StatusOr<std::string>> result_;
  UvHandle<uv_timer_t> timer_;
  UvHandle<uv_tcp_t> tcp_;
  uv_getaddrinfo_t resolve_{};
  uv_connect_t connect_{};
  uv_write_t write_{};
  char read_buffer_[16 * 1024];
  bool resolving_ = false;
  bool finished_ = false;
  int open_handles_ = 0;
};

}  // namespace

void OcspPostToken::Cancel() {
  if (post_ != nullptr) {
    static_cast<Post*>(post_)->Cancel();
  }
}

std::shared_ptr<OcspPostToken> StartOcspPost(
    uv_loop_t* loop, const std::string& url, std::string request, absl::Duration timeout,
    absl::AnyInvocable<void(absl::StatusOr<std::string>)> done) {
  auto* post = new Post(loop, std::move(done));
  std::shared_ptr<OcspPostToken> token = post->token();
  post->Start(url, std::move(request), timeout);
  return token;
}

}  // namespace sidecar::proxy
