#include "protocol/hello.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/bson.h"
#include "protocol/wire.h"
#include "tests/protocol/test_util.h"
#include "tests/support/bson_builder.h"

namespace sidecar::protocol {
namespace {

using support::BsonBuilder;

using testing::ReadTestData;

struct CapturedHello {
  std::string file;
  OpCode op_code;
  std::string command;
  std::string driver_prefix;
};

class InspectCaptureTest : public ::testing::TestWithParam<CapturedHello> {};

TEST_P(InspectCaptureTest, ReadsApplicationAndDriverFromRealHello) {
  std::vector<uint8_t> message = ReadTestData(GetParam().file);
  ASSERT_GT(message.size(), kHeaderSize);
  InspectResult result = InspectFirstRequest(message);
  ASSERT_EQ(result.status, ParseStatus::kDone) << result.error;
  EXPECT_EQ(result.consumed, message.size());
  EXPECT_EQ(result.request.op_code, GetParam().op_code);
  EXPECT_EQ(result.request.request_id, FrameMessage(message).header.request_id);
  EXPECT_TRUE(result.request.is_hello);
  EXPECT_EQ(result.request.command, GetParam().command);
  EXPECT_EQ(result.request.metadata.application, "billing");
  EXPECT_EQ(result.request.metadata.driver.rfind(GetParam().driver_prefix, 0), 0u)
      << result.request.metadata.driver;
  EXPECT_FALSE(result.request.metadata.internal_client);
}

TEST_P(InspectCaptureTest, NeedsMoreAtEverySplitPointThenInspectsOnce) {
  std::vector<uint8_t> stream = ReadTestData(GetParam().file);
  size_t first_size = stream.size();
  for (size_t n = 0; n < first_size; ++n) {
    InspectResult partial = InspectFirstRequest(absl::MakeConstSpan(stream).first(n));
    ASSERT_EQ(partial.status, ParseStatus::kNeedMore) << "at " << n << " bytes";
    EXPECT_EQ(partial.consumed, 0u);
  }
  // Bytes of a following message do not change the answer about the first.
  stream.insert(stream.end(), {0x10, 0, 0, 0, 9});
  InspectResult result = InspectFirstRequest(stream);
  ASSERT_EQ(result.status, ParseStatus::kDone) << result.error;
  EXPECT_EQ(result.consumed, first_size);
  EXPECT_EQ(result.request.metadata.application, "billing");
}

INSTANTIATE_TEST_SUITE_P(Captures, InspectCaptureTest,
                         ::testing::Values(CapturedHello{"pymongo_hello_op_query.bin",
                                                         OpCode::kQuery, "ismaster", "PyMongo 3."},
                                           CapturedHello{"node_hello.bin", OpCode::kQuery,
                                                         "ismaster", "nodejs 6."},
                                           CapturedHello{"node_hello_server_api_op_msg.bin",
                                                         OpCode::kMsg, "hello", "nodejs 6."}),
                         [](const auto& info) {
                           std::string name = info.param.file.substr(0, info.param.file.find('.'));
                           return name;
                         });

std::vector<uint8_t> ClientDocumentHello(std::string_view command, bool internal_client) {
  BsonBuilder writer;
  writer.AppendInt32(command, 1).AppendBool("helloOk", true);
  writer.StartDocument("client")
      .StartDocument("application")
      .AppendString("name", "reporting\nservice")
      .EndDocument()
      .StartDocument("driver")
      .AppendString("name", "mongo-go-driver")
      .AppendString("version", "v1.13.1")
      .EndDocument()
      .EndDocument();
  if (internal_client) {
    writer.StartDocument("internalClient")
        .AppendInt32("minWireVersion", 0)
        .AppendInt32("maxWireVersion", 21)
        .EndDocument();
  }
  writer.AppendString("$db", "admin");
  return writer.Finish();
}

TEST(InspectTest, RecognisesEveryHelloSpellingOverOpMsg) {
  for (std::string_view command : {"hello", "isMaster", "ismaster"}) {
    std::vector<uint8_t> message = BuildOpMsg(77, 0, ClientDocumentHello(command, false));
    InspectResult result = InspectFirstRequest(message);
    ASSERT_EQ(result.status, ParseStatus::kDone) << command;
    EXPECT_TRUE(result.request.is_hello) << command;
    EXPECT_EQ(result.request.op_code, OpCode::kMsg);
    EXPECT_EQ(result.request.request_id, 77);
    EXPECT_EQ(result.request.metadata.application, "reporting?service");
    EXPECT_EQ(result.request.metadata.driver, "mongo-go-driver v1.13.1");
  }
  InspectResult other =
      InspectFirstRequest(BuildOpMsg(1, 0, ClientDocumentHello("IsMaster", false)));
  EXPECT_FALSE(other.request.is_hello) << "mongod's command names are case-sensitive";
}

TEST(InspectTest, MarksClusterMembersByInternalClient) {
  InspectResult result = InspectFirstRequest(BuildOpMsg(1, 0, ClientDocumentHello("hello", true)));
  ASSERT_EQ(result.status, ParseStatus::kDone);
  EXPECT_TRUE(result.request.metadata.internal_client);
}

TEST(InspectTest, UnwrapsQueryModifiersOnCmdCollections) {
  std::vector<uint8_t> inner = ClientDocumentHello("isMaster", false);
  std::vector<uint8_t> wrapped = BsonBuilder()
                                     .AppendDocument("$query", *BsonView::Parse(inner))
                                     .StartDocument("$readPreference")
                                     .AppendString("mode", "secondaryPreferred")
                                     .EndDocument()
                                     .Finish();
  InspectResult result = InspectFirstRequest(BuildOpQuery(9, "admin.$cmd", wrapped));
  ASSERT_EQ(result.status, ParseStatus::kDone) << result.error;
  EXPECT_TRUE(result.request.is_hello);
  EXPECT_EQ(result.request.op_code, OpCode::kQuery);
  EXPECT_EQ(result.request.request_id, 9);
  EXPECT_EQ(result.request.metadata.driver, "mongo-go-driver v1.13.1");
}

TEST(InspectTest, HelloOnAnyDatabaseCmdCollectionCounts) {
  InspectResult result =
      InspectFirstRequest(BuildOpQuery(1, "test.$cmd", ClientDocumentHello("isMaster", false)));
  EXPECT_TRUE(result.request.is_hello);
}

TEST(InspectTest, LegacyFindIsNotAHello) {
  InspectResult result =
      InspectFirstRequest(BuildOpQuery(1, "admin.users", ClientDocumentHello("isMaster", false)));
  ASSERT_EQ(result.status, ParseStatus::kDone);
  EXPECT_FALSE(result.request.is_hello);
  EXPECT_TRUE(result.request.metadata.application.empty());
}

TEST(InspectTest, OtherCommandsAreDoneButNotHello) {
  std::vector<uint8_t> find =
      BsonBuilder().AppendString("find", "orders").AppendString("$db", "shop").Finish();
  InspectResult result = InspectFirstRequest(BuildOpMsg(3, 0, find));
  ASSERT_EQ(result.status, ParseStatus::kDone);
  EXPECT_FALSE(result.request.is_hello);
  EXPECT_EQ(result.request.command, "find");
  EXPECT_TRUE(result.request.metadata.driver.empty());
}

TEST(InspectTest, HelloWithoutClientDocumentHasEmptyMetadata) {
  std::vector<uint8_t> bare = BsonBuilder().AppendInt32("hello", 1).Finish();
  InspectResult result = InspectFirstRequest(BuildOpMsg(1, 0, bare));
  EXPECT_TRUE(result.request.is_hello);
  EXPECT_EQ(result.request.metadata.application, "");
  EXPECT_EQ(result.request.metadata.driver, "");
  // Wrong types where strings are expected are ignored, not errors.
  std::vector<uint8_t> odd = BsonBuilder()
                                 .AppendInt32("hello", 1)
                                 .StartDocument("client")
                                 .AppendInt32("application", 5)
                                 .StartDocument("driver")
                                 .AppendInt32("name", 1)
                                 .AppendString("version", "2.0")
                                 .EndDocument()
                                 .EndDocument()
                                 .Finish();
  result = InspectFirstRequest(BuildOpMsg(1, 0, odd));
  ASSERT_EQ(result.status, ParseStatus::kDone);
  EXPECT_EQ(result.request.metadata.application, "");
  EXPECT_EQ(result.request.metadata.driver, "2.0");
}

TEST(InspectTest, ErrorsOnUndecodableMessages) {
  std::vector<uint8_t> message = BuildOpMsg(1, 0, ClientDocumentHello("hello", false));
  std::vector<uint8_t> bad_body = message;
  bad_body[21] = 0xFF;  // body length
  EXPECT_EQ(InspectFirstRequest(bad_body).status, ParseStatus::kError);
  std::vector<uint8_t> unknown_op = message;
  unknown_op[12] = 0xDA;  // 2010, the removed OP_COMMAND
  EXPECT_EQ(InspectFirstRequest(unknown_op).status, ParseStatus::kError);
  std::vector<uint8_t> too_long = {0x01, 0x6C, 0xDC, 0x02};
  InspectResult result = InspectFirstRequest(too_long);
  EXPECT_EQ(result.status, ParseStatus::kError);
  EXPECT_FALSE(result.error.empty());
  std::vector<uint8_t> garbage(64, 0x41);
  garbage[0] = 64;
  garbage[1] = garbage[2] = garbage[3] = 0;
  EXPECT_EQ(InspectFirstRequest(garbage).status, ParseStatus::kError);
}

TEST(InspectTest, OtherKnownOpCodesAreDoneWithoutHello) {
  std::vector<uint8_t> compressed = {0, 0,    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xDC, 7, 0,
                                     0, 0xDD, 7, 0, 0, 5, 0, 0, 0, 0, 5, 0, 0,    0, 0};
  compressed[0] = static_cast<uint8_t>(compressed.size());
  InspectResult result = InspectFirstRequest(compressed);
  ASSERT_EQ(result.status, ParseStatus::kDone);
  EXPECT_EQ(result.request.op_code, OpCode::kCompressed);
  EXPECT_FALSE(result.request.is_hello);
}

struct LabelCase {
  std::string input;
  size_t max_bytes;
  std::string want;
};

class SanitizeLabelTest : public ::testing::TestWithParam<LabelCase> {};

TEST_P(SanitizeLabelTest, MakesNetworkTextSafeForLabels) {
  EXPECT_EQ(SanitizeLabel(GetParam().input, GetParam().max_bytes), GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Table, SanitizeLabelTest,
    ::testing::Values(LabelCase{"billing", 128, "billing"}, LabelCase{"", 128, ""},
                      LabelCase{"a\tb\nc\x7f"
                                "d",
                                128, "a?b?c?d"},
                      LabelCase{std::string("nul\0x", 5), 128, "nul?x"},
                      LabelCase{"caf\xC3\xA9", 128, "caf\xC3\xA9"},
                      LabelCase{"caf\xC3\xA9", 4, "caf"},  // never cut inside a character
                      LabelCase{"\xE2\x82\xAC\xE2\x82\xAC", 5, "\xE2\x82\xAC"},
                      LabelCase{"\xF0\x9F\x98\x80!", 128, "\xF0\x9F\x98\x80!"},
                      LabelCase{"bad\xFFutf8", 128, "bad?utf8"},
                      LabelCase{"trunc\xC3", 128, "trunc?"},
                      LabelCase{"overlong\xC0\xAF", 128, "overlong??"},
                      LabelCase{"surrogate\xED\xA0\x80", 128, "surrogate???"},
                      LabelCase{"c1\xC2\x85", 128, "c1?"},
                      LabelCase{std::string(300, 'x'), 128, std::string(128, 'x')},
                      LabelCase{"abc", 0, ""}));

}  // namespace
}  // namespace sidecar::protocol
