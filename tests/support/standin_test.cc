#include "tests/support/standin.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/bson.h"
#include "tests/support/bson_builder.h"

namespace sidecar::support {
namespace {

using protocol::BsonElement;
using protocol::BsonView;

// Runs commands against one Standin and keeps every reply alive for the views it returns.
class StandinTest : public ::testing::Test {
 protected:
  BsonView Run(Document command, bool legacy = false) {
    commands_.push_back(std::move(command));
    CommandRequest request;
    request.body = *BsonView::Parse(commands_.back());
    request.legacy = legacy;
    request.legacy_db = "admin";
    request.connection_id = 7;
    request.peer = "127.0.0.1:5555";
    return Keep(standin_.Run(request));
  }

  BsonView Keep(Document reply) {
    replies_.push_back(std::move(reply));
    absl::StatusOr<BsonView> view = BsonView::Parse(replies_.back());
    EXPECT_TRUE(view.ok());
    return view.ok() ? *view : BsonView();
  }

  static double Ok(const BsonView& reply) { return reply.Find("ok")->AsDouble().value_or(-1); }

  static std::vector<BsonView> Batch(const BsonView& reply, std::string_view name) {
    std::vector<BsonView> documents;
    BsonView cursor = *reply.Find("cursor")->AsDocument();
    BsonView batch = *cursor.Find(name)->AsDocument();
    for (const BsonElement& element : batch) {
      documents.push_back(*element.AsDocument());
    }
    return documents;
  }

  static int64_t CursorId(const BsonView& reply) {
    return *reply.Find("cursor")->AsDocument()->Find("id")->AsInt64();
  }

  void InsertNumbers(int count) {
    BsonBuilder writer;
    writer.AppendString("insert", "numbers").StartArray("documents");
    for (int i = 0; i < count; ++i) {
      writer.StartDocument(writer.NextArrayKey()).AppendInt32("n", i).EndDocument();
    }
    writer.EndArray().AppendString("$db", "test");
    ASSERT_EQ(Ok(Run(writer.Finish())), 1.0);
  }

  Standin standin_{StandinOptions{}};
  std::vector<Document> commands_;
  std::vector<Document> replies_;
};

TEST_F(StandinTest, HelloReportsAWritablePrimaryModernDriversAccept) {
  BsonView reply = Run(BsonBuilder().AppendInt32("hello", 1).AppendString("$db", "admin").Finish());
  EXPECT_EQ(Ok(reply), 1.0);
  EXPECT_EQ(reply.Find("isWritablePrimary")->AsBool(), true);
  EXPECT_EQ(reply.Find("minWireVersion")->AsInt64(), 0);
  EXPECT_GE(*reply.Find("maxWireVersion")->AsInt64(), 17);
  EXPECT_EQ(reply.Find("connectionId")->AsInt64(), 7);
  EXPECT_TRUE(reply.Find("maxBsonObjectSize"));
  EXPECT_TRUE(reply.Find("logicalSessionTimeoutMinutes"));
  EXPECT_FALSE(reply.Find("setName"));
}

TEST_F(StandinTest, LegacyIsMasterSaysIsmaster) {
  BsonView reply = Run(BsonBuilder().AppendInt32("isMaster", 1).Finish(), /*legacy=*/true);
  EXPECT_EQ(Ok(reply), 1.0);
  EXPECT_EQ(reply.Find("ismaster")->AsBool(), true);
  EXPECT_FALSE(reply.Find("isWritablePrimary"));
}

TEST_F(StandinTest, ReplicaSetHelloAdvertisesItsOwnAddress) {
  Standin standin({.repl_set = "rs0", .advertised_address = "127.0.0.1:4242"});
  Document command = BsonBuilder().AppendInt32("hello", 1).AppendString("$db", "admin").Finish();
  CommandRequest request;
  request.body = *BsonView::Parse(command);
  BsonView reply = Keep(standin.Run(request));
  EXPECT_EQ(reply.Find("setName")->AsString(), "rs0");
  EXPECT_EQ(reply.Find("primary")->AsString(), "127.0.0.1:4242");
  EXPECT_EQ(reply.Find("hosts")->AsDocument()->First()->AsString(), "127.0.0.1:4242");
}

TEST_F(StandinTest, UnknownCommandIsCommandNotFound) {
  BsonView reply =
      Run(BsonBuilder().AppendInt32("atlasVersion", 1).AppendString("$db", "admin").Finish());
  EXPECT_EQ(Ok(reply), 0.0);
  EXPECT_EQ(reply.Find("code")->AsInt64(), 59);
  EXPECT_EQ(reply.Find("codeName")->AsString(), "CommandNotFound");
  EXPECT_EQ(reply.Find("errmsg")->AsString(), "no such command: 'atlasVersion'");
}

TEST_F(StandinTest, InsertedDocumentIsFoundByEqualityWithAGeneratedId) {
  Document insert = BsonBuilder()
                        .AppendString("insert", "people")
                        .StartArray("documents")
                        .StartDocument("0")
                        .AppendString("name", "ada")
                        .AppendInt32("age", 36)
                        .EndDocument()
                        .StartDocument("1")
                        .AppendString("name", "alan")
                        .EndDocument()
                        .EndArray()
                        .AppendString("$db", "test")
                        .Finish();
  BsonView inserted = Run(insert);
  EXPECT_EQ(inserted.Find("n")->AsInt64(), 2);

  // 36.0 matches the stored int32 36: numbers compare across types, as in MongoDB.
  BsonView found = Run(BsonBuilder()
                           .AppendString("find", "people")
                           .StartDocument("filter")
                           .AppendDouble("age", 36.0)
                           .EndDocument()
                           .AppendString("$db", "test")
                           .Finish());
  std::vector<BsonView> batch = Batch(found, "firstBatch");
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].First()->key(), "_id");
  EXPECT_EQ(batch[0].First()->type(), protocol::BsonType::kObjectId);
  EXPECT_EQ(batch[0].Find("name")->AsString(), "ada");
  EXPECT_EQ(CursorId(found), 0);
}

TEST_F(StandinTest, InsertTakesAKindOneDocumentSequence) {
  Document command = BsonBuilder().AppendString("insert", "seq").AppendString("$db", "t").Finish();
  Document a = BsonBuilder().AppendInt32("_id", 1).Finish();
  Document b = BsonBuilder().AppendInt32("_id", 2).Finish();
  CommandRequest request;
  request.body = *BsonView::Parse(command);
  request.sequences.push_back({"documents", {*BsonView::Parse(a), *BsonView::Parse(b)}});
  BsonView reply = Keep(standin_.Run(request));
  EXPECT_EQ(reply.Find("n")->AsInt64(), 2);
}

TEST_F(StandinTest, DuplicateIdIsAWriteError) {
  Document insert = BsonBuilder()
                        .AppendString("insert", "dups")
                        .StartArray("documents")
                        .StartDocument("0")
                        .AppendInt32("_id", 1)
                        .EndDocument()
                        .StartDocument("1")
                        .AppendInt32("_id", 1)
                        .EndDocument()
                        .EndArray()
                        .AppendString("$db", "test")
                        .Finish();
  BsonView reply = Run(insert);
  EXPECT_EQ(reply.Find("n")->AsInt64(), 1);
  BsonView error = *reply.Find("writeErrors")->AsDocument()->First()->AsDocument();
  EXPECT_EQ(error.Find("code")->AsInt64(), 11000);
  EXPECT_EQ(error.Find("index")->AsInt64(), 1);
}

TEST_F(StandinTest, CursorReturnsEveryDocumentAcrossGetMores) {
  InsertNumbers(250);
  BsonView first = Run(BsonBuilder()
                           .AppendString("find", "numbers")
                           .AppendInt32("batchSize", 100)
                           .AppendString("$db", "test")
                           .Finish());
  EXPECT_EQ(Batch(first, "firstBatch").size(), 100u);
  int64_t id = CursorId(first);
  ASSERT_NE(id, 0);
  BsonView second = Run(BsonBuilder()
                            .AppendInt64("getMore", id)
                            .AppendString("collection", "numbers")
                            .AppendInt32("batchSize", 100)
                            .AppendString("$db", "test")
                            .Finish());
  EXPECT_EQ(Batch(second, "nextBatch").size(), 100u);
  EXPECT_EQ(CursorId(second), id);
  BsonView last = Run(BsonBuilder()
                          .AppendInt64("getMore", id)
                          .AppendString("collection", "numbers")
                          .AppendString("$db", "test")
                          .Finish());
  std::vector<BsonView> rest = Batch(last, "nextBatch");
  ASSERT_EQ(rest.size(), 50u);
  EXPECT_EQ(rest.back().Find("n")->AsInt64(), 249);
  EXPECT_EQ(CursorId(last), 0);

  BsonView gone = Run(BsonBuilder()
                          .AppendInt64("getMore", id)
                          .AppendString("collection", "numbers")
                          .AppendString("$db", "test")
                          .Finish());
  EXPECT_EQ(gone.Find("codeName")->AsString(), "CursorNotFound");
}

TEST_F(StandinTest, FindSortsSkipsAndLimits) {
  InsertNumbers(10);
  BsonView reply = Run(BsonBuilder()
                           .AppendString("find", "numbers")
                           .StartDocument("filter")
                           .StartDocument("n")
                           .AppendInt32("$gte", 2)
                           .EndDocument()
                           .EndDocument()
                           .StartDocument("sort")
                           .AppendInt32("n", -1)
                           .EndDocument()
                           .AppendInt32("skip", 1)
                           .AppendInt32("limit", 3)
                           .AppendString("$db", "test")
                           .Finish());
  std::vector<BsonView> batch = Batch(reply, "firstBatch");
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].Find("n")->AsInt64(), 8);
  EXPECT_EQ(batch[2].Find("n")->AsInt64(), 6);
}

TEST_F(StandinTest, UpdateSetsFieldsAndUpserts) {
  InsertNumbers(3);
  BsonView updated = Run(BsonBuilder()
                             .AppendString("update", "numbers")
                             .StartArray("updates")
                             .StartDocument("0")
                             .StartDocument("q")
                             .AppendInt32("n", 1)
                             .EndDocument()
                             .StartDocument("u")
                             .StartDocument("$set")
                             .AppendString("label", "one")
                             .EndDocument()
                             .EndDocument()
                             .EndDocument()
                             .StartDocument("1")
                             .StartDocument("q")
                             .AppendInt32("n", 99)
                             .EndDocument()
                             .StartDocument("u")
                             .StartDocument("$set")
                             .AppendString("label", "new")
                             .EndDocument()
                             .EndDocument()
                             .AppendBool("upsert", true)
                             .EndDocument()
                             .EndArray()
                             .AppendString("$db", "test")
                             .Finish());
  EXPECT_EQ(Ok(updated), 1.0);
  EXPECT_EQ(updated.Find("n")->AsInt64(), 2);
  EXPECT_EQ(updated.Find("nModified")->AsInt64(), 1);
  EXPECT_TRUE(updated.Find("upserted"));

  BsonView found = Run(BsonBuilder()
                           .AppendString("find", "numbers")
                           .StartDocument("filter")
                           .AppendString("label", "new")
                           .EndDocument()
                           .AppendString("$db", "test")
                           .Finish());
  std::vector<BsonView> batch = Batch(found, "firstBatch");
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].Find("n")->AsInt64(), 99);  // from the query, as MongoDB does
  EXPECT_EQ(batch[0].First()->key(), "_id");
}

TEST_F(StandinTest, DeleteRemovesOneOrAllMatches) {
  InsertNumbers(5);
  BsonView one = Run(BsonBuilder()
                         .AppendString("delete", "numbers")
                         .StartArray("deletes")
                         .StartDocument("0")
                         .StartDocument("q")
                         .EndDocument()
                         .AppendInt32("limit", 1)
                         .EndDocument()
                         .EndArray()
                         .AppendString("$db", "test")
                         .Finish());
  EXPECT_EQ(one.Find("n")->AsInt64(), 1);
  BsonView all = Run(BsonBuilder()
                         .AppendString("delete", "numbers")
                         .StartArray("deletes")
                         .StartDocument("0")
                         .StartDocument("q")
                         .EndDocument()
                         .AppendInt32("limit", 0)
                         .EndDocument()
                         .EndArray()
                         .AppendString("$db", "test")
                         .Finish());
  EXPECT_EQ(all.Find("n")->AsInt64(), 4);
}

TEST_F(StandinTest, CountDocumentsPipelineCounts) {
  InsertNumbers(7);
  BsonView reply = Run(BsonBuilder()
                           .AppendString("aggregate", "numbers")
                           .StartArray("pipeline")
                           .StartDocument("0")
                           .StartDocument("$match")
                           .StartDocument("n")
                           .AppendInt32("$lt", 5)
                           .EndDocument()
                           .EndDocument()
                           .EndDocument()
                           .StartDocument("1")
                           .StartDocument("$group")
                           .AppendInt32("_id", 1)
                           .StartDocument("n")
                           .AppendInt32("$sum", 1)
                           .EndDocument()
                           .EndDocument()
                           .EndDocument()
                           .EndArray()
                           .StartDocument("cursor")
                           .EndDocument()
                           .AppendString("$db", "test")
                           .Finish());
  std::vector<BsonView> batch = Batch(reply, "firstBatch");
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].Find("n")->AsInt64(), 5);
}

TEST_F(StandinTest, UnsupportedQueryIsAnErrorNotAWrongAnswer) {
  InsertNumbers(1);
  BsonView reply = Run(BsonBuilder()
                           .AppendString("find", "numbers")
                           .StartDocument("filter")
                           .StartDocument("n")
                           .AppendString("$regex", "x")
                           .EndDocument()
                           .EndDocument()
                           .AppendString("$db", "test")
                           .Finish());
  EXPECT_EQ(Ok(reply), 0.0);
  EXPECT_EQ(reply.Find("codeName")->AsString(), "BadValue");
}

}  // namespace
}  // namespace sidecar::support
