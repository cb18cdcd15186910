// HttpPost sends one OCSP request to a responder over plain HTTP/1.0 on a libuv loop and
// hands back the response body. It resolves the host (uv_getaddrinfo, on libuv's thread
// pool), connects, writes the request, reads until the responder closes (or the announced
// Content-Length is in), all under one deadline. Never blocks the loop.
//
// Why our own client and not libcurl: responders are plain HTTP and the exchange is one
// POST and one bounded response, which this does in a few hundred lines on the loop we
// already run; libcurl's multi-socket glue to libuv is as long, and Debian's libcurl for
// OpenSSL would load OpenSSL's libssl beside BoringSSL (clashing symbols) while its GnuTLS
// flavour would bring a second TLS stack into the process for no use.
//
// Loop thread only. The operation owns itself: it frees itself after `done` has run and its
// handles are closed.
#ifndef SIDECAR_PROXY_OCSP_HTTP_POST_H_
#define SIDECAR_PROXY_OCSP_HTTP_POST_H_

#include <uv.h>

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sidecar::proxy {

// OcspPostToken lets the owner cancel a post still under way (at shutdown, so the loop is
// not held open until the timeout). Loop thread only.
class OcspPostToken {
 public:
  // Cancel ends the post now if it is still under way: `done` runs at once, with
  // Cancelled. Does nothing once `done` has run.
  void Cancel();

 private:
  friend class OcspPostAccess;
  void* post_ = nullptr;  // the operation while under way
};

// StartOcspPost posts `request` (DER) to `url` and calls `done` exactly once, from the loop
// and never from inside this call (only from Cancel): the body of a 200 answer, or
// DeadlineExceeded after `timeout`, or Unavailable/InvalidArgument naming what failed
// (resolution, connection, HTTP status, malformed or oversized answer).
std::shared_ptr<OcspPostToken> StartOcspPost(
    uv_loop_t* loop, const std::string& url, std::string request, absl::Duration timeout,
    absl::AnyInvocable<void(absl::StatusOr<std::string>)> done);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OCSP_HTTP_POST_H_
