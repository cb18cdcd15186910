// Error replies a client can read (SPEC §4): the sidecar answers a rejected client's first
// request the way mongod answers a failed command, so drivers surface a real message
// instead of "connection closed". Also mongod's answer to HTTP on the native port.
// Pure functions, callable from any thread.
#ifndef SIDECAR_PROTOCOL_ERROR_REPLY_H_
#define SIDECAR_PROTOCOL_ERROR_REPLY_H_

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "protocol/hello.h"

namespace sidecar::protocol {

// MongoDB error codes used by the sidecar's replies (from mongod's error_codes.yml).
//
// kHostUnreachable (6) for an unreachable upstream: it is what mongos and drivers report
// when a host cannot be reached; drivers file it among network errors, mark the server
// Unknown and retry, which is the right reaction to a mongod that is down or restarting.
inline constexpr int32_t kHostUnreachableCode = 6;
inline constexpr std::string_view kHostUnreachableName = "HostUnreachable";
// kSslHandshakeFailed (141) for plaintext in requireTLS: mongod in requireSSL mode ends a
// plaintext connection with exactly this code ("SSLHandshakeFailed: The server is
// configured to only allow SSL connections"), so logs and runbooks match mongod's.
inline constexpr int32_t kSslHandshakeFailedCode = 141;
inline constexpr std::string_view kSslHandshakeFailedName = "SSLHandshakeFailed";

// BuildErrorReply answers `request` in the opcode it used (OP_QUERY -> OP_REPLY; OP_MSG and
// anything else -> OP_MSG) with {ok: 0.0, errmsg, code, codeName}, response_to =
// request.request_id and request_id 0 (drivers match replies by responseTo only). The
// OP_REPLY carries no QueryFailure flag: like mongod's answers to commands, the error is in
// the document.
std::vector<uint8_t> BuildErrorReply(const RequestInfo& request, int32_t code,
                                     std::string_view code_name, std::string_view errmsg);

// RequestToAnswer reads, from the start of a client's first message, what an error reply
// needs: the requestID and the opcode to answer in (OP_QUERY for OP_QUERY, and for an
// OP_COMPRESSED whose originalOpcode is OP_QUERY when those 4 bytes are given; OP_MSG for
// every other request). nullopt unless the 16-byte header frames as a MongoDB request:
// messageLength within [16, 48 MB] and a request opcode. responseTo and the body are not
// looked at, so a message too large, too deep, compressed or otherwise undecodable can
// still be told why it is refused.
std::optional<RequestInfo> RequestToAnswer(absl::Span<const uint8_t> message_start);

// BuildTlsRequiredReply: plaintext in requireTLS. errmsg contains "requires TLS" and
// "tls=true". Code SSLHandshakeFailed (141).
std::vector<uint8_t> BuildTlsRequiredReply(const RequestInfo& request);

// BuildUpstreamUnavailableReply: mongod behind the sidecar cannot be reached. errmsg
// contains "upstream" and `reason` (e.g. "connection refused"). Code HostUnreachable (6).
std::vector<uint8_t> BuildUpstreamUnavailableReply(const RequestInfo& request,
                                                   std::string_view reason);

// HttpOnNativePortResponse is the full HTTP/1.0 response mongod sends to an HTTP request on
// its driver port ("It looks like you are trying to access MongoDB over HTTP on the native
// driver port."). Points to static storage.
std::string_view HttpOnNativePortResponse();

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_ERROR_REPLY_H_
