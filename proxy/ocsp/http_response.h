// OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5): the bytes of a POST request and the
// parsing of the HTTP/1.0 or 1.1 response a responder sends back. Pure functions, no I/O,
// so the parser is fuzzed (http_response_fuzzer.cc) and tested by splitting.
#ifndef SIDECAR_PROXY_OCSP_HTTP_RESPONSE_H_
#define SIDECAR_PROXY_OCSP_HTTP_RESPONSE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sidecar::proxy {

// HttpUrl is a plain-HTTP URL split for a request: http://host[:port][/path].
struct HttpUrl {
  std::string host;  // a name or an IP literal, without brackets
  uint16_t port = 80;
  std::string path = "/";
};

// ParseHttpUrl accepts http:// URLs only (OCSP responders speak plain HTTP; the response
// is signed). Error naming what is wrong otherwise.
absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url);

// BuildOcspPost returns an HTTP/1.0 POST of `body` (a DER OCSPRequest) to `url`, with
// Content-Type application/ocsp-request; HTTP/1.0 so the responder closes when done.
std::string BuildOcspPost(const HttpUrl& url, std::string_view body);

// kMaxHttpResponse bounds what is read from a responder: a response with a few
// certificates is a few KiB; anything past this is refused, not buffered.
inline constexpr size_t kMaxHttpResponse = 64 * 1024;

// HttpParse is the state of a response read so far.
enum class HttpParse { kNeedMore, kDone };

// ParseHttpResponse looks at everything received so far (`eof`: the responder closed).
// kDone with the body in `*body` once a 200 response is complete (by Content-Length, or at
// eof without one); kNeedMore while it may still come; an error for a status other than 200,
// a malformed head, a chunked body, a body larger than announced or than kMaxHttpResponse,
// or eof before the end.
absl::StatusOr<HttpParse> ParseHttpResponse(std::string_view received, bool eof,
                                            std::string* body);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_HTTP_RESPONSE_H_
