#include "protocol/wire.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/bson.h"
#include "tests/protocol/test_util.h"

namespace sidecar::protocol {
namespace {

using testing::Bytes;
using testing::ReadTestData;

std::vector<uint8_t> HelloBody() {
  return BsonWriter().AppendInt32("hello", 1).AppendString("$db", "admin").Finish();
}

void SetLength(std::vector<uint8_t>& message) {
  uint32_t size = static_cast<uint32_t>(message.size());
  for (int i = 0; i < 4; ++i) {
    message[i] = static_cast<uint8_t>(size >> (8 * i));
  }
}

class FrameCaptureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FrameCaptureTest, NeedsMoreAtEverySplitPointThenFramesTheWholeMessage) {
  std::vector<uint8_t> message = ReadTestData(GetParam());
  ASSERT_GT(message.size(), kHeaderSize);
  for (size_t n = 0; n < message.size(); ++n) {
    Frame frame = FrameMessage(absl::MakeConstSpan(message).first(n));
    ASSERT_EQ(frame.status, ParseStatus::kNeedMore) << "at " << n << " bytes";
  }
  std::vector<uint8_t> stream = message;
  stream.insert(stream.end(), message.begin(), message.end());  // a second message follows
  Frame frame = FrameMessage(stream);
  ASSERT_EQ(frame.status, ParseStatus::kDone);
  EXPECT_EQ(frame.size, message.size());
  EXPECT_EQ(frame.header.message_length, static_cast<int32_t>(message.size()));
  EXPECT_EQ(frame.header.response_to, 0);
}

INSTANTIATE_TEST_SUITE_P(Captures, FrameCaptureTest,
                         ::testing::Values("pymongo_hello_op_query.bin", "node_hello.bin",
                                           "node_hello_server_api_op_msg.bin"));

TEST(FrameTest, RejectsImpossibleLengthsFromTheFirstFourBytes) {
  Frame small = FrameMessage(Bytes({15, 0, 0, 0}));
  EXPECT_EQ(small.status, ParseStatus::kError);
  EXPECT_FALSE(small.error.empty());
  Frame negative = FrameMessage(Bytes({0xFF, 0xFF, 0xFF, 0xFF}));
  EXPECT_EQ(negative.status, ParseStatus::kError);
  // 48,000,001 = 0x02DC6C01.
  Frame oversized = FrameMessage(Bytes({0x01, 0x6C, 0xDC, 0x02}));
  EXPECT_EQ(oversized.status, ParseStatus::kError);
  Frame largest = FrameMessage(Bytes({0x00, 0x6C, 0xDC, 0x02}));
  EXPECT_EQ(largest.status, ParseStatus::kNeedMore);
}

TEST(OpMsgTest, ParsesCapturedNodeHello) {
  std::vector<uint8_t> message = ReadTestData("node_hello_server_api_op_msg.bin");
  absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->flag_bits, 0u);
  EXPECT_TRUE(msg->sequences.empty());
  BsonView body = *BsonView::Parse(msg->body);
  EXPECT_EQ(body.First()->key(), "hello");
  EXPECT_EQ(body.Find("$db")->AsString(), "admin");
  EXPECT_EQ(msg->header.op_code, static_cast<int32_t>(OpCode::kMsg));
}

TEST(OpMsgTest, RoundTripsBodyAndDocumentSequences) {
  std::vector<uint8_t> body = BsonWriter().AppendString("insert", "c").Finish();
  std::vector<uint8_t> doc1 = BsonWriter().AppendInt32("_id", 1).Finish();
  std::vector<uint8_t> doc2 = BsonWriter().AppendInt32("_id", 2).Finish();
  std::vector<DocumentSequence> sequences = {{"documents", {doc1, doc2}}, {"empty", {}}};
  std::vector<uint8_t> message = BuildOpMsgWithSequences(7, 0, body, sequences, kMsgExhaustAllowed);
  absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->header.request_id, 7);
  EXPECT_EQ(msg->flag_bits, kMsgExhaustAllowed);
  EXPECT_EQ(std::vector<uint8_t>(msg->body.begin(), msg->body.end()), body);
  ASSERT_EQ(msg->sequences.size(), 2u);
  EXPECT_EQ(msg->sequences[0].identifier, "documents");
  ASSERT_EQ(msg->sequences[0].documents.size(), 2u);
  EXPECT_EQ(std::vector<uint8_t>(msg->sequences[0].documents[1].begin(),
                                 msg->sequences[0].documents[1].end()),
            doc2);
  EXPECT_EQ(msg->sequences[1].identifier, "empty");
  EXPECT_TRUE(msg->sequences[1].documents.empty());
}

TEST(OpMsgTest, AcceptsDocumentSequenceBeforeTheBody) {
  // Section order is free (the body need not come first); found by the wire fuzzer.
  std::vector<uint8_t> doc = BsonWriter().AppendInt32("_id", 1).Finish();
  std::vector<uint8_t> message = Bytes({0,    0,
                                        0,    0,
                                        1,    0,
                                        0,    0,
                                        0,    0,
                                        0,    0,
                                        0xDD, 0x07,
                                        0,    0,
                                        0,    0,
                                        0,    0,  // flagBits
                                        1,    static_cast<int>(4 + 2 + doc.size()),
                                        0,    0,
                                        0,    'd',
                                        0});
  message.insert(message.end(), doc.begin(), doc.end());
  std::vector<uint8_t> body = HelloBody();
  message.push_back(0);
  message.insert(message.end(), body.begin(), body.end());
  SetLength(message);
  absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(std::vector<uint8_t>(msg->body.begin(), msg->body.end()), body);
  ASSERT_EQ(msg->sequences.size(), 1u);
  EXPECT_EQ(msg->sequences[0].identifier, "d");
  EXPECT_EQ(msg->sequences[0].documents.size(), 1u);
}

TEST(OpMsgTest, ExcludesTheChecksumFromSections) {
  std::vector<uint8_t> message = BuildOpMsg(1, 0, HelloBody());
  message[16] = kMsgChecksumPresent;
  message.insert(message.end(), {0xDE, 0xAD, 0xBE, 0xEF});
  SetLength(message);
  absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->body.size(), HelloBody().size());
}

TEST(OpMsgTest, RejectsEveryTruncation) {
  std::vector<uint8_t> message = BuildOpMsg(1, 0, HelloBody());
  for (size_t n = 0; n < message.size(); ++n) {
    std::vector<uint8_t> truncated(message.begin(), message.begin() + n);
    if (n >= 4) {
      SetLength(truncated);  // a consistent header over too few bytes
    }
    EXPECT_FALSE(ParseOpMsg(truncated).ok()) << n;
  }
}

struct BadMessage {
  const char* name;
  std::vector<uint8_t> message;
};

std::vector<BadMessage> BadOpMsgs() {
  std::vector<BadMessage> cases;
  std::vector<uint8_t> good = BuildOpMsg(1, 0, HelloBody());
  auto with = [&](const char* name, auto mutate) {
    std::vector<uint8_t> message = good;
    mutate(message);
    SetLength(message);
    cases.push_back({name, message});
  };
  with("UnknownRequiredFlag", [](auto& m) { m[16] = 0x04; });
  with("TwoBodies", [](auto& m) {
    std::vector<uint8_t> body = HelloBody();
    m.push_back(0);
    m.insert(m.end(), body.begin(), body.end());
  });
  with("NoBody", [](auto& m) { m.resize(20); });
  with("UnknownSectionKind", [](auto& m) { m[20] = 2; });
  with("SequenceSizeOverruns", [](auto& m) { m.insert(m.end(), {1, 0xFF, 0, 0, 0, 'x', 0}); });
  with("SequenceSizeTooSmall", [](auto& m) { m.insert(m.end(), {1, 4, 0, 0, 0}); });
  with("SequenceWithoutIdentifierNul", [](auto& m) { m.insert(m.end(), {1, 6, 0, 0, 0, 'x'}); });
  with("SequenceDocumentTruncated", [](auto& m) {
    m.insert(m.end(), {1, 12, 0, 0, 0, 'x', 0, 9, 0, 0, 0, 0});
  });
  with("ChecksumWithoutRoom", [](auto& m) {
    m.resize(20);
    m[16] = 1;
  });
  with("WrongOpCode", [](auto& m) { m[12] = 0xD4; });
  cases.push_back({"LengthDisagreesWithSize", [&] {
                     std::vector<uint8_t> m = good;
                     m.push_back(0);
                     return m;
                   }()});
  return cases;
}

class OpMsgMalformedTest : public ::testing::TestWithParam<BadMessage> {};

TEST_P(OpMsgMalformedTest, RejectsMalformedOpMsg) {
  EXPECT_FALSE(ParseOpMsg(GetParam().message).ok());
}

INSTANTIATE_TEST_SUITE_P(Garbage, OpMsgMalformedTest, ::testing::ValuesIn(BadOpMsgs()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(OpQueryTest, ParsesCapturedPymongoIsMaster) {
  std::vector<uint8_t> message = ReadTestData("pymongo_hello_op_query.bin");
  absl::StatusOr<OpQuery> query = ParseOpQuery(message);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->full_collection_name, "admin.$cmd");
  EXPECT_EQ(query->number_to_return, -1);
  EXPECT_TRUE(query->return_fields_selector.empty());
  EXPECT_EQ(BsonView::Parse(query->query)->First()->key(), "ismaster");
}

TEST(OpQueryTest, RoundTripsWithAndWithoutReturnFieldsSelector) {
  std::vector<uint8_t> query_doc = BsonWriter().AppendInt32("isMaster", 1).Finish();
  std::vector<uint8_t> message = BuildOpQuery(42, "admin.$cmd", query_doc, -1);
  absl::StatusOr<OpQuery> query = ParseOpQuery(message);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->header.request_id, 42);
  EXPECT_EQ(query->header.response_to, 0);
  EXPECT_EQ(query->flags, 0);
  EXPECT_EQ(query->number_to_skip, 0);
  EXPECT_EQ(query->number_to_return, -1);
  EXPECT_EQ(std::vector<uint8_t>(query->query.begin(), query->query.end()), query_doc);

  std::vector<uint8_t> selector = BsonWriter().AppendInt32("a", 1).Finish();
  message.insert(message.end(), selector.begin(), selector.end());
  SetLength(message);
  query = ParseOpQuery(message);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(std::vector<uint8_t>(query->return_fields_selector.begin(),
                                 query->return_fields_selector.end()),
            selector);

  message.push_back(0);
  SetLength(message);
  EXPECT_FALSE(ParseOpQuery(message).ok()) << "bytes after the selector";
}

TEST(OpQueryTest, RejectsEveryTruncationAndUnterminatedCollectionName) {
  std::vector<uint8_t> message = ReadTestData("node_hello.bin");
  ASSERT_TRUE(ParseOpQuery(message).ok());
  for (size_t n = 0; n < message.size(); ++n) {
    std::vector<uint8_t> truncated(message.begin(), message.begin() + n);
    if (n >= 4) {
      SetLength(truncated);
    }
    EXPECT_FALSE(ParseOpQuery(truncated).ok()) << n;
  }
  std::vector<uint8_t> no_nul = Bytes(
      {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xD4, 7, 0, 0, 0, 0, 0, 0, 'a', 'd', 'm', 'i', 'n'});
  SetLength(no_nul);
  EXPECT_FALSE(ParseOpQuery(no_nul).ok());
}

TEST(OpReplyTest, RoundTripsAndChecksTheDocumentCount) {
  std::vector<uint8_t> doc = BsonWriter().AppendDouble("ok", 1.0).Finish();
  std::vector<uint8_t> message = BuildOpReply(5, 42, doc, /*response_flags=*/8, /*cursor_id=*/9);
  absl::StatusOr<OpReply> reply = ParseOpReply(message);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->header.request_id, 5);
  EXPECT_EQ(reply->header.response_to, 42);
  EXPECT_EQ(reply->response_flags, 8);
  EXPECT_EQ(reply->cursor_id, 9);
  EXPECT_EQ(reply->starting_from, 0);
  EXPECT_EQ(reply->number_returned, 1);
  ASSERT_EQ(reply->documents.size(), 1u);
  EXPECT_EQ(std::vector<uint8_t>(reply->documents[0].begin(), reply->documents[0].end()), doc);

  std::vector<uint8_t> two = message;
  two.insert(two.end(), doc.begin(), doc.end());
  SetLength(two);
  EXPECT_FALSE(ParseOpReply(two).ok()) << "numberReturned says 1";
  two[32] = 2;
  EXPECT_TRUE(ParseOpReply(two).ok());
  two[32] = 0xFF;
  two[33] = two[34] = two[35] = 0xFF;
  EXPECT_FALSE(ParseOpReply(two).ok()) << "negative numberReturned";
  for (size_t n = 0; n < message.size(); ++n) {
    std::vector<uint8_t> truncated(message.begin(), message.begin() + n);
    if (n >= 4) {
      SetLength(truncated);
    }
    EXPECT_FALSE(ParseOpReply(truncated).ok()) << n;
  }
}

TEST(OpCompressedTest, ParsesFieldsAndRejectsImpossibleSizes) {
  std::vector<uint8_t> message =
      Bytes({0,    0,    0,   0, 3, 0, 0, 0, 0, 0, 0, 0, 0xDC, 0x07, 0, 0,  // header, OP_COMPRESSED
             0xDD, 0x07, 0,   0,                                            // originalOpcode OP_MSG
             0x20, 0,    0,   0,                                            // uncompressedSize 32
             2,                                                             // zlib
             0x78, 0x9C, 0x01});
  SetLength(message);
  absl::StatusOr<OpCompressed> compressed = ParseOpCompressed(message);
  ASSERT_TRUE(compressed.ok()) << compressed.status();
  EXPECT_EQ(compressed->original_op_code, 2013);
  EXPECT_EQ(compressed->uncompressed_size, 32);
  EXPECT_EQ(compressed->compressor_id, 2);
  EXPECT_EQ(compressed->compressed.size(), 3u);
  std::vector<uint8_t> negative = message;
  negative[23] = 0x80;
  EXPECT_FALSE(ParseOpCompressed(negative).ok());
  for (size_t n = 0; n < 25; ++n) {
    std::vector<uint8_t> truncated(message.begin(), message.begin() + n);
    if (n >= 4) {
      SetLength(truncated);
    }
    EXPECT_FALSE(ParseOpCompressed(truncated).ok()) << n;
  }
}

TEST(WireTest, ParsersRejectOtherOpCodes) {
  std::vector<uint8_t> msg = BuildOpMsg(1, 0, HelloBody());
  EXPECT_FALSE(ParseOpQuery(msg).ok());
  EXPECT_FALSE(ParseOpReply(msg).ok());
  EXPECT_FALSE(ParseOpCompressed(msg).ok());
  EXPECT_EQ(OpCodeName(2013), "OP_MSG");
  EXPECT_EQ(OpCodeName(2010), "unknown");
  EXPECT_TRUE(IsKnownOpCode(1));
  EXPECT_FALSE(IsKnownOpCode(0));
}

TEST(WireTest, BuildersNeverClaimAChecksum) {
  std::vector<uint8_t> message =
      BuildOpMsg(1, 0, HelloBody(), kMsgChecksumPresent | kMsgMoreToCome);
  absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->flag_bits, kMsgMoreToCome);
}

}  // namespace
}  // namespace sidecar::protocol
