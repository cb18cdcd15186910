// The upstream probe's bytes: the hello it sends and what it reads from mongod's reply.
#include "protocol/hello_probe.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/bson.h"
#include "protocol/wire.h"
#include "tests/support/bson_builder.h"

namespace sidecar::protocol {
namespace {

using support::BsonBuilder;

std::vector<uint8_t> HelloReply(BsonBuilder& writer) {
  std::vector<uint8_t> body = writer.Finish();
  return BuildOpMsg(7, 1, body);
}

std::vector<uint8_t> ReplicaSetReply() {
  BsonBuilder writer;
  writer.AppendBool("isWritablePrimary", true).AppendString("setName", "rs0");
  writer.StartArray("hosts").AppendString("0", "a:27017").AppendString("1", "b:27017").EndArray();
  writer.StartArray("arbiters").AppendString("0", "c:27017").EndArray();
  writer.AppendString("me", "a:27017").AppendInt32("maxWireVersion", 21).AppendDouble("ok", 1);
  return HelloReply(writer);
}

TEST(HelloProbeTest, ParsesHostsOfAReplicaSetHello) {
  auto summary = ParseHelloReply(ReplicaSetReply());
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->set_name, "rs0");
  EXPECT_EQ(summary->me, "a:27017");
  EXPECT_EQ(summary->hosts, (std::vector<std::string>{"a:27017", "b:27017", "c:27017"}));
  EXPECT_TRUE(summary->writable_primary);
  EXPECT_EQ(summary->max_wire_version, 21);
}

TEST(HelloProbeTest, AnErrorReplyCarriesItsMessage) {
  BsonBuilder writer;
  writer.AppendDouble("ok", 0).AppendString("errmsg", "not now");
  auto summary = ParseHelloReply(HelloReply(writer));
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(std::string(summary.status().message()).find("not now"), std::string::npos);
  std::vector<uint8_t> truncated = HelloReply(writer.AppendDouble("ok", 1));
  truncated.pop_back();
  EXPECT_FALSE(ParseHelloReply(truncated).ok());
}

TEST(HelloProbeTest, TheProbeIsAnOpMsgHelloOnAdmin) {
  std::vector<uint8_t> probe = BuildHelloProbe(42);
  auto msg = ParseOpMsg(probe);
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->header.request_id, 42);
  EXPECT_EQ(msg->header.response_to, 0);
  EXPECT_TRUE(msg->sequences.empty());
  auto body = BsonView::Parse(msg->body);
  ASSERT_TRUE(body.ok()) << body.status();
  // mongod takes the command's name from the first key.
  auto first = body->begin();
  ASSERT_NE(first, body->end());
  EXPECT_EQ((*first).key(), "hello");
  EXPECT_EQ(body->Find("hello")->AsInt32(), 1);
  EXPECT_EQ(body->Find("$db")->AsString(), "admin");
}

TEST(HelloProbeTest, AStandaloneHasNoSetNorHosts) {
  BsonBuilder writer;
  writer.AppendBool("isWritablePrimary", true).AppendInt32("maxWireVersion", 17);
  writer.AppendDouble("ok", 1);
  auto summary = ParseHelloReply(HelloReply(writer));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->set_name, "");
  EXPECT_EQ(summary->me, "");
  EXPECT_TRUE(summary->hosts.empty());
  EXPECT_EQ(summary->max_wire_version, 17);
}

TEST(HelloProbeTest, PassivesComeAfterHostsAndTheLegacyIsMasterCounts) {
  BsonBuilder writer;
  writer.AppendBool("ismaster", false);
  writer.StartArray("passives").AppendString("0", "p:27017").EndArray();
  writer.StartArray("hosts").AppendString("0", "h:27017").EndArray();
  writer.AppendInt32("ok", 1);  // mongod answers ok as a double, but any number 1 is ok
  auto summary = ParseHelloReply(HelloReply(writer));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->hosts, (std::vector<std::string>{"h:27017", "p:27017"}));
  EXPECT_FALSE(summary->writable_primary);
}

TEST(HelloProbeTest, AnOpReplyFromAnOldServerIsRead) {
  BsonBuilder writer;
  writer.AppendBool("ismaster", true).AppendString("setName", "old").AppendDouble("ok", 1);
  std::vector<uint8_t> document = writer.Finish();
  auto summary = ParseHelloReply(BuildOpReply(9, 1, document));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->set_name, "old");
  EXPECT_TRUE(summary->writable_primary);
}

TEST(HelloProbeTest, AnyOtherOpcodeIsAnErrorNamingIt) {
  BsonBuilder writer;
  writer.AppendInt32("hello", 1);
  std::vector<uint8_t> document = writer.Finish();
  auto summary = ParseHelloReply(BuildOpQuery(1, "admin.$cmd", document));
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(std::string(summary.status().message()).find("OP_QUERY"), std::string::npos)
      << summary.status();
}

TEST(HelloProbeTest, EveryProperPrefixIsAnError) {
  std::vector<uint8_t> reply = ReplicaSetReply();
  for (size_t size = 0; size < reply.size(); ++size) {
    EXPECT_FALSE(ParseHelloReply(absl::MakeConstSpan(reply.data(), size)).ok()) << size;
  }
}

TEST(HelloProbeTest, TrailingBytesAfterTheMessageAreAnError) {
  std::vector<uint8_t> reply = ReplicaSetReply();
  reply.push_back(0);
  EXPECT_FALSE(ParseHelloReply(reply).ok());
}

TEST(HelloProbeTest, GarbageAndOversizedLengthsAreErrors) {
  std::vector<uint8_t> garbage(64, 0xAB);
  EXPECT_FALSE(ParseHelloReply(garbage).ok());
  std::vector<uint8_t> reply = ReplicaSetReply();
  reply[3] = 0x7F;  // message length far beyond the bytes there are
  EXPECT_FALSE(ParseHelloReply(reply).ok());
  EXPECT_FALSE(ParseHelloReply({}).ok());
}

TEST(HelloProbeTest, NonStringHostsAreSkippedAndAWrongTypedListIgnored) {
  BsonBuilder writer;
  writer.StartArray("hosts").AppendInt32("0", 5).AppendString("1", "b:1").EndArray();
  writer.AppendString("arbiters", "not a list").AppendDouble("ok", 1);
  auto summary = ParseHelloReply(HelloReply(writer));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->hosts, (std::vector<std::string>{"b:1"}));
}

}  // namespace
}  // namespace sidecar::protocol
