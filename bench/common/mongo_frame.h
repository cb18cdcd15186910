// Copyright the tls-sidecar authors.
//
// MongoDB-shaped frames for the bench tools. The sidecar tells TLS from MongoDB by the
// first 16 bytes a client sends (SPEC §3), so a plaintext client of the bench has to
// open with a real message header; making the whole frame a valid OP_MSG also keeps any
// decoding of the first message on its normal path instead of its degraded one.

#ifndef SIDECAR_BENCH_COMMON_MONGO_FRAME_H_
#define SIDECAR_BENCH_COMMON_MONGO_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sidecar::bench {

inline constexpr int32_t kOpMsg = 2013;

// kMinOpMsgFrameSize is the size of the smallest frame MakeOpMsgFrame can build: the
// header, flag bits, one kind-0 section and the document {ping: 1, pad: BinData("")}.
inline constexpr size_t kMinOpMsgFrameSize = 46;

// MakeOpMsgFrame returns a valid OP_MSG of exactly `total_size` bytes (clamped up to
// kMinOpMsgFrameSize): header {length, request_id, response_to 0, opcode 2013}, flag bits
// 0, and a body document {ping: 1, pad: <binary filler>} sized to fill the frame.
inline std::vector<uint8_t> MakeOpMsgFrame(size_t total_size, int32_t request_id) {
  if (total_size < kMinOpMsgFrameSize) {
    total_size = kMinOpMsgFrameSize;
  }
  std::vector<uint8_t> frame(total_size, 0);
  size_t pos = 0;
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      frame[pos++] = static_cast<uint8_t>(v >> (8 * i));
    }
  };
  auto put_bytes = [&](const void* data, size_t n) {
    std::memcpy(frame.data() + pos, data, n);
    pos += n;
  };
  const uint32_t pad_size = static_cast<uint32_t>(total_size - kMinOpMsgFrameSize);
  put32(static_cast<uint32_t>(total_size));
  put32(static_cast<uint32_t>(request_id));
  put32(0);  // responseTo: 0, as a request.
  put32(static_cast<uint32_t>(kOpMsg));
  put32(0);          // flagBits.
  frame[pos++] = 0;  // Section kind 0: the body document.
  put32(25 + pad_size);
  frame[pos++] = 0x10;  // int32
  put_bytes("ping", 5);
  put32(1);
  frame[pos++] = 0x05;  // binary
  put_bytes("pad", 4);
  put32(pad_size);
  frame[pos++] = 0x00;  // Generic binary subtype.
  std::memset(frame.data() + pos, 'x', pad_size);
  pos += pad_size;
  frame[pos++] = 0x00;  // End of document.
  return frame;
}

}  // namespace sidecar::bench

#endif  // SIDECAR_BENCH_COMMON_MONGO_FRAME_H_
