// LogWriter is the one thread that writes log lines: Log (log.h) formats a line on the
// calling thread and queues it here, so no event loop ever blocks on a slow stderr. Lines
// beyond a bounded queue are dropped and counted; once the output works again a line says how
// many are missing. Every second it also flushes the summaries of registered rate limiters.
// One per process, never destroyed: other threads may still log while the process exits.
// Internal to proxy/observe; the interface is log.h.
#ifndef SIDECAR_PROXY_OBSERVE_LOG_WRITER_H_
#define SIDECAR_PROXY_OBSERVE_LOG_WRITER_H_

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/observe/log.h"

namespace sidecar::proxy {

class LogWriter {
 public:
  static LogWriter& Get();

  // Enqueue queues one formatted line (with its '\n'), or counts it dropped when the queue
  // is full. Any thread.
  void Enqueue(std::string_view line);
  // Flush waits up to `timeout` for the queue to be written; false on timeout.
  bool Flush(std::chrono::milliseconds timeout);
  void SetFd(int fd) { fd_.store(fd, std::memory_order_relaxed); }
  LogStats Stats() const {
    return {written_.load(std::memory_order_relaxed), dropped_.load(std::memory_order_relaxed)};
  }
  // Register/Unregister a limiter whose summary the writer flushes every second.
  void Register(LogRateLimiter* limiter);
  void Unregister(LogRateLimiter* limiter);

 private:
  LogWriter() = default;
  void Start();
  // WriteAll writes `data` to the current fd; returns how many bytes were written.
  size_t WriteAll(std::string_view data);
  // WriteBatch writes what Run took from the queue and counts it.
  void WriteBatch(const std::string& batch, size_t lines, uint64_t& dropped_reported);
  void Run();

  std::mutex mu_;
  std::condition_variable wake_;  // the writer: lines are queued
  std::condition_variable idle_;  // FlushLogs: the queue is written
  std::string queue_;
  size_t queued_lines_ = 0;
  bool writing_ = false;

  std::atomic<int> fd_{STDERR_FILENO};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> dropped_{0};
  std::once_flag started_;

  std::mutex limiters_mu_;
  std::vector<LogRateLimiter*> limiters_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_LOG_WRITER_H_
