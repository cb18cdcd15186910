#include "proxy/observe/log_writer.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <thread>

namespace sidecar::proxy {
namespace {

// Lines waiting for the writer: beyond this, new lines are dropped (and counted) rather than
// letting a stalled stderr grow memory without bound.
constexpr size_t kMaxQueuedBytes = 4 << 20;
constexpr auto kSweepInterval = std::chrono::seconds(1);

}  // namespace

LogWriter& LogWriter::Get() {
  static LogWriter* const writer = new LogWriter;
  return *writer;
}

void LogWriter::Enqueue(std::string_view line) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() + line.size() > kMaxQueuedBytes) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.append(line);
    ++queued_lines_;
  }
  std::call_once(started_, [this] { Start(); });
  wake_.notify_one();
}

bool LogWriter::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !writing_; });
}

void LogWriter::Register(LogRateLimiter* limiter) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  limiters_.push_back(limiter);
}

void LogWriter::Unregister(LogRateLimiter* limiter) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  limiters_.erase(std::remove(limiters_.begin(), limiters_.end(), limiter), limiters_.end());
}

void LogWriter::Start() {
  // The writer thread takes no signals (they are for the event loops), and SIGPIPE stays
  // blocked there so that a closed stderr gives EPIPE instead of killing the process.
  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  std::thread([this] { Run(); }).detach();
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

size_t LogWriter::WriteAll(std::string_view data) {
  const int fd = fd_.load(std::memory_order_relaxed);
  size_t done = 0;
  int waits = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    // Someone made the fd non-blocking: wait a little, but never forever.
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waits < 10) {
      pollfd pfd = {fd, POLLOUT, 0};
      poll(&pfd, 1, 100);
      ++waits;
      continue;
    }
    break;  // ENOSPC, EPIPE, EIO, EBADF...: the rest is dropped
  }
  return done;
}

void LogWriter::WriteBatch(const std::string& batch, size_t lines, uint64_t& dropped_reported) {
  size_t written = WriteAll(batch);
  size_t lines_lost = static_cast<size_t>(
      std::count(batch.begin() + static_cast<std::ptrdiff_t>(written), batch.end(), '\n'));
  written_.fetch_add(lines - lines_lost, std::memory_order_relaxed);
  dropped_.fetch_add(lines_lost, std::memory_order_relaxed);
  uint64_t dropped = dropped_.load(std::memory_order_relaxed);
  if (lines_lost == 0 && dropped > dropped_reported) {
    // The output works again: say how much is missing from it.
    std::string note =
        FormatLogLine(std::chrono::system_clock::now(), Severity::kWarning, Component::kDefault, 0,
                      "Log lines were dropped", {{"dropped", dropped - dropped_reported}});
    if (WriteAll(note) == note.size()) {
      written_.fetch_add(1, std::memory_order_relaxed);
      dropped_reported = dropped;
    }
  }
}

void LogWriter::Run() {
  auto last_sweep = std::chrono::steady_clock::now();
  uint64_t dropped_reported = 0;
  while (true) {
    std::string batch;
    size_t lines = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, kSweepInterval, [this] { return !queue_.empty(); });
      batch.swap(queue_);
      lines = queued_lines_;
      queued_lines_ = 0;
      writing_ = !batch.empty();
    }
    if (!batch.empty()) {
      WriteBatch(batch, lines, dropped_reported);
      {
        std::lock_guard<std::mutex> lock(mu_);
        writing_ = false;
      }
      idle_.notify_all();
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_sweep >= kSweepInterval) {
      last_sweep = now;
      std::lock_guard<std::mutex> lock(limiters_mu_);
      for (LogRateLimiter* limiter : limiters_) {
        limiter->FlushSummary(now);
      }
    }
  }
}

}  // namespace sidecar::proxy
