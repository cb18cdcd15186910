// ByteReader: a bounds-checked little-endian cursor over a byte span, for the MongoDB wire
// protocol and BSON (TLS uses BoringSSL's CBS instead). Every Read* either fills its output
// and advances, or returns false and leaves the cursor where it was, so a failed read can
// never expose bytes past the end. The reader borrows the span; it owns nothing and is not
// thread-safe (nor needs to be: one per parse).
#ifndef SIDECAR_PROTOCOL_BYTE_READER_H_
#define SIDECAR_PROTOCOL_BYTE_READER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/types/span.h"

namespace sidecar::protocol {

class ByteReader {
 public:
  explicit ByteReader(absl::Span<const uint8_t> bytes) : bytes_(bytes) {}

  // remaining is how many bytes are left to read; position how many were read.
  size_t remaining() const { return bytes_.size() - position_; }
  size_t position() const { return position_; }
  bool empty() const { return remaining() == 0; }
  // Rest returns the unread bytes without consuming them.
  absl::Span<const uint8_t> Rest() const { return bytes_.subspan(position_); }

  bool ReadU8(uint8_t* out) {
    if (remaining() < 1) {
      return false;
    }
    *out = bytes_[position_++];
    return true;
  }
  bool ReadU32(uint32_t* out) { return ReadLittleEndian(out); }
  bool ReadI32(int32_t* out) {
    uint32_t raw;
    if (!ReadLittleEndian(&raw)) {
      return false;
    }
    *out = static_cast<int32_t>(raw);
    return true;
  }
  bool ReadI64(int64_t* out) {
    uint64_t raw;
    if (!ReadLittleEndian(&raw)) {
      return false;
    }
    *out = static_cast<int64_t>(raw);
    return true;
  }
  bool ReadDouble(double* out) {
    uint64_t raw;
    if (!ReadLittleEndian(&raw)) {
      return false;
    }
    std::memcpy(out, &raw, sizeof(raw));
    return true;
  }
  // ReadBytes takes exactly n bytes.
  bool ReadBytes(size_t n, absl::Span<const uint8_t>* out) {
    if (remaining() < n) {
      return false;
    }
    *out = bytes_.subspan(position_, n);
    position_ += n;
    return true;
  }
  bool Skip(size_t n) {
    absl::Span<const uint8_t> ignored;
    return ReadBytes(n, &ignored);
  }
  // ReadCString reads a NUL-terminated string (BSON keys, OP_QUERY collection names),
  // searching no further than the end of the span; the NUL is consumed, not returned.
  bool ReadCString(std::string_view* out) {
    if (empty()) {
      return false;  // also keeps a null data() away from memchr
    }
    const uint8_t* start = bytes_.data() + position_;
    const void* nul = std::memchr(start, 0, remaining());
    if (nul == nullptr) {
      return false;
    }
    size_t length = static_cast<const uint8_t*>(nul) - start;
    *out = std::string_view(reinterpret_cast<const char*>(start), length);
    position_ += length + 1;
    return true;
  }

 private:
  template <typename T>
  bool ReadLittleEndian(T* out) {
    if (remaining() < sizeof(T)) {
      return false;
    }
    T value = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      value |= static_cast<T>(bytes_[position_ + i]) << (8 * i);
    }
    position_ += sizeof(T);
    *out = value;
    return true;
  }

  absl::Span<const uint8_t> bytes_;
  size_t position_ = 0;
};

// AppendLittleEndian writes value to out in little-endian order (the writer side of
// ByteReader, shared by the BSON writer and the message builders).
template <typename T>
void AppendLittleEndian(std::vector<uint8_t>& out, T value) {
  using U = std::make_unsigned_t<T>;
  U raw = static_cast<U>(value);
  for (size_t i = 0; i < sizeof(T); ++i) {
    out.push_back(static_cast<uint8_t>(raw >> (8 * i)));
  }
}

// StoreLittleEndianI32 overwrites 4 bytes at offset (length prefixes filled in at the end).
inline void StoreLittleEndianI32(std::vector<uint8_t>& out, size_t offset, int32_t value) {
  uint32_t raw = static_cast<uint32_t>(value);
  for (size_t i = 0; i < 4; ++i) {
    out[offset + i] = static_cast<uint8_t>(raw >> (8 * i));
  }
}

}  // namespace sidecar::protocol

#endif  // SIDECAR_PROTOCOL_BYTE_READER_H_
