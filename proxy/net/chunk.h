// Chunk, ChunkPool and ChunkQueue carry every byte of the data path. A chunk is a fixed
// buffer that a read fills and a write drains; it moves between queues without copying and
// goes back to its loop's pool when written, so the steady state allocates nothing and an
// idle connection holds no chunk at all. Not thread-safe: a pool and its chunks belong to
// one loop.
#ifndef SIDECAR_PROXY_NET_CHUNK_H_
#define SIDECAR_PROXY_NET_CHUNK_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sidecar::proxy {

// 32 KiB holds two full TLS records of plaintext and one TLS record of ciphertext with room
// to spare, and is a good read size for bulk transfers.
inline constexpr size_t kChunkCapacity = 32 * 1024;

struct Chunk {
  Chunk* next = nullptr;
  size_t begin = 0;  // first byte not yet consumed
  size_t end = 0;    // one past the last byte written
  uint8_t data[kChunkCapacity];

  size_t size() const { return end - begin; }
  size_t space() const { return kChunkCapacity - end; }
  const uint8_t* head() const { return data + begin; }
  uint8_t* tail() { return data + end; }
};

// ChunkPool recycles chunks for one loop; it keeps at most `max_free` spare ones.
class ChunkPool {
 public:
  explicit ChunkPool(size_t max_free = 256) : max_free_(max_free) {}
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;
  ~ChunkPool() {
    for (Chunk* chunk : free_) {
      delete chunk;
    }
  }

  // Take returns an empty chunk owned by the caller until Give.
  Chunk* Take() {
    ++in_use_;
    if (free_.empty()) {
      return new Chunk;
    }
    Chunk* chunk = free_.back();
    free_.pop_back();
    return chunk;
  }

  void Give(Chunk* chunk) {
    --in_use_;
    if (free_.size() >= max_free_) {
      delete chunk;
      return;
    }
    chunk->next = nullptr;
    chunk->begin = 0;
    chunk->end = 0;
    free_.push_back(chunk);
  }

  size_t in_use() const { return in_use_; }

 private:
  std::vector<Chunk*> free_;
  size_t max_free_;
  size_t in_use_ = 0;
};

// ChunkQueue is a FIFO of chunks that owns them; whatever it still holds when destroyed or
// cleared goes back to the pool.
class ChunkQueue {
 public:
  explicit ChunkQueue(ChunkPool* pool) : pool_(pool) {}
  ChunkQueue(const ChunkQueue&) = delete;
  ChunkQueue& operator=(const ChunkQueue&) = delete;
  ~ChunkQueue() { Clear(); }

  bool empty() const { return head_ == nullptr; }
  size_t bytes() const { return bytes_; }
  Chunk* front() const { return head_; }
  Chunk* back() const { return tail_; }
  ChunkPool* pool() const { return pool_; }

  void Push(Chunk* chunk) {
    chunk->next = nullptr;
    if (tail_ == nullptr) {
      head_ = chunk;
    } else {
      tail_->next = chunk;
    }
    tail_ = chunk;
    bytes_ += chunk->size();
  }

  // Grow accounts for `n` bytes written in place at the tail of back().
  void Grow(size_t n) { bytes_ += n; }

  // Pop removes the front chunk and hands it to the caller.
  Chunk* Pop() {
    Chunk* chunk = head_;
    if (chunk == nullptr) {
      return nullptr;
    }
    head_ = chunk->next;
    if (head_ == nullptr) {
      tail_ = nullptr;
    }
    chunk->next = nullptr;
    bytes_ -= chunk->size();
    return chunk;
  }

  // Append copies bytes at the end, filling the last chunk before taking new ones.
  void Append(const uint8_t* data, size_t size) {
    while (size > 0) {
      if (tail_ == nullptr || tail_->space() == 0) {
        Push(pool_->Take());
      }
      size_t n = size < tail_->space() ? size : tail_->space();
      std::memcpy(tail_->tail(), data, n);
      tail_->end += n;
      bytes_ += n;
      data += n;
      size -= n;
    }
  }

  // Consume drops `n` bytes from the front, returning emptied chunks to the pool.
  void Consume(size_t n) {
    while (n > 0 && head_ != nullptr) {
      size_t take = n < head_->size() ? n : head_->size();
      head_->begin += take;
      bytes_ -= take;
      n -= take;
      if (head_->size() == 0) {
        pool_->Give(Pop());
      }
    }
  }

  // MoveAllTo moves every chunk to the end of `other` without copying.
  void MoveAllTo(ChunkQueue& other) {
    while (Chunk* chunk = Pop()) {
      other.Push(chunk);
    }
  }

  void Clear() {
    while (Chunk* chunk = Pop()) {
      pool_->Give(chunk);
    }
  }

 private:
  ChunkPool* pool_;
  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_CHUNK_H_
