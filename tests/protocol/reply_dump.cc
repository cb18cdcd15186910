// Prints the sidecar's error replies, one per line as "<name> <hex>", so that
// pymongo_decode_test.py can check them with pymongo's own BSON decoder.
#include <cstdio>
#include <vector>

#include "protocol/error_reply.h"
#include "protocol/hello.h"

namespace {

void Print(const char* name, const std::vector<uint8_t>& bytes) {
  std::printf("%s ", name);
  for (uint8_t b : bytes) {
    std::printf("%02x", b);
  }
  std::printf("\n");
}

}  // namespace

int main() {
  using namespace sidecar::protocol;
  RequestInfo op_msg;
  op_msg.op_code = OpCode::kMsg;
  op_msg.request_id = 1234;
  RequestInfo op_query;
  op_query.op_code = OpCode::kQuery;
  op_query.request_id = 5678;
  Print("tls_required_op_msg", BuildTlsRequiredReply(op_msg));
  Print("tls_required_op_reply", BuildTlsRequiredReply(op_query));
  Print("upstream_op_msg", BuildUpstreamUnavailableReply(op_msg, "connection refused"));
  Print("upstream_op_reply", BuildUpstreamUnavailableReply(op_query, "connection refused"));
  return 0;
}
