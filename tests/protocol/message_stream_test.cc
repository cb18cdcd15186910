#include "protocol/message_stream.h"

#include <gtest/gtest.h>

#include <vector>

#include "protocol/bson.h"
#include "protocol/wire.h"
#include "tests/protocol/test_util.h"

namespace sidecar::protocol {
namespace {

using testing::Bytes;
using testing::ReadTestData;

std::vector<uint8_t> Body(const char* command) {
  return BsonWriter().AppendInt32(command, 1).AppendString("$db", "admin").Finish();
}

std::vector<uint8_t> Request(uint32_t flag_bits = 0) {
  return BuildOpMsg(7, 0, Body("ping"), flag_bits);
}

std::vector<uint8_t> Reply(uint32_t flag_bits = 0) {
  return BuildOpMsg(8, 7, BsonWriter().AppendDouble("ok", 1).Finish(), flag_bits);
}

std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

// Feeds `bytes` split at `split` (0 < split < size) as two reads.
void FeedSplit(InFlightTracker& tracker, bool request, const std::vector<uint8_t>& bytes,
               size_t split) {
  auto span = absl::MakeConstSpan(bytes);
  if (request) {
    tracker.OnRequestBytes(span.first(split));
    tracker.OnRequestBytes(span.subspan(split));
  } else {
    tracker.OnReplyBytes(span.first(split));
    tracker.OnReplyBytes(span.subspan(split));
  }
}

TEST(MessageFramerTest, FindsEveryBoundaryOfCapturedMessagesAtEverySplitPoint) {
  for (const char* name :
       {"pymongo_hello_op_query.bin", "node_hello.bin", "node_hello_server_api_op_msg.bin"}) {
    std::vector<uint8_t> message = ReadTestData(name);
    ASSERT_GT(message.size(), kHeaderSize) << name;
    std::vector<uint8_t> stream = Concat({message, message});
    for (size_t split = 1; split < stream.size(); ++split) {
      MessageFramer framer;
      auto first = absl::MakeConstSpan(stream).first(split);
      auto second = absl::MakeConstSpan(stream).subspan(split);
      int completed = 0;
      while (framer.Next(&first)) {
        ++completed;
      }
      EXPECT_TRUE(first.empty());
      EXPECT_EQ(framer.at_boundary(), split == message.size()) << name << " split " << split;
      while (framer.Next(&second)) {
        ++completed;
      }
      EXPECT_TRUE(second.empty());
      EXPECT_EQ(completed, 2) << name << " split " << split;
      EXPECT_TRUE(framer.at_boundary());
      EXPECT_FALSE(framer.lost());
    }
  }
}

TEST(MessageFramerTest, ReadsTheOpMsgFlagBitsEvenWhenTheyArriveOneByteAtATime) {
  std::vector<uint8_t> message = Request(kMsgMoreToCome | kMsgExhaustAllowed);
  MessageFramer framer;
  int completed = 0;
  for (uint8_t byte : message) {
    auto one = absl::MakeConstSpan(&byte, 1);
    if (framer.Next(&one)) {
      ++completed;
    }
    EXPECT_TRUE(one.empty());
  }
  EXPECT_EQ(completed, 1);
  EXPECT_EQ(framer.op_code(), static_cast<int32_t>(OpCode::kMsg));
  EXPECT_EQ(framer.flag_bits(), kMsgMoreToCome | kMsgExhaustAllowed);
}

TEST(MessageFramerTest, ALengthOutsideMongoDbBoundsLosesTheFraming) {
  for (std::vector<uint8_t> garbage :
       {Bytes({15, 0, 0, 0}), Bytes({0xFF, 0xFF, 0xFF, 0xFF}), Bytes({0x01, 0x6C, 0xDC, 0x02})}) {
    garbage.resize(32, 0);
    MessageFramer framer;
    auto span = absl::MakeConstSpan(garbage);
    EXPECT_FALSE(framer.Next(&span));
    EXPECT_TRUE(framer.lost());
    EXPECT_FALSE(framer.at_boundary());
    auto more = absl::MakeConstSpan(Request());
    EXPECT_FALSE(framer.Next(&more));  // lost for good
  }
}

TEST(InFlightTrackerTest, ARequestIsInFlightFromItsFirstByteUntilTheLastByteOfItsReply) {
  std::vector<uint8_t> request = Request();
  std::vector<uint8_t> reply = Reply();
  for (size_t split = 1; split < request.size(); ++split) {
    InFlightTracker tracker;
    EXPECT_TRUE(tracker.idle());
    tracker.OnRequestBytes(absl::MakeConstSpan(request).first(split));
    EXPECT_FALSE(tracker.idle()) << "request split at " << split;
    EXPECT_FALSE(tracker.at_boundary());
    tracker.OnRequestBytes(absl::MakeConstSpan(request).subspan(split));
    EXPECT_FALSE(tracker.idle());
    EXPECT_TRUE(tracker.at_boundary());
    EXPECT_EQ(tracker.awaiting_replies(), 1u);
  }
  for (size_t split = 1; split < reply.size(); ++split) {
    InFlightTracker tracker;
    tracker.OnRequestBytes(request);
    tracker.OnReplyBytes(absl::MakeConstSpan(reply).first(split));
    EXPECT_FALSE(tracker.idle()) << "reply split at " << split;
    EXPECT_FALSE(tracker.at_boundary());
    tracker.OnReplyBytes(absl::MakeConstSpan(reply).subspan(split));
    EXPECT_TRUE(tracker.idle()) << "reply split at " << split;
    EXPECT_EQ(tracker.awaiting_replies(), 0u);
  }
}

TEST(InFlightTrackerTest, CountsSeveralMessagesInOneRead) {
  InFlightTracker tracker;
  // Two pipelined requests in one read, then their replies in one read with the start of a
  // third reply nobody asked for yet (a split reply must not count as delivered).
  tracker.OnRequestBytes(Concat({Request(), Request()}));
  EXPECT_EQ(tracker.awaiting_replies(), 2u);
  std::vector<uint8_t> third = Reply();
  std::vector<uint8_t> replies = Concat({Reply(), Reply()});
  replies.insert(replies.end(), third.begin(), third.begin() + 5);
  tracker.OnReplyBytes(replies);
  EXPECT_EQ(tracker.awaiting_replies(), 0u);
  EXPECT_FALSE(tracker.idle());
  tracker.OnReplyBytes(absl::MakeConstSpan(third).subspan(5));
  EXPECT_TRUE(tracker.idle());
}

TEST(InFlightTrackerTest, OneReplyAnswersOneOfTwoRequests) {
  InFlightTracker tracker;
  tracker.OnRequestBytes(Concat({Request(), Request()}));
  tracker.OnReplyBytes(Reply());
  EXPECT_FALSE(tracker.idle());
  EXPECT_TRUE(tracker.at_boundary());
  tracker.OnReplyBytes(Reply());
  EXPECT_TRUE(tracker.idle());
}

TEST(InFlightTrackerTest, AFireAndForgetWriteIsDoneWithItsLastByte) {
  std::vector<uint8_t> write = Request(kMsgMoreToCome);
  for (size_t split = 1; split < write.size(); ++split) {
    InFlightTracker tracker;
    FeedSplit(tracker, /*request=*/true, write, split);
    EXPECT_TRUE(tracker.idle()) << "split at " << split;
    EXPECT_EQ(tracker.awaiting_replies(), 0u);
  }
  // Legacy writes (OP_INSERT here) are never answered either.
  std::vector<uint8_t> insert = Request();
  insert[12] = 2002 & 0xFF;
  insert[13] = 2002 >> 8;
  InFlightTracker tracker;
  tracker.OnRequestBytes(insert);
  EXPECT_TRUE(tracker.idle());
}

TEST(InFlightTrackerTest, LegacyQueryAwaitsItsOpReply) {
  InFlightTracker tracker;
  tracker.OnRequestBytes(ReadTestData("pymongo_hello_op_query.bin"));
  EXPECT_FALSE(tracker.idle());
  tracker.OnReplyBytes(BuildOpReply(1, 1, BsonWriter().AppendDouble("ok", 1).Finish()));
  EXPECT_TRUE(tracker.idle());
}

TEST(InFlightTrackerTest, ExhaustStreamIsIdleBetweenRepliesAndNeverInsideOne) {
  InFlightTracker tracker;
  tracker.OnRequestBytes(Request(kMsgExhaustAllowed));
  EXPECT_FALSE(tracker.idle());
  std::vector<uint8_t> streamed = Reply(kMsgMoreToCome);
  for (int i = 0; i < 3; ++i) {
    tracker.OnReplyBytes(absl::MakeConstSpan(streamed).first(10));
    EXPECT_FALSE(tracker.idle()) << "inside reply " << i;
    tracker.OnReplyBytes(absl::MakeConstSpan(streamed).subspan(10));
    EXPECT_TRUE(tracker.idle()) << "after reply " << i;
    EXPECT_EQ(tracker.awaiting_replies(), 1u);  // the stream goes on
  }
  tracker.OnReplyBytes(Reply());  // the last reply, without moreToCome
  EXPECT_TRUE(tracker.idle());
  EXPECT_EQ(tracker.awaiting_replies(), 0u);
  // A new request after the stream ended is in flight again.
  tracker.OnRequestBytes(Request());
  EXPECT_FALSE(tracker.idle());
}

TEST(InFlightTrackerTest, ANewRequestEndsTheExhaustIdleness) {
  InFlightTracker tracker;
  tracker.OnRequestBytes(Request(kMsgExhaustAllowed));
  tracker.OnReplyBytes(Reply(kMsgMoreToCome));
  ASSERT_TRUE(tracker.idle());
  tracker.OnRequestBytes(Request());
  EXPECT_FALSE(tracker.idle());
}

TEST(InFlightTrackerTest, GarbageLosesTheFramingAndNeverLooksIdle) {
  InFlightTracker tracker;
  tracker.OnRequestBytes(Request());
  tracker.OnReplyBytes(Reply());
  ASSERT_TRUE(tracker.idle());
  std::vector<uint8_t> garbage(64, 0xEE);
  tracker.OnRequestBytes(garbage);
  EXPECT_TRUE(tracker.lost());
  EXPECT_FALSE(tracker.idle());
  EXPECT_FALSE(tracker.at_boundary());
  tracker.OnReplyBytes(Reply());
  EXPECT_FALSE(tracker.idle());
}

TEST(InFlightTrackerTest, CompressedRequestsAwaitOneReply) {
  // OP_COMPRESSED hides the wrapped flag bits: one reply is expected.
  std::vector<uint8_t> compressed = Request();
  compressed[12] = 2012 & 0xFF;
  compressed[13] = 2012 >> 8;
  InFlightTracker tracker;
  tracker.OnRequestBytes(compressed);
  EXPECT_FALSE(tracker.idle());
  std::vector<uint8_t> reply = Reply();
  reply[12] = 2012 & 0xFF;
  reply[13] = 2012 >> 8;
  tracker.OnReplyBytes(reply);
  EXPECT_TRUE(tracker.idle());
}

}  // namespace
}  // namespace sidecar::protocol
