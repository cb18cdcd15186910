#include "protocol/bson.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/protocol/test_util.h"
#include "tests/support/bson_builder.h"

namespace sidecar::protocol {
namespace {

using support::BsonBuilder;

using testing::Bytes;
using testing::ReadTestData;

constexpr std::array<uint8_t, 12> kOid = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                                          0xcd, 0xef, 0x01, 0x23, 0x45, 0x67};

std::vector<uint8_t> EveryType() {
  std::array<uint8_t, 16> decimal = {};
  decimal[0] = 0x7D;
  decimal[14] = 0x3C;
  decimal[15] = 0x30;
  const std::vector<uint8_t> payload = {0, 1, 2};
  BsonBuilder writer;
  writer.AppendDouble("double", 1.5)
      .AppendString("string", "h\xC3\xA9llo")
      .StartDocument("doc")
      .AppendInt32("a", 1)
      .StartDocument("b")
      .AppendString("c", "deep")
      .EndDocument()
      .EndDocument()
      .StartArray("array")
      .AppendInt32("0", 1)
      .AppendString("1", "two")
      .AppendDouble("2", 3.0)
      .EndArray()
      .AppendBinary("binary", 4, payload)
      .AppendObjectId("oid", kOid)
      .AppendBool("t", true)
      .AppendBool("f", false)
      .AppendDateTime("date", 1704164645678)
      .AppendNull("null")
      .AppendInt32("int32", -7)
      .AppendTimestamp("ts", 1700000000, 42)
      .AppendInt64("int64", int64_t{1} << 40)
      .AppendDecimal128("dec", decimal)
      .AppendMinKey("min")
      .AppendMaxKey("max");
  return writer.Finish();
}

TEST(BsonTest, RoundTripsEveryWrittenType) {
  std::vector<uint8_t> bytes = EveryType();
  absl::StatusOr<BsonView> view = BsonView::Parse(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->bytes().size(), bytes.size());
  EXPECT_EQ(view->Find("double")->AsDouble(), 1.5);
  EXPECT_EQ(view->Find("string")->AsString(), "h\xC3\xA9llo");
  std::optional<BsonView> doc = view->Find("doc")->AsDocument();
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->Find("a")->AsInt64(), 1);
  EXPECT_EQ(doc->Find("b")->AsDocument()->Find("c")->AsString(), "deep");
  std::optional<BsonElement> array = view->Find("array");
  EXPECT_EQ(array->type(), BsonType::kArray);
  std::vector<std::string> keys;
  // A named view: a range-for over *array->AsDocument() would iterate a destroyed temporary.
  BsonView array_view = *array->AsDocument();
  for (const BsonElement& element : array_view) {
    keys.emplace_back(element.key());
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"0", "1", "2"}));
  uint8_t subtype = 0;
  std::optional<absl::Span<const uint8_t>> binary = view->Find("binary")->AsBinary(&subtype);
  ASSERT_TRUE(binary.has_value());
  EXPECT_EQ(subtype, 4);
  EXPECT_EQ(std::vector<uint8_t>(binary->begin(), binary->end()), Bytes({0, 1, 2}));
  std::optional<absl::Span<const uint8_t>> oid = view->Find("oid")->AsObjectId();
  ASSERT_TRUE(oid.has_value());
  EXPECT_TRUE(std::equal(oid->begin(), oid->end(), kOid.begin(), kOid.end()));
  EXPECT_EQ(view->Find("t")->AsBool(), true);
  EXPECT_EQ(view->Find("f")->AsBool(), false);
  EXPECT_EQ(view->Find("date")->AsDateTime(), 1704164645678);
  EXPECT_TRUE(view->Find("null")->IsNull());
  EXPECT_EQ(view->Find("int32")->AsInt64(), -7);
  std::optional<BsonElement::Timestamp> ts = view->Find("ts")->AsTimestamp();
  ASSERT_TRUE(ts.has_value());
  EXPECT_EQ(ts->t, 1700000000u);
  EXPECT_EQ(ts->i, 42u);
  EXPECT_EQ(view->Find("int64")->AsInt64(), int64_t{1} << 40);
  EXPECT_EQ(view->Find("dec")->type(), BsonType::kDecimal128);
  EXPECT_EQ(view->Find("dec")->value_bytes().size(), 16u);
  EXPECT_EQ(view->Find("min")->type(), BsonType::kMinKey);
  EXPECT_EQ(view->Find("max")->type(), BsonType::kMaxKey);
  EXPECT_EQ(view->First()->key(), "double");
  EXPECT_FALSE(view->Find("absent").has_value());
  EXPECT_EQ(view->size(), 16u);
}

TEST(BsonTest, WritesTheSameBytesAsPymongo) {
  // pymongo_all_types.bson holds the same document as EveryType, plus a regex and a
  // JavaScript code value that the writer has no Append for; pymongo encoded it.
  std::vector<uint8_t> pymongo = ReadTestData("pymongo_all_types.bson");
  absl::StatusOr<BsonView> view = BsonView::Parse(pymongo);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->Find("regex")->type(), BsonType::kRegex);
  EXPECT_EQ(view->Find("code")->AsString(), "function(){}");
  EXPECT_EQ(view->Find("date")->AsDateTime(), 1704164645678);
  EXPECT_EQ(view->Find("ts")->AsTimestamp()->t, 1700000000u);
  // Without regex and code, pymongo's document is byte for byte what our typed Append
  // calls wrote in EveryType.
  BsonBuilder writer;
  for (const BsonElement& element : *view) {
    if (element.key() != "regex" && element.key() != "code") {
      writer.AppendElement(element);
    }
  }
  EXPECT_EQ(writer.Finish(), EveryType());
  // And a copy of every element reproduces pymongo's bytes exactly.
  BsonBuilder copy;
  for (const BsonElement& element : *view) {
    copy.AppendElement(element);
  }
  EXPECT_EQ(copy.Finish(), pymongo);
}

TEST(BsonTest, AppendElementCanRenameAndAppendDocumentCopiesRaw) {
  std::vector<uint8_t> inner = BsonBuilder().AppendInt32("x", 1).Finish();
  BsonView inner_view = *BsonView::Parse(inner);
  std::vector<uint8_t> array = BsonBuilder().AppendString("0", "a").Finish();
  std::vector<uint8_t> outer = BsonBuilder()
                                   .AppendDocument("d", inner_view)
                                   .AppendArray("a", *BsonView::Parse(array))
                                   .AppendElement("renamed", *inner_view.First())
                                   .Finish();
  absl::StatusOr<BsonView> view = BsonView::Parse(outer);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->Find("d")->type(), BsonType::kDocument);
  EXPECT_EQ(view->Find("a")->type(), BsonType::kArray);
  EXPECT_EQ(view->Find("renamed")->AsInt64(), 1);
  auto d = view->Find("d")->AsDocument()->bytes();
  EXPECT_EQ(std::vector<uint8_t>(d.begin(), d.end()), inner);
}

TEST(BsonTest, NumbersArraysAndCutsKeysAtNul) {
  BsonBuilder writer;
  writer.StartArray("list");
  EXPECT_EQ(writer.NextArrayKey(), "0");
  writer.AppendInt32(writer.NextArrayKey(), 10);
  writer.AppendInt32(writer.NextArrayKey(), 11);
  EXPECT_EQ(writer.NextArrayKey(), "2");
  writer.EndArray();
  writer.AppendInt32(std::string_view("ab\0cd", 5), 1);
  writer.StartDocument("open");  // left open: Finish closes it
  std::vector<uint8_t> bytes = writer.Finish();
  absl::StatusOr<BsonView> view = BsonView::Parse(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->Find("list")->AsDocument()->Find("1")->AsInt64(), 11);
  EXPECT_EQ(view->Find("ab")->AsInt64(), 1);
  EXPECT_TRUE(view->Find("open")->AsDocument()->empty());
  // The writer is reusable after Finish.
  EXPECT_EQ(writer.Finish(), Bytes({5, 0, 0, 0, 0}));
}

TEST(BsonTest, ReadsNumbersAsTheirCallerNeedsThem) {
  std::vector<uint8_t> bytes = BsonBuilder()
                                   .AppendDouble("integral", 42.0)
                                   .AppendDouble("fraction", 1.5)
                                   .AppendDouble("nan", std::nan(""))
                                   .AppendDouble("huge", 1e20)
                                   .AppendInt64("big", int64_t{1} << 40)
                                   .AppendInt32("zero", 0)
                                   .AppendBool("yes", true)
                                   .AppendString("text", "1")
                                   .Finish();
  BsonView view = *BsonView::Parse(bytes);
  EXPECT_EQ(view.Find("integral")->AsInt64(), 42);
  EXPECT_EQ(view.Find("fraction")->AsInt64(), std::nullopt);
  EXPECT_EQ(view.Find("nan")->AsInt64(), std::nullopt);
  EXPECT_EQ(view.Find("huge")->AsInt64(), std::nullopt);
  EXPECT_EQ(view.Find("big")->AsInt32(), std::nullopt);
  EXPECT_EQ(view.Find("big")->AsDouble(), 1099511627776.0);
  EXPECT_EQ(view.Find("text")->AsInt64(), std::nullopt);
  EXPECT_EQ(view.Find("yes")->AsDouble(), std::nullopt);
  EXPECT_TRUE(view.Find("integral")->IsTrue());
  EXPECT_TRUE(view.Find("yes")->IsTrue());
  EXPECT_FALSE(view.Find("zero")->IsTrue());
  EXPECT_FALSE(view.Find("text")->IsTrue());
  EXPECT_EQ(view.Find("text")->AsBool(), std::nullopt);
}

TEST(BsonTest, RejectsEveryTruncationOfAValidDocument) {
  std::vector<uint8_t> bytes = EveryType();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + n);
    EXPECT_FALSE(BsonView::Parse(truncated).ok()) << "parsed a prefix of " << n << " bytes";
    EXPECT_FALSE(BsonView::ParsePrefix(truncated).ok()) << n;
  }
}

TEST(BsonTest, ParsePrefixStopsAtTheDeclaredLength) {
  std::vector<uint8_t> bytes = EveryType();
  size_t document_size = bytes.size();
  bytes.insert(bytes.end(), {1, 2, 3});
  EXPECT_FALSE(BsonView::Parse(bytes).ok());
  absl::StatusOr<BsonView> view = BsonView::ParsePrefix(bytes);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->bytes().size(), document_size);
}

struct MalformedCase {
  const char* name;
  std::vector<uint8_t> bytes;
};

class BsonMalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(BsonMalformedTest, RejectsMalformedDocument) {
  EXPECT_FALSE(BsonView::Parse(GetParam().bytes).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, BsonMalformedTest,
    ::testing::Values(
        MalformedCase{"Empty", {}}, MalformedCase{"LengthBelowFive", Bytes({4, 0, 0, 0})},
        MalformedCase{"LengthAboveInput", Bytes({6, 0, 0, 0, 0})},
        MalformedCase{"NegativeLength", Bytes({0xFF, 0xFF, 0xFF, 0xFF, 0})},
        MalformedCase{"NoTerminator", Bytes({5, 0, 0, 0, 1})},
        MalformedCase{"NulTypeInside", Bytes({7, 0, 0, 0, 0, 0, 0})},
        MalformedCase{"KeyRunsPastEnd", Bytes({8, 0, 0, 0, 0x0A, 'a', 'b', 0})},
        MalformedCase{"UnknownType", Bytes({8, 0, 0, 0, 0x20, 'a', 0, 0})},
        MalformedCase{"BoolNotZeroOrOne", Bytes({9, 0, 0, 0, 0x08, 'b', 0, 2, 0})},
        MalformedCase{"Int32Truncated", Bytes({10, 0, 0, 0, 0x10, 'i', 0, 1, 0, 0})},
        MalformedCase{"StringLengthZero", Bytes({13, 0, 0, 0, 0x02, 's', 0, 0, 0, 0, 0, 0, 0})},
        MalformedCase{"StringLengthHuge",
                      Bytes({13, 0, 0, 0, 0x02, 's', 0, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0})},
        MalformedCase{"StringLengthNegative",
                      Bytes({13, 0, 0, 0, 0x02, 's', 0, 0xFE, 0xFF, 0xFF, 0xFF, 0, 0})},
        MalformedCase{"StringWithoutNul",
                      Bytes({14, 0, 0, 0, 0x02, 's', 0, 2, 0, 0, 0, 'a', 'b', 0})},
        MalformedCase{"BinaryNegativeLength",
                      Bytes({14, 0, 0, 0, 0x05, 'b', 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0})},
        MalformedCase{"EmbeddedLongerThanParent",
                      Bytes({12, 0, 0, 0, 0x03, 'd', 0, 9, 0, 0, 0, 0})},
        MalformedCase{"EmbeddedBadTerminator",
                      Bytes({13, 0, 0, 0, 0x03, 'd', 0, 5, 0, 0, 0, 1, 0})},
        MalformedCase{"RegexWithoutOptionsNul", Bytes({10, 0, 0, 0, 0x0B, 'r', 0, 'a', 0, 'i'})}),
    [](const auto& info) { return std::string(info.param.name); });

std::vector<uint8_t> Nested(int depth) {
  BsonBuilder writer;
  for (int i = 0; i < depth; ++i) {
    writer.StartDocument("d");
  }
  return writer.Finish();
}

TEST(BsonTest, RejectsNestingDeeperThanTheLimit) {
  EXPECT_TRUE(BsonView::Parse(Nested(kMaxBsonDepth)).ok());
  EXPECT_FALSE(BsonView::Parse(Nested(kMaxBsonDepth + 1)).ok());
  EXPECT_FALSE(BsonView::Parse(Nested(100000)).ok());
}

TEST(BsonTest, DefaultViewIsTheEmptyDocument) {
  BsonView empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.begin(), empty.end());
  EXPECT_FALSE(empty.First().has_value());
  EXPECT_EQ(empty.size(), 0u);
}

TEST(BsonTest, ForEachStopsWhenAsked) {
  std::vector<uint8_t> bytes = EveryType();
  BsonView view = *BsonView::Parse(bytes);
  int seen = 0;
  view.ForEach([&](const BsonElement& element) {
    ++seen;
    return element.key() != "array";
  });
  EXPECT_EQ(seen, 4);
}

}  // namespace
}  // namespace sidecar::protocol
