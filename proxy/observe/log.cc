#include "proxy/observe/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "proxy/observe/log_writer.h"

namespace sidecar::proxy {
namespace {

std::atomic<int> g_min_severity{static_cast<int>(Severity::kInfo)};

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
  LogWriter& writer = LogWriter::Get();
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

void SetLogFd(int fd) { LogWriter::Get().SetFd(fd); }

bool FlushLogs(std::chrono::milliseconds timeout) { return LogWriter::Get().Flush(timeout); }

LogStats GetLogStats() { return LogWriter::Get().Stats(); }

LogRateLimiter::LogRateLimiter(int lines_per_second, bool flush_from_writer)
    : lines_per_second_(std::max(lines_per_second, 1)), flush_from_writer_(flush_from_writer) {
  if (flush_from_writer_) {
    LogWriter::Get().Register(this);
  }
}

LogRateLimiter::~LogRateLimiter() {
  if (flush_from_writer_) {
    LogWriter::Get().Unregister(this);
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
