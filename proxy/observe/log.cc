#include "proxy/observe/log.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <thread>
#include <vector>

namespace sidecar::proxy {
namespace {

// Lines waiting for the writer: beyond this, new lines are dropped (and counted) rather than
// letting a stalled stderr grow memory without bound.
constexpr size_t kMaxQueuedBytes = 4 << 20;
constexpr auto kSweepInterval = std::chrono::seconds(1);

std::atomic<int> g_min_severity{static_cast<int>(Severity::kInfo)};

// Writer owns the queue and the thread that writes it. One per process, never destroyed:
// other threads may still log while the process exits.
class Writer {
 public:
  static Writer& Get() {
    static Writer* const writer = new Writer;
    return *writer;
  }

  void Enqueue(std::string_view line) {
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

  bool Flush(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !writing_; });
  }

  void SetFd(int fd) { fd_.store(fd, std::memory_order_relaxed); }

  LogStats Stats() const {
    return {written_.load(std::memory_order_relaxed), dropped_.load(std::memory_order_relaxed)};
  }

  void Register(LogRateLimiter* limiter) {
    std::lock_guard<std::mutex> lock(limiters_mu_);
    limiters_.push_back(limiter);
  }

  void Unregister(LogRateLimiter* limiter) {
    std::lock_guard<std::mutex> lock(limiters_mu_);
    limiters_.erase(std::remove(limiters_.begin(), limiters_.end(), limiter), limiters_.end());
  }

 private:
  void Start() {
    // The writer thread takes no signals (they are for the event loops), and SIGPIPE stays
    // blocked there so that a closed stderr gives EPIPE instead of killing the process.
    sigset_t all;
    sigset_t saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    std::thread([this] { Run(); }).detach();
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  }

  // WriteAll writes `data` to the current fd; returns how many bytes were written.
  size_t WriteAll(std::string_view data) {
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

  void Run() {
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
        size_t written = WriteAll(batch);
        size_t lines_lost = static_cast<size_t>(
            std::count(batch.begin() + static_cast<std::ptrdiff_t>(written), batch.end(), '\n'));
        written_.fetch_add(lines - lines_lost, std::memory_order_relaxed);
        dropped_.fetch_add(lines_lost, std::memory_order_relaxed);
        uint64_t dropped = dropped_.load(std::memory_order_relaxed);
        if (lines_lost == 0 && dropped > dropped_reported) {
          // The output works again: say how much is missing from it.
          std::string note = FormatLogLine(std::chrono::system_clock::now(), Severity::kWarning,
                                           Component::kDefault, 0, "Log lines were dropped",
                                           {{"dropped", dropped - dropped_reported}});
          if (WriteAll(note) == note.size()) {
            written_.fetch_add(1, std::memory_order_relaxed);
            dropped_reported = dropped;
          }
        }
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

void AppendTimestamp(std::string* out, std::chrono::system_clock::time_point now) {
  const auto since_epoch = now.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  int64_t millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  if (millis < 0) {
    millis += 1000;
  }
  time_t t = static_cast<time_t>(seconds.count()) - (since_epoch.count() < 0 && millis ? 1 : 0);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buffer[40];
  int n = snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02d.%03d+00:00",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   static_cast<int>(millis));
  out->append(buffer, static_cast<size_t>(std::max(n, 0)));
}

// Utf8SequenceLength returns the length of the valid UTF-8 sequence at the start of `s`, or 0
// when it is not valid (overlong forms, surrogates and code points above U+10FFFF included).
size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto continuation = [&](size_t i, unsigned char lo, unsigned char hi) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  unsigned char c = byte(0);
  if (c >= 0xC2 && c <= 0xDF) {
    return continuation(1, 0x80, 0xBF) ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : 0xBF;
    return continuation(1, lo, hi) && continuation(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, lo, hi) && continuation(2, 0x80, 0xBF) && continuation(3, 0x80, 0xBF)
               ? 4
               : 0;
  }
  return 0;
}

}  // namespace

std::string_view SeverityName(Severity severity) {
  switch (severity) {
    case Severity::kFatal:
      return "F";
    case Severity::kError:
      return "E";
    case Severity::kWarning:
      return "W";
    case Severity::kInfo:
      return "I";
    case Severity::kDebug:
      return "D1";
  }
  return "I";
}

std::string_view ComponentName(Component component) {
  switch (component) {
    case Component::kDefault:
      return "-";
    case Component::kControl:
      return "CONTROL";
    case Component::kNetwork:
      return "NETWORK";
    case Component::kTls:
      return "TLS";
    case Component::kEgress:
      return "EGRESS";
    case Component::kMetrics:
      return "METRICS";
  }
  return "-";
}

void AppendJsonString(std::string* out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t length = Utf8SequenceLength(text.substr(i));
      if (length == 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD for each byte that is not valid UTF-8
        ++i;
      } else {
        out->append(text.substr(i, length));
        i += length;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void LogAttr::AppendTo(std::string* out) const {
  AppendJsonString(out, key_);
  out->push_back(':');
  char buffer[32];
  switch (type_) {
    case Type::kString:
      AppendJsonString(out, string_);
      return;
    case Type::kRawJson:
      out->append(string_.empty() ? std::string_view("null") : string_);
      return;
    case Type::kBool:
      out->append(bool_ ? "true" : "false");
      return;
    case Type::kInt: {
      auto result = std::to_chars(buffer, buffer + sizeof(buffer), int_);
      out->append(buffer, result.ptr);
      return;
    }
    case Type::kUint: {
      auto result = std::to_chars(buffer, buffer + sizeof(buffer), uint_);
      out->append(buffer, result.ptr);
      return;
    }
    case Type::kDouble: {
      // JSON has no NaN or infinities; they are written as strings, as mongod does.
      if (std::isnan(double_)) {
        out->append("\"NaN\"");
      } else if (std::isinf(double_)) {
        out->append(double_ > 0 ? "\"Infinity\"" : "\"-Infinity\"");
      } else {
        auto result = std::to_chars(buffer, buffer + sizeof(buffer), double_);
        out->append(buffer, result.ptr);
      }
      return;
    }
  }
}

std::string FormatLogLine(std::chrono::system_clock::time_point now, Severity severity,
                          Component component, int id, std::string_view msg,
                          std::initializer_list<LogAttr> attrs) {
  std::string line;
  line.reserve(160 + msg.size());
  line.append("{\"t\":{\"$date\":\"");
  AppendTimestamp(&line, now);
  line.append("\"},\"s\":\"");
  line.append(SeverityName(severity));
  line.append("\",\"c\":\"");
  line.append(ComponentName(component));
  line.append("\",");
  if (id != 0) {
    line.append("\"id\":");
    line.append(std::to_string(id));
    line.push_back(',');
  }
  line.append("\"msg\":");
  AppendJsonString(&line, msg);
  line.append(",\"attr\":{");
  bool first = true;
  for (const LogAttr& attr : attrs) {
    if (!first) {
      line.push_back(',');
    }
    first = false;
    attr.AppendTo(&line);
  }
  line.append("}}\n");
  return line;
}

void Log(Severity severity, Component component, int id, std::string_view msg,
         std::initializer_list<LogAttr> attrs) {
  if (!LogEnabled(severity)) {
    return;
  }
  // Formatting happens here, on the caller's thread, outside any lock.
  std::string line =
      FormatLogLine(std::chrono::system_clock::now(), severity, component, id, msg, attrs);
  Writer& writer = Writer::Get();
  writer.Enqueue(line);
  if (severity == Severity::kFatal) {
    writer.Flush(std::chrono::milliseconds(2000));
  }
}

void Log(Severity severity, Component component, std::string_view msg,
         std::initializer_list<LogAttr> attrs) {
  Log(severity, component, 0, msg, attrs);
}

void SetMinLogSeverity(Severity severity) {
  g_min_severity.store(static_cast<int>(severity), std::memory_order_relaxed);
}

bool LogEnabled(Severity severity) {
  return static_cast<int>(severity) <= g_min_severity.load(std::memory_order_relaxed);
}

void SetLogFd(int fd) { Writer::Get().SetFd(fd); }

bool FlushLogs(std::chrono::milliseconds timeout) { return Writer::Get().Flush(timeout); }

LogStats GetLogStats() { return Writer::Get().Stats(); }

LogRateLimiter::LogRateLimiter(int lines_per_second, bool flush_from_writer)
    : lines_per_second_(std::max(lines_per_second, 1)), flush_from_writer_(flush_from_writer) {
  if (flush_from_writer_) {
    Writer::Get().Register(this);
  }
}

LogRateLimiter::~LogRateLimiter() {
  if (flush_from_writer_) {
    Writer::Get().Unregister(this);
  }
  FlushSummary(Clock::now(), /*force=*/true);
}

bool LogRateLimiter::Log(Severity severity, Component component, std::string_view msg,
                         std::initializer_list<LogAttr> attrs) {
  return LogAt(Clock::now(), severity, component, msg, attrs);
}

bool LogRateLimiter::LogAt(Clock::time_point now, Severity severity, Component component,
                           std::string_view msg, std::initializer_list<LogAttr> attrs) {
  if (!LogEnabled(severity)) {
    return false;
  }
  bool write = false;
  Summary summary;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (now - window_start_ >= std::chrono::seconds(1)) {
      // A new second: the summary of the last one goes before this line.
      summary = TakeSummaryLocked();
      window_start_ = now;
      lines_in_window_ = 0;
    }
    if (lines_in_window_ < lines_per_second_) {
      ++lines_in_window_;
      write = true;
    } else {
      if (suppressed_in_window_ == 0) {
        severity_ = severity;
        component_ = component;
        msg_ = std::string(msg);
      }
      ++suppressed_in_window_;
      ++suppressed_total_;
    }
  }
  WriteSummary(summary);
  if (write) {
    proxy::Log(severity, component, msg, attrs);
  }
  return write;
}

void LogRateLimiter::FlushSummary(Clock::time_point now, bool force) {
  Summary summary;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (force || now - window_start_ >= std::chrono::seconds(1)) {
      summary = TakeSummaryLocked();
    }
  }
  WriteSummary(summary);
}

LogRateLimiter::Summary LogRateLimiter::TakeSummaryLocked() {
  Summary summary;
  summary.suppressed = suppressed_in_window_;
  summary.severity = severity_;
  summary.component = component_;
  summary.msg = std::move(msg_);
  suppressed_in_window_ = 0;
  msg_.clear();
  return summary;
}

void LogRateLimiter::WriteSummary(const Summary& summary) const {
  if (summary.suppressed == 0) {
    return;
  }
  proxy::Log(summary.severity, summary.component, "Suppressed similar log messages",
             {{"message", summary.msg},
              {"suppressed", summary.suppressed},
              {"limitPerSecond", static_cast<int64_t>(lines_per_second_)}});
}

uint64_t LogRateLimiter::suppressed_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return suppressed_total_;
}

}  // namespace sidecar::proxy
