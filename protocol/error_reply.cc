#include "protocol/error_reply.h"

#include <string>

#include "protocol/bson.h"
#include "protocol/byte_reader.h"
#include "protocol/wire.h"

namespace sidecar::protocol {

std::vector<uint8_t> BuildErrorReply(const RequestInfo& request, int32_t code,
                                     std::string_view code_name, std::string_view errmsg) {
  // Field order and types as mongod writes them: ok is a double, code an int32.
  std::vector<uint8_t> document = BsonWriter()
                                      .AppendDouble("ok", 0.0)
                                      .AppendString("errmsg", errmsg)
                                      .AppendInt32("code", code)
                                      .AppendString("codeName", code_name)
                                      .Finish();
  if (request.op_code == OpCode::kQuery) {
    return BuildOpReply(/*request_id=*/0, request.request_id, document);
  }
  return BuildOpMsg(/*request_id=*/0, request.request_id, document);
}

std::optional<RequestInfo> RequestToAnswer(absl::Span<const uint8_t> message_start) {
  ByteReader reader(message_start);
  int32_t message_length = 0;
  int32_t request_id = 0;
  int32_t response_to = 0;
  int32_t op_code = 0;
  if (!reader.ReadI32(&message_length) || !reader.ReadI32(&request_id) ||
      !reader.ReadI32(&response_to) || !reader.ReadI32(&op_code)) {
    return std::nullopt;
  }
  if (message_length < static_cast<int32_t>(kHeaderSize) || message_length > kMaxMessageSize ||
      !IsKnownOpCode(op_code) || op_code == static_cast<int32_t>(OpCode::kReply)) {
    return std::nullopt;
  }
  RequestInfo request;
  request.request_id = request_id;
  request.op_code = OpCode::kMsg;
  if (op_code == static_cast<int32_t>(OpCode::kQuery)) {
    request.op_code = OpCode::kQuery;
  } else if (op_code == static_cast<int32_t>(OpCode::kCompressed)) {
    // OP_COMPRESSED: originalOpcode follows the header (the reply goes out uncompressed,
    // which every driver accepts).
    int32_t original = 0;
    if (message_length >= static_cast<int32_t>(kHeaderSize) + 4 && reader.ReadI32(&original) &&
        original == static_cast<int32_t>(OpCode::kQuery)) {
      request.op_code = OpCode::kQuery;
    }
  }
  return request;
}

std::vector<uint8_t> BuildTlsRequiredReply(const RequestInfo& request) {
  return BuildErrorReply(
      request, kSslHandshakeFailedCode, kSslHandshakeFailedName,
      "This MongoDB server requires TLS: plaintext connections are refused (requireTLS). "
      "Connect with tls=true (for example mongodb://host:27017/?tls=true).");
}

std::vector<uint8_t> BuildUpstreamUnavailableReply(const RequestInfo& request,
                                                   std::string_view reason) {
  return BuildErrorReply(request, kHostUnreachableCode, kHostUnreachableName,
                         "tls-sidecar cannot reach its upstream mongod: " + std::string(reason));
}

std::string_view HttpOnNativePortResponse() {
  // Byte for byte what mongod sends when a connection starts with "GET " (the body ends in
  // CRLF, so Content-Length is 85), so scanners and runbooks see a familiar answer.
  static const std::string* const response = [] {
    constexpr std::string_view kBody =
        "It looks like you are trying to access MongoDB over HTTP on the native driver port.\r\n";
    return new std::string(
        "HTTP/1.0 200 OK\r\n"
        "Connection: close\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: " +
        std::to_string(kBody.size()) + "\r\n\r\n" + std::string(kBody));
  }();
  return *response;
}

}  // namespace sidecar::protocol
