#include "protocol/bson.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "protocol/byte_reader.h"

namespace sidecar::protocol {
namespace {

// kEmptyDocument is {}: length 5, no elements, trailing NUL.
constexpr uint8_t kEmptyDocument[5] = {5, 0, 0, 0, 0};

absl::Status Malformed(absl::string_view what, size_t offset) {
  return absl::InvalidArgumentError(absl::StrCat("malformed BSON: ", what, " at byte ", offset));
}

absl::Status ValidateDocument(absl::Span<const uint8_t> document, int depth);

// ReadString reads a BSON string: int32 length including the NUL, bytes, NUL.
bool ReadString(ByteReader& reader, std::string_view* out) {
  int32_t length;
  absl::Span<const uint8_t> bytes;
  if (!reader.ReadI32(&length) || length < 1 || !reader.ReadBytes(length, &bytes) ||
      bytes[length - 1] != 0) {
    return false;
  }
  *out = std::string_view(reinterpret_cast<const char*>(bytes.data()), length - 1);
  return true;
}

// ReadEmbedded reads the length-prefixed document starting at the reader, without
// consuming it when it does not fit.
bool ReadEmbedded(ByteReader& reader, absl::Span<const uint8_t>* out) {
  ByteReader peek(reader.Rest());
  int32_t length;
  if (!peek.ReadI32(&length) || length < 5) {
    return false;
  }
  return reader.ReadBytes(length, out);
}

// ReadCodeWithScope consumes a JavaScript-with-scope value: int32 total length, string code,
// document scope. `depth` as for ReadValue.
absl::Status ReadCodeWithScope(ByteReader& reader, int depth) {
  size_t at = reader.position();
  int32_t total;
  absl::Span<const uint8_t> whole;
  {
    ByteReader peek(reader.Rest());
    if (!peek.ReadI32(&total) || total < 14 || !reader.ReadBytes(total, &whole)) {
      return Malformed("bad code with scope", at);
    }
  }
  ByteReader inner(whole);
  inner.Skip(4);
  std::string_view code;
  absl::Span<const uint8_t> scope;
  if (!ReadString(inner, &code) || !ReadEmbedded(inner, &scope) || !inner.empty()) {
    return Malformed("bad code with scope", at);
  }
  return depth >= 0 ? ValidateDocument(scope, depth + 1) : absl::OkStatus();
}

// ReadValue consumes one value of type `type`. With depth >= 0 it also validates nested
// documents (depth is the nesting level of the document holding the value); with depth < 0
// it trusts them (the document was validated before).
absl::Status ReadValue(ByteReader& reader, uint8_t type, int depth) {
  size_t at = reader.position();
  auto fixed = [&](size_t n) {
    return reader.Skip(n) ? absl::OkStatus() : Malformed("truncated value", at);
  };
  std::string_view text;
  absl::Span<const uint8_t> embedded;
  switch (type) {
    case static_cast<uint8_t>(BsonType::kDouble):
    case static_cast<uint8_t>(BsonType::kDateTime):
    case static_cast<uint8_t>(BsonType::kTimestamp):
    case static_cast<uint8_t>(BsonType::kInt64):
      return fixed(8);
    case static_cast<uint8_t>(BsonType::kInt32):
      return fixed(4);
    case static_cast<uint8_t>(BsonType::kObjectId):
      return fixed(12);
    case static_cast<uint8_t>(BsonType::kDecimal128):
      return fixed(16);
    case static_cast<uint8_t>(BsonType::kUndefined):
    case static_cast<uint8_t>(BsonType::kNull):
    case static_cast<uint8_t>(BsonType::kMinKey):
    case static_cast<uint8_t>(BsonType::kMaxKey):
      return absl::OkStatus();
    case static_cast<uint8_t>(BsonType::kBool): {
      uint8_t value = 0;
      if (!reader.ReadU8(&value) || value > 1) {
        return Malformed("boolean not 0 or 1", at);
      }
      return absl::OkStatus();
    }
    case static_cast<uint8_t>(BsonType::kString):
    case static_cast<uint8_t>(BsonType::kJavaScript):
    case static_cast<uint8_t>(BsonType::kSymbol):
      return ReadString(reader, &text) ? absl::OkStatus() : Malformed("bad string", at);
    case static_cast<uint8_t>(BsonType::kDbPointer):
      if (!ReadString(reader, &text)) {
        return Malformed("bad DBPointer namespace", at);
      }
      return fixed(12);
    case static_cast<uint8_t>(BsonType::kRegex):
      // Pattern and options are C strings; ReadCString stops at the end of the span.
      if (!reader.ReadCString(&text) || !reader.ReadCString(&text)) {
        return Malformed("bad regex", at);
      }
      return absl::OkStatus();
    case static_cast<uint8_t>(BsonType::kBinary): {
      int32_t length;
      absl::Span<const uint8_t> data;
      if (!reader.ReadI32(&length) || length < 0 || !reader.Skip(1) ||
          !reader.ReadBytes(length, &data)) {
        return Malformed("bad binary", at);
      }
      return absl::OkStatus();
    }
    case static_cast<uint8_t>(BsonType::kDocument):
    case static_cast<uint8_t>(BsonType::kArray):
      if (!ReadEmbedded(reader, &embedded)) {
        return Malformed("bad embedded document length", at);
      }
      return depth >= 0 ? ValidateDocument(embedded, depth + 1) : absl::OkStatus();
    case static_cast<uint8_t>(BsonType::kJavaScriptWithScope):
      return ReadCodeWithScope(reader, depth);
    default:
      return Malformed(absl::StrCat("unknown element type ", type), at);
  }
}

// ValidateDocument checks a whole document whose bytes are exactly `document`.
absl::Status ValidateDocument(absl::Span<const uint8_t> document, int depth) {
  if (depth > kMaxBsonDepth) {
    return absl::InvalidArgumentError("malformed BSON: nested too deeply");
  }
  ByteReader reader(document);
  int32_t length;
  if (!reader.ReadI32(&length) || length < 5 || static_cast<size_t>(length) != document.size()) {
    return Malformed("bad document length", 0);
  }
  if (document.back() != 0) {
    return Malformed("document does not end in NUL", document.size() - 1);
  }
  // The elements live in bytes [4, length - 1); the last byte is the terminator.
  ByteReader elements(document.subspan(4, document.size() - 5));
  while (!elements.empty()) {
    uint8_t type;
    std::string_view key;
    elements.ReadU8(&type);
    if (type == 0) {
      return Malformed("NUL type byte before the end", 4 + elements.position() - 1);
    }
    if (!elements.ReadCString(&key)) {
      return Malformed("key runs past the document", 4 + elements.position());
    }
    absl::Status status = ReadValue(elements, type, depth);
    if (!status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

bool FitsInt64(double value) {
  // 2^63 is exactly representable; every double below it and >= -2^63 converts safely.
  return value >= -9223372036854775808.0 && value < 9223372036854775808.0;
}

// Number is a numeric element read: int32 and int64 exactly (and as a double, which may
// round an int64), a double as it is.
struct Number {
  bool is_integer = false;
  int64_t integer = 0;
  double real = 0;
};

std::optional<Number> ReadNumber(BsonType type, absl::Span<const uint8_t> bytes) {
  ByteReader reader(bytes);
  switch (type) {
    case BsonType::kInt32: {
      int32_t value = 0;
      reader.ReadI32(&value);
      return Number{true, value, static_cast<double>(value)};
    }
    case BsonType::kInt64: {
      int64_t value = 0;
      reader.ReadI64(&value);
      return Number{true, value, static_cast<double>(value)};
    }
    case BsonType::kDouble: {
      double value = 0;
      reader.ReadDouble(&value);
      return Number{false, 0, value};
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

// --- BsonElement -----------------------------------------------------------------------

std::optional<std::string_view> BsonElement::AsString() const {
  if (type_ != BsonType::kString && type_ != BsonType::kJavaScript && type_ != BsonType::kSymbol) {
    return std::nullopt;
  }
  ByteReader reader(value_);
  std::string_view text;
  if (!ReadString(reader, &text)) {
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> BsonElement::AsInt64() const {
  std::optional<Number> number = ReadNumber(type_, value_);
  if (!number.has_value()) {
    return std::nullopt;
  }
  if (number->is_integer) {
    return number->integer;
  }
  const double value = number->real;
  if (!std::isfinite(value) || std::trunc(value) != value || !FitsInt64(value)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(value);
}

std::optional<int32_t> BsonElement::AsInt32() const {
  std::optional<int64_t> value = AsInt64();
  if (!value || *value < std::numeric_limits<int32_t>::min() ||
      *value > std::numeric_limits<int32_t>::max()) {
    return std::nullopt;
  }
  return static_cast<int32_t>(*value);
}

std::optional<double> BsonElement::AsDouble() const {
  std::optional<Number> number = ReadNumber(type_, value_);
  if (!number.has_value()) {
    return std::nullopt;
  }
  return number->real;
}

std::optional<bool> BsonElement::AsBool() const {
  if (type_ != BsonType::kBool || value_.size() != 1) {
    return std::nullopt;
  }
  return value_[0] != 0;
}

bool BsonElement::IsTrue() const {
  if (std::optional<bool> flag = AsBool()) {
    return *flag;
  }
  std::optional<double> number = AsDouble();
  return number.has_value() && *number != 0;
}

bool BsonElement::IsNumber() const {
  return type_ == BsonType::kDouble || type_ == BsonType::kInt32 || type_ == BsonType::kInt64 ||
         type_ == BsonType::kDecimal128;
}

std::optional<BsonView> BsonElement::AsDocument() const {
  if (type_ != BsonType::kDocument && type_ != BsonType::kArray) {
    return std::nullopt;
  }
  return BsonView(value_);
}

std::optional<absl::Span<const uint8_t>> BsonElement::AsBinary(uint8_t* subtype) const {
  if (type_ != BsonType::kBinary || value_.size() < 5) {
    return std::nullopt;
  }
  if (subtype != nullptr) {
    *subtype = value_[4];
  }
  return value_.subspan(5);
}

std::optional<absl::Span<const uint8_t>> BsonElement::AsObjectId() const {
  if (type_ != BsonType::kObjectId) {
    return std::nullopt;
  }
  return value_;
}

std::optional<int64_t> BsonElement::AsDateTime() const {
  if (type_ != BsonType::kDateTime) {
    return std::nullopt;
  }
  ByteReader reader(value_);
  int64_t value = 0;
  reader.ReadI64(&value);
  return value;
}

std::optional<BsonElement::Timestamp> BsonElement::AsTimestamp() const {
  if (type_ != BsonType::kTimestamp) {
    return std::nullopt;
  }
  // Stored as uint64 little-endian: increment in the low 32 bits, seconds in the high.
  ByteReader reader(value_);
  Timestamp ts = {0, 0};
  reader.ReadU32(&ts.i);
  reader.ReadU32(&ts.t);
  return ts;
}

// --- BsonView --------------------------------------------------------------------------

BsonView::BsonView() : bytes_(kEmptyDocument, sizeof(kEmptyDocument)) {}

absl::StatusOr<BsonView> BsonView::Parse(absl::Span<const uint8_t> bytes) {
  absl::Status status = ValidateDocument(bytes, 0);
  if (!status.ok()) {
    return status;
  }
  return BsonView(bytes);
}

absl::StatusOr<BsonView> BsonView::ParsePrefix(absl::Span<const uint8_t> bytes) {
  ByteReader reader(bytes);
  absl::Span<const uint8_t> document;
  if (!ReadEmbedded(reader, &document)) {
    return Malformed("bad document length", 0);
  }
  return Parse(document);
}

BsonView::Iterator::Iterator(absl::Span<const uint8_t> document, size_t offset)
    : document_(document), offset_(offset) {
  Load();
}

void BsonView::Iterator::Load() {
  current_.reset();
  // The document was validated, so every read below succeeds; a failure would mean the
  // bytes changed under the view, and then iteration simply ends.
  size_t end = document_.size() - 1;
  if (offset_ >= end) {
    offset_ = end;
    return;
  }
  ByteReader reader(document_.subspan(offset_, end - offset_));
  uint8_t type;
  std::string_view key;
  if (!reader.ReadU8(&type) || !reader.ReadCString(&key)) {
    offset_ = end;
    return;
  }
  size_t value_start = reader.position();
  if (!ReadValue(reader, type, -1).ok()) {
    offset_ = end;
    return;
  }
  absl::Span<const uint8_t> element = document_.subspan(offset_, reader.position());
  current_ = BsonElement(static_cast<BsonType>(type), key,
                         element.subspan(value_start, reader.position() - value_start), element);
}

BsonView::Iterator& BsonView::Iterator::operator++() {
  if (current_) {
    offset_ += current_->element_bytes().size();
  }
  Load();
  return *this;
}

BsonView::Iterator BsonView::begin() const { return Iterator(bytes_, 4); }
BsonView::Iterator BsonView::end() const { return Iterator(bytes_, bytes_.size() - 1); }

std::optional<BsonElement> BsonView::Find(std::string_view key) const {
  for (const BsonElement& element : *this) {
    if (element.key() == key) {
      return element;
    }
  }
  return std::nullopt;
}

std::optional<BsonElement> BsonView::First() const {
  Iterator it = begin();
  if (it == end()) {
    return std::nullopt;
  }
  return *it;
}

void BsonView::ForEach(const std::function<bool(const BsonElement&)>& fn) const {
  for (const BsonElement& element : *this) {
    if (!fn(element)) {
      return;
    }
  }
}

size_t BsonView::size() const {
  size_t count = 0;
  for (auto it = begin(); it != end(); ++it) {
    ++count;
  }
  return count;
}

// --- BsonWriter ------------------------------------------------------------------------

BsonWriter::BsonWriter() { Begin(); }

void BsonWriter::Begin() {
  out_.clear();
  AppendLittleEndian<int32_t>(out_, 0);  // length, filled in by Finish
}

void BsonWriter::AppendHeader(BsonType type, std::string_view key) {
  out_.push_back(static_cast<uint8_t>(type));
  size_t nul = key.find('\0');
  if (nul != std::string_view::npos) {
    key = key.substr(0, nul);
  }
  out_.insert(out_.end(), key.begin(), key.end());
  out_.push_back(0);
}

BsonWriter& BsonWriter::AppendDouble(std::string_view key, double value) {
  AppendHeader(BsonType::kDouble, key);
  uint64_t raw;
  std::memcpy(&raw, &value, sizeof(raw));
  AppendLittleEndian(out_, raw);
  return *this;
}

BsonWriter& BsonWriter::AppendString(std::string_view key, std::string_view value) {
  AppendHeader(BsonType::kString, key);
  AppendLittleEndian<int32_t>(out_, static_cast<int32_t>(value.size() + 1));
  out_.insert(out_.end(), value.begin(), value.end());
  out_.push_back(0);
  return *this;
}

BsonWriter& BsonWriter::AppendInt32(std::string_view key, int32_t value) {
  AppendHeader(BsonType::kInt32, key);
  AppendLittleEndian(out_, value);
  return *this;
}

BsonWriter& BsonWriter::AppendValue(BsonType type, std::string_view key,
                                    absl::Span<const uint8_t> value) {
  AppendHeader(type, key);
  out_.insert(out_.end(), value.begin(), value.end());
  return *this;
}

std::vector<uint8_t> BsonWriter::Finish() {
  out_.push_back(0);
  StoreLittleEndianI32(out_, 0, static_cast<int32_t>(out_.size()));
  std::vector<uint8_t> document = std::move(out_);
  Begin();
  return document;
}

}  // namespace sidecar::protocol
