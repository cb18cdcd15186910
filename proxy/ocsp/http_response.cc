#include "proxy/ocsp/http_response.h"

#include <charconv>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {
namespace {

absl::Status Bad(std::string_view what) {
  return absl::UnavailableError(absl::StrCat("OCSP responder: ", std::string(what)));
}

bool ParseNumber(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 9) {
    return false;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr char kScheme[] = "http://";
  constexpr size_t kSchemeSize = sizeof(kScheme) - 1;
  if (url.size() < kSchemeSize ||
      !absl::EqualsIgnoreCase(std::string(url.substr(0, kSchemeSize)), kScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an http:// URL: ", std::string(url)));
  }
  std::string_view rest = url.substr(kSchemeSize);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl parsed;
  if (slash != std::string_view::npos) {
    parsed.path = std::string(rest.substr(slash));
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad IPv6 host in ", std::string(url)));
    }
    parsed.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return absl::InvalidArgumentError(absl::StrCat("bad host in ", std::string(url)));
      }
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
    }
  }
  if (parsed.host.empty() || parsed.host.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("no host in ", std::string(url)));
  }
  if (!port.empty()) {
    uint64_t number = 0;
    if (!ParseNumber(port, &number) || number == 0 || number > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("bad port in ", std::string(url)));
    }
    parsed.port = static_cast<uint16_t>(number);
  }
  for (char c : parsed.path) {
    if (c <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat("bad path in ", std::string(url)));
    }
  }
  return parsed;
}

std::string BuildOcspPost(const HttpUrl& url, std::string_view body) {
  std::string host = url.host.find(':') != std::string::npos ? absl::StrCat("[", url.host, "]")
                                                             : url.host;
  if (url.port != 80) {
    absl::StrAppend(&host, ":", url.port);
  }
  return absl::StrCat("POST ", url.path, " HTTP/1.0\r\nHost: ", host,
                      "\r\nContent-Type: application/ocsp-request\r\nContent-Length: ",
                      body.size(), "\r\nAccept: application/ocsp-response\r\n\r\n",
                      std::string(body));
}

absl::StatusOr<HttpParse> ParseHttpResponse(std::string_view received, bool eof,
                                            std::string* body) {
  if (received.size() > kMaxHttpResponse) {
    return Bad(absl::StrCat("response larger than ", kMaxHttpResponse, " bytes"));
  }
  size_t head_end = received.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (eof) {
      return Bad(received.empty() ? "closed without answering" : "truncated HTTP header");
    }
    return HttpParse::kNeedMore;
  }
  std::string_view head = received.substr(0, head_end);
  std::string_view rest = received.substr(head_end + 4);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.x 200 OK": version, one space, three digits, then a reason or nothing.
  if (status_line.size() < 12 || !absl::StartsWith(std::string(status_line), "HTTP/1.") ||
      status_line[8] != ' ' || (status_line.size() > 12 && status_line[12] != ' ')) {
    return Bad("not an HTTP/1 response");
  }
  std::string_view code = status_line.substr(9, 3);
  if (code != "200") {
    return Bad(absl::StrCat("HTTP status ", std::string(Trim(status_line.substr(9)))));
  }
  std::optional<uint64_t> length;
  std::string_view headers =
      line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
  while (!headers.empty()) {
    size_t end = headers.find("\r\n");
    std::string_view line = headers.substr(0, end);
    headers = end == std::string_view::npos ? std::string_view() : headers.substr(end + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return Bad("malformed HTTP header line");
    }
    std::string name = absl::AsciiStrToLower(std::string(line.substr(0, colon)));
    std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-length") {
      uint64_t n = 0;
      if (!ParseNumber(value, &n) || (length.has_value() && *length != n)) {
        return Bad("bad Content-Length");
      }
      length = n;
    } else if (name == "transfer-encoding") {
      // We speak HTTP/1.0, so a responder must not chunk; refuse rather than misread.
      return Bad("chunked transfer encoding to an HTTP/1.0 request");
    }
  }
  if (length.has_value()) {
    if (*length > kMaxHttpResponse) {
      return Bad("Content-Length too large");
    }
    if (rest.size() > *length) {
      return Bad("more body than Content-Length");
    }
    if (rest.size() < *length) {
      if (eof) {
        return Bad("closed before the end of the body");
      }
      return HttpParse::kNeedMore;
    }
  } else if (!eof) {
    return HttpParse::kNeedMore;  // without a length the body ends when the responder closes
  }
  *body = std::string(rest);
  return HttpParse::kDone;
}

}  // namespace sidecar::proxy
