#include "tests/support/bson_builder.h"

#include <cstring>
#include <utility>

#include "protocol/byte_reader.h"

namespace sidecar::support {

using protocol::AppendLittleEndian;
using protocol::BsonType;

BsonBuilder::BsonBuilder() { open_.emplace_back(); }

BsonBuilder& BsonBuilder::Append(BsonType type, std::string_view key,
                                 absl::Span<const uint8_t> value) {
  open_.back().writer.AppendValue(type, key, value);
  ++open_.back().elements;
  return *this;
}

BsonBuilder& BsonBuilder::AppendDouble(std::string_view key, double value) {
  open_.back().writer.AppendDouble(key, value);
  ++open_.back().elements;
  return *this;
}

BsonBuilder& BsonBuilder::AppendString(std::string_view key, std::string_view value) {
  open_.back().writer.AppendString(key, value);
  ++open_.back().elements;
  return *this;
}

BsonBuilder& BsonBuilder::AppendInt32(std::string_view key, int32_t value) {
  open_.back().writer.AppendInt32(key, value);
  ++open_.back().elements;
  return *this;
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
  Level level;
  level.type = type;
  level.key = std::string(key);
  open_.push_back(std::move(level));
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
  Level closed = std::move(open_.back());
  open_.pop_back();
  return Append(closed.type, closed.key, closed.writer.Finish());
}

std::string BsonBuilder::NextArrayKey() const { return std::to_string(open_.back().elements); }

std::vector<uint8_t> BsonBuilder::Finish() {
  while (open_.size() > 1) {
    EndDocument();
  }
  std::vector<uint8_t> document = open_.back().writer.Finish();
  open_.back().elements = 0;
  return document;
}

}  // namespace sidecar::support
