#include "protocol/error_reply.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "protocol/bson.h"
#include "protocol/hello.h"
#include "protocol/wire.h"
#include "tests/protocol/test_util.h"

namespace sidecar::protocol {
namespace {

using testing::ReadTestData;

struct DecodedReply {
  int32_t response_to = 0;
  double ok = -1;
  std::string errmsg;
  int32_t code = 0;
  std::string code_name;
};

// Decode reads the reply the way a driver would: OP_REPLY's first document, or OP_MSG's
// body, with our own parsers.
DecodedReply Decode(const std::vector<uint8_t>& reply, OpCode expected) {
  DecodedReply decoded;
  Frame frame = FrameMessage(reply);
  EXPECT_EQ(frame.status, ParseStatus::kDone);
  EXPECT_EQ(frame.size, reply.size());
  EXPECT_EQ(frame.header.op_code, static_cast<int32_t>(expected));
  decoded.response_to = frame.header.response_to;
  absl::Span<const uint8_t> document;
  if (expected == OpCode::kReply) {
    absl::StatusOr<OpReply> op_reply = ParseOpReply(reply);
    EXPECT_TRUE(op_reply.ok()) << op_reply.status();
    if (!op_reply.ok() || op_reply->documents.size() != 1) {
      ADD_FAILURE() << "OP_REPLY without exactly one document";
      return decoded;
    }
    EXPECT_EQ(op_reply->response_flags & 2, 0) << "no QueryFailure: the error is a document";
    document = op_reply->documents[0];
  } else {
    absl::StatusOr<OpMsg> msg = ParseOpMsg(reply);
    EXPECT_TRUE(msg.ok()) << msg.status();
    if (!msg.ok()) {
      return decoded;
    }
    EXPECT_EQ(msg->flag_bits, 0u);
    document = msg->body;
  }
  absl::StatusOr<BsonView> view = BsonView::Parse(document);
  EXPECT_TRUE(view.ok()) << view.status();
  if (!view.ok()) {
    return decoded;
  }
  EXPECT_EQ(view->Find("ok")->type(), BsonType::kDouble);
  decoded.ok = view->Find("ok")->AsDouble().value_or(-1);
  decoded.errmsg = std::string(view->Find("errmsg")->AsString().value_or(""));
  EXPECT_EQ(view->Find("code")->type(), BsonType::kInt32);
  decoded.code = view->Find("code")->AsInt32().value_or(0);
  decoded.code_name = std::string(view->Find("codeName")->AsString().value_or(""));
  return decoded;
}

RequestInfo InspectCapture(const std::string& file) {
  std::vector<uint8_t> message = ReadTestData(file);
  InspectResult result = InspectFirstRequest(message);
  EXPECT_EQ(result.status, ParseStatus::kDone) << file;
  return result.request;
}

struct CaptureCase {
  std::string file;
  OpCode reply_op;
};

class ErrorReplyCaptureTest : public ::testing::TestWithParam<CaptureCase> {};

TEST_P(ErrorReplyCaptureTest, AnswersTlsRequiredInTheClientsOpCode) {
  RequestInfo request = InspectCapture(GetParam().file);
  DecodedReply reply = Decode(BuildTlsRequiredReply(request), GetParam().reply_op);
  EXPECT_EQ(reply.response_to, request.request_id);
  EXPECT_EQ(reply.ok, 0.0);
  EXPECT_NE(reply.errmsg.find("requires TLS"), std::string::npos) << reply.errmsg;
  EXPECT_NE(reply.errmsg.find("tls=true"), std::string::npos) << reply.errmsg;
  EXPECT_EQ(reply.code, 141);
  EXPECT_EQ(reply.code_name, "SSLHandshakeFailed");
}

TEST_P(ErrorReplyCaptureTest, AnswersUpstreamUnavailableWithTheReason) {
  RequestInfo request = InspectCapture(GetParam().file);
  DecodedReply reply =
      Decode(BuildUpstreamUnavailableReply(request, "connection refused"), GetParam().reply_op);
  EXPECT_EQ(reply.response_to, request.request_id);
  EXPECT_EQ(reply.ok, 0.0);
  EXPECT_NE(reply.errmsg.find("upstream"), std::string::npos) << reply.errmsg;
  EXPECT_NE(reply.errmsg.find("connection refused"), std::string::npos) << reply.errmsg;
  EXPECT_EQ(reply.code, 6);
  EXPECT_EQ(reply.code_name, "HostUnreachable");
}

INSTANTIATE_TEST_SUITE_P(
    Captures, ErrorReplyCaptureTest,
    ::testing::Values(CaptureCase{"pymongo_hello_op_query.bin", OpCode::kReply},
                      CaptureCase{"node_hello.bin", OpCode::kReply},
                      CaptureCase{"node_hello_server_api_op_msg.bin", OpCode::kMsg}),
    [](const auto& info) { return info.param.file.substr(0, info.param.file.find('.')); });

TEST(ErrorReplyTest, CarriesArbitraryCodesAndMessages) {
  RequestInfo request;
  request.op_code = OpCode::kMsg;
  request.request_id = -5;
  DecodedReply reply =
      Decode(BuildErrorReply(request, 13, "Unauthorized", std::string("a\0b", 3)), OpCode::kMsg);
  EXPECT_EQ(reply.response_to, -5);
  EXPECT_EQ(reply.code, 13);
  EXPECT_EQ(reply.code_name, "Unauthorized");
  EXPECT_EQ(reply.errmsg, std::string("a\0b", 3)) << "strings are length-prefixed, NUL is data";
}

TEST(ErrorReplyTest, AnswersNonQueryOpCodesWithOpMsg) {
  RequestInfo request;
  request.op_code = OpCode::kCompressed;
  request.request_id = 3;
  DecodedReply reply = Decode(BuildTlsRequiredReply(request), OpCode::kMsg);
  EXPECT_EQ(reply.response_to, 3);
}

std::vector<uint8_t> Header(int32_t length, int32_t request_id, int32_t response_to,
                            int32_t op_code, std::vector<int32_t> more = {}) {
  std::vector<uint8_t> bytes;
  for (int32_t v : {length, request_id, response_to, op_code}) {
    for (int i = 0; i < 4; ++i) {
      bytes.push_back(static_cast<uint8_t>(static_cast<uint32_t>(v) >> (8 * i)));
    }
  }
  for (int32_t v : more) {
    for (int i = 0; i < 4; ++i) {
      bytes.push_back(static_cast<uint8_t>(static_cast<uint32_t>(v) >> (8 * i)));
    }
  }
  return bytes;
}

TEST(RequestToAnswerTest, NeedsOnlyAHeaderThatFramesAsARequest) {
  // responseTo is not looked at: a client that sets it is still a client to answer.
  std::optional<RequestInfo> msg = RequestToAnswer(Header(100, 41, 77, 2013));
  ASSERT_TRUE(msg.has_value());
  EXPECT_EQ(msg->request_id, 41);
  EXPECT_EQ(msg->op_code, OpCode::kMsg);
  std::optional<RequestInfo> query = RequestToAnswer(Header(100, 42, 0, 2004));
  ASSERT_TRUE(query.has_value());
  EXPECT_EQ(query->op_code, OpCode::kQuery);
  // Legacy writes have no reply of their own: OP_MSG, which every driver reads.
  EXPECT_EQ(RequestToAnswer(Header(100, 43, 0, 2002))->op_code, OpCode::kMsg);
  // Not a request: too short, out of bounds, a reply, an unknown opcode.
  std::vector<uint8_t> short_header = Header(100, 1, 0, 2013);
  short_header.pop_back();
  EXPECT_FALSE(RequestToAnswer(short_header).has_value());
  EXPECT_FALSE(RequestToAnswer(Header(15, 1, 0, 2013)).has_value());
  EXPECT_FALSE(RequestToAnswer(Header(kMaxMessageSize + 1, 1, 0, 2013)).has_value());
  EXPECT_FALSE(RequestToAnswer(Header(100, 1, 0, 1)).has_value());
  EXPECT_FALSE(RequestToAnswer(Header(100, 1, 0, 2010)).has_value());
}

TEST(RequestToAnswerTest, OpCompressedIsAnsweredInItsOriginalOpcodesReplyFamily) {
  std::optional<RequestInfo> query = RequestToAnswer(Header(100, 51, 0, 2012, {2004}));
  ASSERT_TRUE(query.has_value());
  EXPECT_EQ(query->request_id, 51);
  EXPECT_EQ(query->op_code, OpCode::kQuery);
  DecodedReply reply = Decode(BuildTlsRequiredReply(*query), OpCode::kReply);
  EXPECT_EQ(reply.response_to, 51);
  EXPECT_EQ(reply.code, 141);
  EXPECT_EQ(RequestToAnswer(Header(100, 52, 0, 2012, {2013}))->op_code, OpCode::kMsg);
  // Without the originalOpcode bytes, OP_MSG (what every current driver compresses).
  EXPECT_EQ(RequestToAnswer(Header(100, 53, 0, 2012))->op_code, OpCode::kMsg);
}

TEST(ErrorReplyTest, HttpResponseIsMongodsCompleteHttp10Answer) {
  std::string_view response = HttpOnNativePortResponse();
  ASSERT_EQ(response.rfind("HTTP/1.0 200 OK\r\n", 0), 0u);
  size_t header_end = response.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string_view::npos);
  std::string_view body = response.substr(header_end + 4);
  EXPECT_NE(body.find("It looks like you are trying to access MongoDB over HTTP on the native "
                      "driver port."),
            std::string_view::npos);
  EXPECT_NE(response.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string_view::npos);
  EXPECT_NE(response.find("Connection: close\r\n"), std::string_view::npos);
  EXPECT_EQ(body.size(), 85u) << "as mongod sends it";
}

}  // namespace
}  // namespace sidecar::protocol
