// The OCSP HTTP client: URL and response parsing (every split point, oversized, garbage)
// and the libuv POST against a real socket on 127.0.0.1, including a silent responder
// (deadline), a refused connection and cancellation; the loop must close cleanly after each.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <optional>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/ocsp/http_post.h"
#include "proxy/ocsp/http_response.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

TEST(OcspHttpUrlTest, SplitsHostPortAndPath) {
  auto url = ParseHttpUrl("http://ocsp.example.net:8080/a/b");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "ocsp.example.net");
  EXPECT_EQ(url->port, 8080);
  EXPECT_EQ(url->path, "/a/b");
  auto plain = ParseHttpUrl("HTTP://127.0.0.1");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->port, 80);
  EXPECT_EQ(plain->path, "/");
  auto v6 = ParseHttpUrl("http://[::1]:9/");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9);
}

TEST(OcspHttpUrlTest, RefusesWhatIsNotPlainHttp) {
  for (const char* bad : {"https://ocsp.example.net/", "ldap://x/", "http://", "http://:80/",
                          "http://host:0/", "http://host:65536/", "http://host:x/",
                          "http://user@host/", "http://[::1/", "http://host/a b"}) {
    EXPECT_FALSE(ParseHttpUrl(bad).ok()) << bad;
  }
}

TEST(OcspHttpRequestTest, IsAnHttp10PostWithTheDerBody) {
  HttpUrl url{"ocsp.example.net", 8080, "/x"};
  std::string post = BuildOcspPost(url, std::string("\x30\x00", 2));
  EXPECT_THAT(post, HasSubstr("POST /x HTTP/1.0\r\n"));
  EXPECT_THAT(post, HasSubstr("Host: ocsp.example.net:8080\r\n"));
  EXPECT_THAT(post, HasSubstr("Content-Type: application/ocsp-request\r\n"));
  EXPECT_THAT(post, HasSubstr("Content-Length: 2\r\n"));
  EXPECT_THAT(post, HasSubstr("Accept: application/ocsp-response\r\n\r\n"));
  EXPECT_EQ(post.substr(post.size() - 2), std::string("\x30\x00", 2));
}

constexpr char kResponse[] =
    "HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: 5\r\n\r\n"
    "\x30\x03\x0a\x01\x03";

TEST(OcspHttpResponseTest, CompleteAtEveryLaterSplitAndNeedsMoreBefore) {
  std::string whole(kResponse, sizeof(kResponse) - 1);
  for (size_t n = 0; n <= whole.size(); ++n) {
    std::string body;
    auto parsed = ParseHttpResponse(whole.substr(0, n), false, &body);
    ASSERT_TRUE(parsed.ok()) << n << ": " << parsed.status();
    if (n < whole.size()) {
      EXPECT_EQ(*parsed, HttpParse::kNeedMore) << n;
      EXPECT_FALSE(ParseHttpResponse(whole.substr(0, n), true, &body).ok()) << n;
    } else {
      EXPECT_EQ(*parsed, HttpParse::kDone);
      EXPECT_EQ(body, std::string("\x30\x03\x0a\x01\x03", 5));
    }
  }
}

TEST(OcspHttpResponseTest, WithoutLengthTheBodyEndsAtEof) {
  std::string body;
  std::string text = "HTTP/1.1 200 OK\r\n\r\nabc";
  EXPECT_EQ(*ParseHttpResponse(text, false, &body), HttpParse::kNeedMore);
  EXPECT_EQ(*ParseHttpResponse(text, true, &body), HttpParse::kDone);
  EXPECT_EQ(body, "abc");
}

TEST(OcspHttpResponseTest, RefusesErrorsChunkingExcessAndGarbage) {
  std::string body;
  auto not_found = ParseHttpResponse("HTTP/1.1 404 Not Found\r\n\r\n", true, &body);
  ASSERT_FALSE(not_found.ok());
  EXPECT_THAT(not_found.status().message(), HasSubstr("404"));
  EXPECT_FALSE(ParseHttpResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                 false, &body).ok());
  EXPECT_FALSE(
      ParseHttpResponse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nab", false, &body).ok());
  EXPECT_FALSE(ParseHttpResponse("HTTP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n", false,
                                 &body).ok());
  EXPECT_FALSE(ParseHttpResponse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nContent-Length: 2"
                                 "\r\n\r\n", false, &body).ok());
  EXPECT_FALSE(ParseHttpResponse("SSH-2.0-OpenSSH\r\n\r\n", false, &body).ok());
  EXPECT_FALSE(ParseHttpResponse("HTTP/1.0 200 OK\r\nno colon\r\n\r\n", false, &body).ok());
  EXPECT_FALSE(ParseHttpResponse(std::string(kMaxHttpResponse + 1, 'x'), false, &body).ok());
  EXPECT_FALSE(ParseHttpResponse("", true, &body).ok());
}

// A one-shot responder on 127.0.0.1 in a thread: reads the request head and body, then
// answers `reply` (nullopt: never answers, holds the connection until the client closes).
class OneShotResponder {
 public:
  explicit OneShotResponder(std::optional<std::string> reply) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(listener_, 1), 0);
    socklen_t size = sizeof(address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this, reply] {
      int client = accept(listener_, nullptr, nullptr);
      if (client < 0) {
        return;
      }
      char buffer[4096];
      while (request_.find("\r\n\r\n") == std::string::npos ||
             request_.size() < request_.find("\r\n\r\n") + 4 + 2) {
        ssize_t n = read(client, buffer, sizeof(buffer));
        if (n <= 0) {
          break;
        }
        request_.append(buffer, static_cast<size_t>(n));
      }
      if (reply.has_value()) {
        (void)!write(client, reply->data(), reply->size());
      } else {
        while (read(client, buffer, sizeof(buffer)) > 0) {
        }
      }
      close(client);
    });
  }
  ~OneShotResponder() {
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/ocsp"; }
  const std::string& request() const { return request_; }  // after the loop has run

 private:
  int listener_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
};

// Post runs one StartOcspPost on a fresh loop to completion; the loop must close cleanly.
absl::StatusOr<std::string> Post(const std::string& url, absl::Duration timeout,
                                 bool cancel = false) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::optional<absl::StatusOr<std::string>> result;
  bool called_inside = true;
  auto token = StartOcspPost(&loop, url, std::string("\x30\x00", 2), timeout,
                             [&](absl::StatusOr<std::string> r) { result = std::move(r); });
  called_inside = result.has_value();
  if (cancel) {
    token->Cancel();
    token->Cancel();  // a second cancel does nothing
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0) << "a handle was left open";
  EXPECT_FALSE(called_inside) << "done ran inside StartOcspPost";
  EXPECT_TRUE(result.has_value());
  return result.value_or(absl::InternalError("never answered"));
}

TEST(OcspHttpPostTest, PostsAndReturnsTheBody) {
  OneShotResponder responder(std::string(kResponse, sizeof(kResponse) - 1));
  auto body = Post(responder.url(), absl::Seconds(30));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body, std::string("\x30\x03\x0a\x01\x03", 5));
  EXPECT_THAT(responder.request(), HasSubstr("POST /ocsp HTTP/1.0\r\n"));
}

TEST(OcspHttpPostTest, SilentResponderMeetsTheDeadline) {
  OneShotResponder responder(std::nullopt);
  auto body = Post(responder.url(), absl::Milliseconds(200));
  ASSERT_FALSE(body.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(body.status())) << body.status();
}

TEST(OcspHttpPostTest, RefusedConnectionIsUnavailable) {
  // A port nobody listens on: bound, never listening, closed again.
  int probe = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t size = sizeof(address);
  getsockname(probe, reinterpret_cast<sockaddr*>(&address), &size);
  close(probe);
  auto body = Post("http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/",
                   absl::Seconds(30));
  ASSERT_FALSE(body.ok());
  EXPECT_TRUE(absl::IsUnavailable(body.status())) << body.status();
}

TEST(OcspHttpPostTest, HttpErrorAndBadUrlAreErrors) {
  OneShotResponder responder(std::string("HTTP/1.0 500 Internal Server Error\r\n\r\n"));
  auto body = Post(responder.url(), absl::Seconds(30));
  ASSERT_FALSE(body.ok());
  EXPECT_THAT(body.status().message(), HasSubstr("500"));
  EXPECT_FALSE(Post("https://127.0.0.1/", absl::Seconds(30)).ok());
}

TEST(OcspHttpPostTest, CancelAnswersAtOnceAndClosesEverything) {
  OneShotResponder responder(std::nullopt);
  auto body = Post(responder.url(), absl::Seconds(30), /*cancel=*/true);
  ASSERT_FALSE(body.ok());
  EXPECT_TRUE(absl::IsCancelled(body.status())) << body.status();
}

}  // namespace
}  // namespace sidecar::proxy
