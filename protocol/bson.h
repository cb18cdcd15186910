// Minimal BSON (https://bsonspec.org/spec.html): a validating read-only view over a byte
// span, and a writer of flat documents. Enough for the sidecar to read a hello and build an
// error reply or a hello of its own.
//
// Ownership: BsonView and BsonElement borrow the bytes they were parsed from; the caller
// keeps those bytes alive and unchanged while views exist. Nothing here is shared between
// threads; every type is a value type, safe to copy.
#ifndef SIDECAR_PROTOCOL_BSON_H_
#define SIDECAR_PROTOCOL_BSON_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sidecar::protocol {

// BsonType is the element type byte. Types not listed (DBPointer 0x0C, Symbol 0x0E,
// JavaScript with scope 0x0F) are still accepted and skipped by the parser.
enum class BsonType : uint8_t {
  kDouble = 1,
  kString = 2,
  kDocument = 3,
  kArray = 4,
  kBinary = 5,
  kUndefined = 6,
  kObjectId = 7,
  kBool = 8,
  kDateTime = 9,
  kNull = 10,
  kRegex = 11,
  kDbPointer = 12,
  kJavaScript = 13,
  kSymbol = 14,
  kJavaScriptWithScope = 15,
  kInt32 = 16,
  kTimestamp = 17,
  kInt64 = 18,
  kDecimal128 = 19,
  kMinKey = 0xFF,
  kMaxKey = 0x7F,
};

// kMaxBsonDepth bounds document nesting, so hostile input cannot exhaust the stack; mongod
// allows 100 levels of user nesting (BSONDepth::kDefaultMaxAllowableDepth) plus a few of its own.
inline constexpr int kMaxBsonDepth = 150;

class BsonView;

// BsonElement is one element of a validated document: its type, key and raw value bytes.
// Only a BsonView (or its iterator) makes elements, so every accessor may trust the bytes.
class BsonElement {
 public:
  BsonType type() const { return type_; }
  std::string_view key() const { return key_; }
  // value_bytes is the encoded value, without the type byte and key.
  absl::Span<const uint8_t> value_bytes() const { return value_; }
  // element_bytes is the whole element: type byte, key, NUL and value.
  absl::Span<const uint8_t> element_bytes() const { return element_; }

  // AsString: the value of a string (also JavaScript code and symbols), without the NUL.
  std::optional<std::string_view> AsString() const;
  // AsInt64: int32 and int64, and a double with an integral value within int64's range.
  std::optional<int64_t> AsInt64() const;
  // AsInt32: AsInt64 when it fits in int32.
  std::optional<int32_t> AsInt32() const;
  // AsDouble: any number (double, int32, int64); int64 may round.
  std::optional<double> AsDouble() const;
  // AsBool: a boolean only. For the command-style "truthy" reading use IsTrue.
  std::optional<bool> AsBool() const;
  // IsTrue reads a flag the way mongod does for options like {helloOk: 1}: true for a true
  // bool or a non-zero number; false for anything else.
  bool IsTrue() const;
  // AsDocument: an embedded document or array (arrays are documents keyed "0", "1", ...).
  // Keep the view in a variable before a range-for: `for (e : *x.AsDocument())` iterates a
  // temporary that is already gone.
  std::optional<BsonView> AsDocument() const;
  // AsBinary: the payload of a binary value; subtype written to *subtype when not null.
  std::optional<absl::Span<const uint8_t>> AsBinary(uint8_t* subtype = nullptr) const;
  // AsObjectId: the 12 bytes of an ObjectId.
  std::optional<absl::Span<const uint8_t>> AsObjectId() const;
  // AsDateTime: milliseconds since the Unix epoch.
  std::optional<int64_t> AsDateTime() const;
  // AsTimestamp: {t: seconds, i: increment}.
  struct Timestamp {
    uint32_t t;
    uint32_t i;
  };
  std::optional<Timestamp> AsTimestamp() const;
  bool IsNumber() const;
  bool IsNull() const { return type_ == BsonType::kNull; }

 private:
  friend class BsonView;
  BsonElement(BsonType type, std::string_view key, absl::Span<const uint8_t> value,
              absl::Span<const uint8_t> element)
      : type_(type), key_(key), value_(value), element_(element) {}

  BsonType type_;
  std::string_view key_;
  absl::Span<const uint8_t> value_;
  absl::Span<const uint8_t> element_;
};

// BsonView is a validated document (or array). Iterate with a range-for:
//   for (const BsonElement& e : view) { ... }
// or with ForEach. Elements come in document order.
class BsonView {
 public:
  // Parse validates that bytes is exactly one document: the outer length equals
  // bytes.size(), and every element is well formed, recursively for documents and arrays,
  // up to kMaxBsonDepth. Strings are read by their declared length and must end in NUL;
  // booleans must be 0 or 1. UTF-8 is not checked.
  static absl::StatusOr<BsonView> Parse(absl::Span<const uint8_t> bytes);
  // ParsePrefix is Parse of the document at the start of bytes, which may go on past it
  // (bytes().size() tells how much the document took).
  static absl::StatusOr<BsonView> ParsePrefix(absl::Span<const uint8_t> bytes);

  // An empty document, {}.
  BsonView();

  // bytes is exactly the document, length prefix to trailing NUL.
  absl::Span<const uint8_t> bytes() const { return bytes_; }
  bool empty() const { return bytes_.size() <= 5; }

  // Find returns the first element named key (linear scan).
  std::optional<BsonElement> Find(std::string_view key) const;
  // First returns the first element: a command document's command name is its key.
  std::optional<BsonElement> First() const;
  // ForEach calls fn for each element in order until fn returns false.
  void ForEach(const std::function<bool(const BsonElement&)>& fn) const;
  // size counts the elements (linear).
  size_t size() const;

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = BsonElement;
    using difference_type = std::ptrdiff_t;
    using pointer = const BsonElement*;
    using reference = const BsonElement&;

    const BsonElement& operator*() const { return *current_; }
    const BsonElement* operator->() const { return &*current_; }
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return offset_ == other.offset_; }
    bool operator!=(const Iterator& other) const { return offset_ != other.offset_; }

   private:
    friend class BsonView;
    Iterator(absl::Span<const uint8_t> document, size_t offset);
    void Load();

    absl::Span<const uint8_t> document_;
    size_t offset_;
    std::optional<BsonElement> current_;
  };
  Iterator begin() const;
  Iterator end() const;

 private:
  explicit BsonView(absl::Span<const uint8_t> bytes) : bytes_(bytes) {}
  friend class BsonElement;

  absl::Span<const uint8_t> bytes_;
};

// BsonWriter builds one flat document: what the sidecar itself writes (an error reply, the
// upstream probe's hello). Calls chain; keys containing a NUL are cut at the NUL (BSON keys
// cannot hold one). Nested documents, arrays and the other types are built by the tests'
// BsonBuilder (tests/support/bson_builder.h) on top of AppendValue.
// Not thread-safe; one writer per document.
class BsonWriter {
 public:
  BsonWriter();

  BsonWriter& AppendDouble(std::string_view key, double value);
  BsonWriter& AppendString(std::string_view key, std::string_view value);
  BsonWriter& AppendInt32(std::string_view key, int32_t value);
  // AppendValue appends an element of `type` whose value is already encoded (the bytes after
  // the key, as BsonElement::value_bytes gives them); the caller vouches for the encoding.
  BsonWriter& AppendValue(BsonType type, std::string_view key, absl::Span<const uint8_t> value);

  // Finish closes the document and returns its bytes. The writer is left empty and may build
  // another document.
  std::vector<uint8_t> Finish();

 private:
  void AppendHeader(BsonType type, std::string_view key);
  void Begin();

  std::vector<uint8_t> out_;
};

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_BSON_H_
