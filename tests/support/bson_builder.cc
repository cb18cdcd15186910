#include "tests/support/bson_builder.h"

#include <cstring>
#include <utility>

#include "protocol/byte_reader.h"

namespace sidecar::support {

using protocol::AppendLittleEndian;
using protocol::BsonType;
using protocol::StoreLittleEndianI32;

BsonBuilder::BsonBuilder() { Begin(); }

void BsonBuilder::Begin() {
  out_.clear();
  open_.clear();
  open_.push_back({0, 0});
  AppendLittleEndian<int32_t>(out_, 0);  // length, filled in by Finish
}

BsonBuilder& BsonBuilder::AppendEncoded(protocol::BsonWriter& element) {
  // The writer's document is [length][element][NUL]: the element is what lies between.
  std::vector<uint8_t> document = element.Finish();
  out_.insert(out_.end(), document.begin() + 4, document.end() - 1);
  ++open_.back().elements;
  return *this;
}

BsonBuilder& BsonBuilder::Append(BsonType type, std::string_view key,
                                 absl::Span<const uint8_t> value) {
  protocol::BsonWriter element;
  element.AppendValue(type, key, value);
  return AppendEncoded(element);
}

BsonBuilder& BsonBuilder::AppendDouble(std::string_view key, double value) {
  protocol::BsonWriter element;
  element.AppendDouble(key, value);
  return AppendEncoded(element);
}

BsonBuilder& BsonBuilder::AppendString(std::string_view key, std::string_view value) {
  protocol::BsonWriter element;
  element.AppendString(key, value);
  return AppendEncoded(element);
}

BsonBuilder& BsonBuilder::AppendInt32(std::string_view key, int32_t value) {
  protocol::BsonWriter element;
  element.AppendInt32(key, value);
  return AppendEncoded(element);
}

BsonBuilder& BsonBuilder::AppendInt64(std::string_view key, int64_t value) {
  std::vector<uint8_t> bytes;
  AppendLittleEndian(bytes, value);
  return Append(BsonType::kInt64, key, bytes);
}

BsonBuilder& BsonBuilder::AppendBool(std::string_view key, bool value) {
  const uint8_t byte = value ? 1 : 0;
  return Append(BsonType::kBool, key, absl::MakeConstSpan(&byte, 1));
}

BsonBuilder& BsonBuilder::AppendNull(std::string_view key) {
  return Append(BsonType::kNull, key, {});
}

BsonBuilder& BsonBuilder::AppendMinKey(std::string_view key) {
  return Append(BsonType::kMinKey, key, {});
}

BsonBuilder& BsonBuilder::AppendMaxKey(std::string_view key) {
  return Append(BsonType::kMaxKey, key, {});
}

BsonBuilder& BsonBuilder::AppendDateTime(std::string_view key, int64_t milliseconds_since_epoch) {
  std::vector<uint8_t> bytes;
  AppendLittleEndian(bytes, milliseconds_since_epoch);
  return Append(BsonType::kDateTime, key, bytes);
}

BsonBuilder& BsonBuilder::AppendObjectId(std::string_view key, std::span<const uint8_t, 12> oid) {
  return Append(BsonType::kObjectId, key, absl::MakeConstSpan(oid.data(), oid.size()));
}

BsonBuilder& BsonBuilder::AppendTimestamp(std::string_view key, uint32_t t, uint32_t i) {
  // The increment comes first on the wire, then the seconds.
  std::vector<uint8_t> bytes;
  AppendLittleEndian(bytes, i);
  AppendLittleEndian(bytes, t);
  return Append(BsonType::kTimestamp, key, bytes);
}

BsonBuilder& BsonBuilder::AppendBinary(std::string_view key, uint8_t subtype,
                                       absl::Span<const uint8_t> data) {
  std::vector<uint8_t> bytes;
  AppendLittleEndian<int32_t>(bytes, static_cast<int32_t>(data.size()));
  bytes.push_back(subtype);
  bytes.insert(bytes.end(), data.begin(), data.end());
  return Append(BsonType::kBinary, key, bytes);
}

BsonBuilder& BsonBuilder::AppendDecimal128(std::string_view key, std::span<const uint8_t, 16> raw) {
  return Append(BsonType::kDecimal128, key, absl::MakeConstSpan(raw.data(), raw.size()));
}

BsonBuilder& BsonBuilder::AppendDocument(std::string_view key, const protocol::BsonView& document) {
  return Append(BsonType::kDocument, key, document.bytes());
}

BsonBuilder& BsonBuilder::AppendArray(std::string_view key, const protocol::BsonView& array) {
  return Append(BsonType::kArray, key, array.bytes());
}

BsonBuilder& BsonBuilder::AppendElement(const protocol::BsonElement& element) {
  return AppendElement(element.key(), element);
}

BsonBuilder& BsonBuilder::AppendElement(std::string_view key,
                                        const protocol::BsonElement& element) {
  return Append(element.type(), key, element.value_bytes());
}

BsonBuilder& BsonBuilder::Start(BsonType type, std::string_view key) {
  Append(type, key, {});  // the header; the value follows, its length filled in at the end
  open_.push_back({out_.size(), 0});
  AppendLittleEndian<int32_t>(out_, 0);
  return *this;
}

BsonBuilder& BsonBuilder::StartDocument(std::string_view key) {
  return Start(BsonType::kDocument, key);
}

BsonBuilder& BsonBuilder::StartArray(std::string_view key) { return Start(BsonType::kArray, key); }

BsonBuilder& BsonBuilder::EndDocument() {
  if (open_.size() <= 1) {
    return *this;  // the top-level document is closed by Finish
  }
  out_.push_back(0);
  StoreLittleEndianI32(out_, open_.back().start,
                       static_cast<int32_t>(out_.size() - open_.back().start));
  open_.pop_back();
  return *this;
}

std::string BsonBuilder::NextArrayKey() const { return std::to_string(open_.back().elements); }

std::vector<uint8_t> BsonBuilder::Finish() {
  while (open_.size() > 1) {
    EndDocument();
  }
  out_.push_back(0);
  StoreLittleEndianI32(out_, 0, static_cast<int32_t>(out_.size()));
  std::vector<uint8_t> document = std::move(out_);
  Begin();
  return document;
}

}  // namespace sidecar::support
