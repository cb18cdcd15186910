#include "proxy/observe/metrics_endpoint.h"

#include <civetweb.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "proxy/base/concat.h"
#include "proxy/observe/log.h"
#include "proxy/observe/status_page.h"

namespace sidecar::proxy {

namespace {

// civetweb gives each connection a worker thread for as long as it takes to read its
// request, so a connection that sends nothing (or a byte a second) holds one thread until
// kRequestTimeoutMs, which bounds the whole request read, not each read. A readiness probe
// must still get a thread while 64 such connections are held (SPEC §10): so 128 threads
// (civetweb starts them all; each is mostly an idle stack), a 3 s bound that Prometheus and
// kubelet, which send the whole request at once, never come near, and no keep-alive, so a
// thread is held for one request only. The accept queue behind the workers (civetweb's
// connection_queue) and the listen backlog hold the rest of a burst instead of refusing it.
constexpr char kThreads[] = "128";
constexpr char kRequestTimeoutMs[] = "3000";
constexpr char kConnectionQueue[] = "256";
constexpr char kListenBacklog[] = "1024";

// IsExactly is whether the request's path, as the client sent it, is `path` exactly.
// civetweb matches handlers without regard to case, after removing dot segments and
// decoding %XX (so %00 ends the string): "/METRICS", "/ready/../metrics" and
// "/metrics%00.txt" would all reach the /metrics handler. With decode_url off, local_uri
// keeps %XX as sent, and request_uri keeps the dot segments (the query string is cut off
// from both); anything but the exact bytes in both is 404 (SPEC §10).
bool IsExactly(mg_connection* connection, std::string_view path) {
  const mg_request_info* info = mg_get_request_info(connection);
  return info->request_uri != nullptr && std::string_view(info->request_uri) == path &&
         info->local_uri != nullptr && std::string_view(info->local_uri) == path;
}

void NotFound(mg_connection* connection) {
  mg_printf(connection,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
            "Connection: close\r\n\r\nnot found\n");
}

// AllowMethod answers 405 for anything but GET/HEAD; returns whether the request may go on.
bool AllowMethod(mg_connection* connection, bool* head) {
  const mg_request_info* info = mg_get_request_info(connection);
  *head = std::strcmp(info->request_method, "HEAD") == 0;
  if (*head || std::strcmp(info->request_method, "GET") == 0) {
    return true;
  }
  mg_printf(connection,
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n"
            "Content-Length: 19\r\nConnection: close\r\n\r\nmethod not allowed\n");
  return false;
}

void Respond(mg_connection* connection, int status, std::string_view reason,
             std::string_view content_type, std::string_view body, bool head,
             std::string_view extra_headers = "") {
  std::string header = Concat("HTTP/1.1 ", status, " ", reason,
                                    "\r\nContent-Type: ", std::string(content_type),
                                    "\r\nContent-Length: ", body.size(), "\r\n", extra_headers,
                                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n");
  mg_write(connection, header.data(), header.size());
  if (!head) {
    mg_write(connection, body.data(), body.size());
  }
}

// WhyCannotBind binds a throwaway socket to `listen` (as civetweb would, with SO_REUSEADDR)
// and returns why that fails, in words: civetweb itself only says "Failed to setup server
// ports". Empty when the bind works or the address does not parse.
std::string WhyCannotBind(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return "";
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), listen.substr(colon + 1).c_str(), &hints, &found) != 0) {
    return "";
  }
  std::string why;
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
      why = errno == EADDRINUSE ? "address already in use (another process listens on it)"
                                : std::strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(found);
  return why;
}

}  // namespace

bool IsLoopbackListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") {
    return true;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Create(
    const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
    const Readiness* readiness, StatusPageOptions status_page) {
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint(std::move(registry), readiness));
  endpoint->board_ = std::move(status_page.board);
  endpoint->page_allowed_ = status_page.on_any_listener || IsLoopbackListen(listen);
  // No "s" suffix on the port and no ssl_* option: civetweb leaves TLS (and libssl) alone.
  const char* options[] = {"listening_ports",
                           listen.c_str(),
                           "num_threads",
                           kThreads,
                           "request_timeout_ms",
                           kRequestTimeoutMs,
                           "enable_keep_alive",
                           "no",
                           "connection_queue",
                           kConnectionQueue,
                           "listen_backlog",
                           kListenBacklog,
                           "decode_url",
                           "no",
                           nullptr};
  mg_callbacks callbacks{};
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = endpoint.get();
  init.configuration_options = options;
  char error_text[256] = {};
  unsigned error_code = 0;
  mg_error_data error{};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  endpoint->context_ = mg_start2(&init, &error);
  if (endpoint->context_ == nullptr) {
    std::string why = WhyCannotBind(listen);
    if (why.empty()) {
      why = error_text[0] != '\0' ? error_text : "civetweb failed to start";
    }
    return absl::UnavailableError(
        absl::StrCat("metrics.listen: cannot serve on ", listen, ": ", why));
  }
  mg_server_port ports[4] = {};
  int count = mg_get_server_ports(endpoint->context_, 4, ports);
  if (count > 0) {
    endpoint->port_ = ports[0].port;
  }
  mg_set_request_handler(endpoint->context_, "/metrics$", &MetricsEndpoint::OnMetrics,
                         endpoint.get());
  mg_set_request_handler(endpoint->context_, "/ready$", &MetricsEndpoint::OnReady, endpoint.get());
  mg_set_request_handler(endpoint->context_, "/live$", &MetricsEndpoint::OnLive, endpoint.get());
  if (endpoint->board_) {
    mg_set_request_handler(endpoint->context_, "/$", &MetricsEndpoint::OnStatusPage,
                           endpoint.get());
    mg_set_request_handler(endpoint->context_, "/status$", &MetricsEndpoint::OnStatusPage,
                           endpoint.get());
  }
  Log(Severity::kInfo, Component::kMetrics, "serving /metrics and /ready",
      {{"listen", listen},
       {"port", static_cast<int64_t>(endpoint->port_)},
       {"statusPage", endpoint->board_ == nullptr  ? "off"
                      : endpoint->page_allowed_    ? "on"
                                                   : "refused: not a loopback listener and "
                                                     "metrics.statusPage is not set"}});
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (context_ != nullptr) {
    mg_stop(context_);  // joins civetweb's threads: no handler runs after this
  }
}

int MetricsEndpoint::OnMetrics(mg_connection* connection, void* self_ptr) {
  auto* self = static_cast<MetricsEndpoint*>(self_ptr);
  if (!IsExactly(connection, "/metrics")) {
    NotFound(connection);
    return 404;
  }
  bool head = false;
  if (!AllowMethod(connection, &head)) {
    return 405;
  }
  // Collect() snapshots every family under prometheus-cpp's own locks; the data path's
  // atomic increments are never blocked by it.
  std::string body = prometheus::TextSerializer().Serialize(self->registry_->Collect());
  Respond(connection, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head);
  return 200;
}

int MetricsEndpoint::OnReady(mg_connection* connection, void* self_ptr) {
  auto* self = static_cast<MetricsEndpoint*>(self_ptr);
  if (!IsExactly(connection, "/ready")) {
    NotFound(connection);
    return 404;
  }
  bool head = false;
  if (!AllowMethod(connection, &head)) {
    return 405;
  }
  Readiness::State state = self->readiness_->Get();
  if (state.ready) {
    Respond(connection, 200, "OK", "text/plain; charset=utf-8", state.text, head);
    return 200;
  }
  Respond(connection, 503, "Service Unavailable", "text/plain; charset=utf-8", state.text, head);
  return 503;
}

int MetricsEndpoint::OnStatusPage(mg_connection* connection, void* self_ptr) {
  auto* self = static_cast<MetricsEndpoint*>(self_ptr);
  if (!IsExactly(connection, "/") && !IsExactly(connection, "/status")) {
    NotFound(connection);
    return 404;
  }
  bool head = false;
  if (!AllowMethod(connection, &head)) {
    return 405;
  }
  if (!self->page_allowed_) {
    Respond(connection, 403, "Forbidden", "text/plain; charset=utf-8",
            "The status page names clients, so it is served on loopback listeners only; set "
            "metrics.statusPage = true (--metrics-status-page) to serve it on this address.\n",
            head);
    return 403;
  }
  std::string body = RenderStatusPage(self->board_->Latest());
  Respond(connection, 200, "OK", "text/html; charset=utf-8", body, head,
          Concat("Content-Security-Policy: ", kStatusPagePolicy,
                       "\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"));
  return 200;
}

int MetricsEndpoint::OnLive(mg_connection* connection, void* self_ptr) {
  bool head = false;
  if (!AllowMethod(connection, &head)) {
    return 405;
  }
  Respond(connection, 200, "OK", "text/plain; charset=utf-8", "live\n", head);
  return 200;
}

}  // namespace sidecar::proxy
