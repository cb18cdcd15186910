// BsonBuilder builds any document the tests and the stand-in mongod need: every BSON type,
// nested documents and arrays, elements copied from other documents. Every element is
// encoded by the sidecar's own protocol::BsonWriter, so the bytes the tests build are
// encoded by the same code as the bytes the sidecar sends; the builder adds the nesting.
//
// Calls chain; keys containing a NUL are cut at the NUL (BSON keys cannot hold one).
// StartDocument/StartArray open a nested document closed by EndDocument/EndArray; inside an
// array the caller supplies the keys "0", "1", ... (NextArrayKey gives the next one).
// Not thread-safe; one builder per document.
#ifndef SIDECAR_TESTS_SUPPORT_BSON_BUILDER_H_
#define SIDECAR_TESTS_SUPPORT_BSON_BUILDER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "protocol/bson.h"

namespace sidecar::support {

class BsonBuilder {
 public:
  BsonBuilder();

  BsonBuilder& AppendDouble(std::string_view key, double value);
  BsonBuilder& AppendString(std::string_view key, std::string_view value);
  BsonBuilder& AppendInt32(std::string_view key, int32_t value);
  BsonBuilder& AppendInt64(std::string_view key, int64_t value);
  BsonBuilder& AppendBool(std::string_view key, bool value);
  BsonBuilder& AppendNull(std::string_view key);
  BsonBuilder& AppendMinKey(std::string_view key);
  BsonBuilder& AppendMaxKey(std::string_view key);
  BsonBuilder& AppendDateTime(std::string_view key, int64_t milliseconds_since_epoch);
  BsonBuilder& AppendObjectId(std::string_view key, std::span<const uint8_t, 12> oid);
  BsonBuilder& AppendTimestamp(std::string_view key, uint32_t t, uint32_t i);
  BsonBuilder& AppendBinary(std::string_view key, uint8_t subtype, absl::Span<const uint8_t> data);
  BsonBuilder& AppendDecimal128(std::string_view key, std::span<const uint8_t, 16> raw);
  // AppendDocument/AppendArray copy a validated document as an embedded document/array.
  BsonBuilder& AppendDocument(std::string_view key, const protocol::BsonView& document);
  BsonBuilder& AppendArray(std::string_view key, const protocol::BsonView& array);
  // AppendElement copies an element as is, under its own key or under key.
  BsonBuilder& AppendElement(const protocol::BsonElement& element);
  BsonBuilder& AppendElement(std::string_view key, const protocol::BsonElement& element);

  BsonBuilder& StartDocument(std::string_view key);
  BsonBuilder& StartArray(std::string_view key);
  BsonBuilder& EndDocument();
  BsonBuilder& EndArray() { return EndDocument(); }

  // NextArrayKey is the key the next element of the innermost open array should have
  // ("0", "1", ...), counted from the elements appended to it so far.
  std::string NextArrayKey() const;

  // Finish closes any nested documents still open, then the top-level document, and
  // returns the bytes. The builder is left empty and may build another document.
  std::vector<uint8_t> Finish();

 private:
  // Open is one document still open: where its length goes, and how many elements it has.
  struct Open {
    size_t start;
    size_t elements;
  };

  void Begin();
  // Append encodes one element with protocol::BsonWriter and copies it into place, so that
  // building stays linear however deep the nesting.
  BsonBuilder& Append(protocol::BsonType type, std::string_view key,
                      absl::Span<const uint8_t> value);
  BsonBuilder& AppendEncoded(protocol::BsonWriter& element);
  BsonBuilder& Start(protocol::BsonType type, std::string_view key);

  std::vector<uint8_t> out_;
  std::vector<Open> open_;  // open_[0] is the top-level document
};

}  // namespace sidecar::support

#endif  // SIDECAR_TESTS_SUPPORT_BSON_BUILDER_H_
