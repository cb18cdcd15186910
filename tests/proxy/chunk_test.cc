// ChunkQueue carries every byte of the data path: appends across chunk boundaries, partial
// consumption and moves between queues must keep bytes in order and counts exact, and every
// chunk must find its way back to the pool.
#include "proxy/net/chunk.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace sidecar::proxy {
namespace {

std::string Contents(const ChunkQueue& queue) {
  std::string out;
  for (const Chunk* c = queue.front(); c != nullptr; c = c->next) {
    out.append(reinterpret_cast<const char*>(c->head()), c->size());
  }
  return out;
}

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    s[i] = static_cast<char>('a' + i % 26);
  }
  return s;
}

TEST(ChunkQueueTest, AppendSpansChunksInOrderAndCountsEveryByte) {
  ChunkPool pool;
  ChunkQueue queue(&pool);
  std::string data = Pattern(2 * kChunkCapacity + 123);
  queue.Append(reinterpret_cast<const uint8_t*>(data.data()), 1000);
  queue.Append(reinterpret_cast<const uint8_t*>(data.data()) + 1000, data.size() - 1000);
  EXPECT_EQ(queue.bytes(), data.size());
  EXPECT_EQ(Contents(queue), data);
  EXPECT_EQ(pool.in_use(), 3u);  // filled the last chunk before taking a new one
}

TEST(ChunkQueueTest, ConsumeDropsFromTheFrontAndReturnsEmptiedChunks) {
  ChunkPool pool;
  ChunkQueue queue(&pool);
  std::string data = Pattern(kChunkCapacity + 10);
  queue.Append(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  queue.Consume(5);
  EXPECT_EQ(Contents(queue), data.substr(5));
  queue.Consume(kChunkCapacity - 5);
  EXPECT_EQ(Contents(queue), data.substr(kChunkCapacity));
  EXPECT_EQ(pool.in_use(), 1u);
  queue.Consume(1000);  // more than is there: empties, never underflows
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.bytes(), 0u);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(ChunkQueueTest, MoveAllToKeepsOrderWithoutCopying) {
  ChunkPool pool;
  ChunkQueue first(&pool);
  ChunkQueue second(&pool);
  first.Append(reinterpret_cast<const uint8_t*>("abc"), 3);
  second.Append(reinterpret_cast<const uint8_t*>("xyz"), 3);
  const Chunk* moved = second.front();
  second.MoveAllTo(first);
  EXPECT_TRUE(second.empty());
  EXPECT_EQ(second.bytes(), 0u);
  EXPECT_EQ(first.bytes(), 6u);
  EXPECT_EQ(Contents(first), "abcxyz");
  EXPECT_EQ(first.back(), moved);
}

TEST(ChunkQueueTest, GrowCountsBytesWrittenInPlace) {
  ChunkPool pool;
  ChunkQueue queue(&pool);
  queue.Push(pool.Take());
  std::memcpy(queue.back()->tail(), "hello", 5);
  queue.back()->end += 5;
  queue.Grow(5);
  EXPECT_EQ(queue.bytes(), 5u);
  EXPECT_EQ(Contents(queue), "hello");
}

TEST(ChunkPoolTest, ReusesChunksAndKeepsAtMostItsLimit) {
  ChunkPool pool(/*max_free=*/1);
  Chunk* a = pool.Take();
  Chunk* b = pool.Take();
  a->end = 7;
  pool.Give(a);
  pool.Give(b);  // over the limit: freed
  EXPECT_EQ(pool.in_use(), 0u);
  Chunk* again = pool.Take();
  EXPECT_EQ(again, a);
  EXPECT_EQ(again->size(), 0u);  // handed out empty
  pool.Give(again);
}

TEST(ChunkQueueTest, DestroyingAQueueReturnsWhatItHeld) {
  ChunkPool pool;
  {
    ChunkQueue queue(&pool);
    std::string data = Pattern(3 * kChunkCapacity);
    queue.Append(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    EXPECT_EQ(pool.in_use(), 3u);
  }
  EXPECT_EQ(pool.in_use(), 0u);
}

}  // namespace
}  // namespace sidecar::proxy
