// Structured logs (SPEC §9): one JSON object per line on stderr, in the manner of mongod 4.4+:
//
//   {"t":{"$date":"2026-11-21T23:59:00.123+00:00"},"s":"I","c":"NETWORK","id":22943,
//    "msg":"Connection accepted","attr":{"remote":"10.0.0.7:51234","transport":"tls"}}
//
// Any thread may log. A line is formatted by the calling thread, then handed to a writer
// thread through a bounded queue; the caller never waits for stderr. When stderr is slow,
// full (ENOSPC) or gone (EPIPE), lines are dropped and counted, never blocking or killing the
// data path; once writes succeed again a line says how many were lost.
#ifndef SIDECAR_PROXY_OBSERVE_LOG_H_
#define SIDECAR_PROXY_OBSERVE_LOG_H_

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>

namespace sidecar::proxy {

// Severity as mongod writes it in "s": F, E, W, I, D1.
enum class Severity { kFatal, kError, kWarning, kInfo, kDebug };

// Component is "c": which part of the sidecar speaks.
enum class Component {
  kDefault,  // "-"
  kControl,  // "CONTROL": start-up, shutdown, signals, the control socket, mode changes
  kNetwork,  // "NETWORK": listeners, connections, rejections, upstream
  kTls,      // "TLS": handshakes, certificates, reloads
  kEgress,   // "EGRESS": connections to peers
  kMetrics,  // "METRICS": the metrics listener
};

std::string_view SeverityName(Severity severity);     // "I"
std::string_view ComponentName(Component component);  // "NETWORK"

// LogAttr is one key/value of "attr". It refers to the caller's strings (no copy) and is
// meant to live only for the duration of the Log call, as in Log(..., {{"remote", addr}}).
class LogAttr {
 public:
  enum class Type { kString, kInt, kUint, kDouble, kBool, kRawJson };

  LogAttr(std::string_view key, std::string_view value)
      : key_(key), type_(Type::kString), string_(value) {}
  LogAttr(std::string_view key, const char* value)
      : key_(key), type_(Type::kString), string_(value == nullptr ? "" : value) {}
  LogAttr(std::string_view key, const std::string& value)
      : key_(key), type_(Type::kString), string_(value) {}
  LogAttr(std::string_view key, bool value) : key_(key), type_(Type::kBool), bool_(value) {}
  LogAttr(std::string_view key, double value) : key_(key), type_(Type::kDouble), double_(value) {}
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_signed_v<T>)
      LogAttr(std::string_view key, T value)
      : key_(key), type_(Type::kInt), int_(value) {}
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_unsigned_v<T>)
      LogAttr(std::string_view key, T value)
      : key_(key), type_(Type::kUint), uint_(value) {}

  // RawJson inserts `json` verbatim as the value (an object or array built by the caller,
  // e.g. with AppendJsonString). The caller guarantees it is valid JSON.
  static LogAttr RawJson(std::string_view key, std::string_view json) {
    LogAttr attr(key, json);
    attr.type_ = Type::kRawJson;
    return attr;
  }

  // AppendTo writes `"key":value` to `out`.
  void AppendTo(std::string* out) const;

 private:
  std::string_view key_;
  Type type_;
  std::string_view string_;
  union {
    int64_t int_;
    uint64_t uint_;
    double double_;
    bool bool_;
  };
};

// AppendJsonString appends `text` as a JSON string literal (with quotes): '"', '\\' and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, so the line is always valid
// JSON whatever a peer sent (application names, SNI, error strings).
void AppendJsonString(std::string* out, std::string_view text);

// FormatLogLine returns one line (with its trailing '\n'), timestamped `now`. Exposed for
// tests and for tools that print the same format.
std::string FormatLogLine(std::chrono::system_clock::time_point now, Severity severity,
                          Component component, int id, std::string_view msg,
                          std::initializer_list<LogAttr> attrs);

// Log writes one line unless `severity` is below the minimum (debug lines are off by default).
// Thread-safe; never blocks on the output. A kFatal line is flushed before Log returns.
// `id` is mongod's stable message number; 0 leaves it out.
void Log(Severity severity, Component component, std::string_view msg,
         std::initializer_list<LogAttr> attrs = {});
void Log(Severity severity, Component component, int id, std::string_view msg,
         std::initializer_list<LogAttr> attrs = {});

// SetMinLogSeverity: lines less severe than `severity` are discarded (default kInfo). Call at
// start, e.g. kDebug for -v.
void SetMinLogSeverity(Severity severity);
bool LogEnabled(Severity severity);

// SetLogFd sends later lines to `fd` (default 2, stderr); the caller keeps ownership and must
// keep it open while logging may happen. Lines already queued go to the new fd. For tests.
void SetLogFd(int fd);

// FlushLogs waits up to `timeout` for every queued line to be written (or dropped). Call it
// before exiting; returns false on timeout.
bool FlushLogs(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// LogStats counts lines since start: written, and dropped (queue full or write failed).
struct LogStats {
  uint64_t written = 0;
  uint64_t dropped = 0;
};
LogStats GetLogStats();

// LogRateLimiter bounds one kind of message (e.g. "connection rejected: invalid first bytes")
// to `lines_per_second`; what goes over is counted, and one summary line "Suppressed similar
// log messages" with the count follows when the second is over (from the writer thread, so
// it comes even if the flood stops). Give each message kind its own limiter, typically a
// static or a member of a long-lived object. Thread-safe. Must outlive its last use.
class LogRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // With `flush_from_writer`, the writer thread writes the summary of a second that is over
  // even when no further line of this kind comes; tests turn it off to drive the clock.
  explicit LogRateLimiter(int lines_per_second = 10, bool flush_from_writer = true);
  ~LogRateLimiter();
  LogRateLimiter(const LogRateLimiter&) = delete;
  LogRateLimiter& operator=(const LogRateLimiter&) = delete;

  // Log writes the line if this second's budget allows, else counts it. Returns whether the
  // line was written.
  bool Log(Severity severity, Component component, std::string_view msg,
           std::initializer_list<LogAttr> attrs = {});
  // LogAt is Log with the clock given, for tests.
  bool LogAt(Clock::time_point now, Severity severity, Component component, std::string_view msg,
             std::initializer_list<LogAttr> attrs = {});

  // FlushSummary writes the summary line if lines were suppressed in a second that is over at
  // `now` (or in any case when `force`). The writer thread calls it about once a second.
  void FlushSummary(Clock::time_point now, bool force = false);

  // Total lines suppressed since construction.
  uint64_t suppressed_total() const;

 private:
  struct Summary {
    uint64_t suppressed = 0;
    Severity severity = Severity::kInfo;
    Component component = Component::kDefault;
    std::string msg;
  };
  Summary TakeSummaryLocked();  // needs mu_
  void WriteSummary(const Summary& summary) const;

  const int lines_per_second_;
  const bool flush_from_writer_;
  mutable std::mutex mu_;
  Clock::time_point window_start_;
  int lines_in_window_ = 0;
  uint64_t suppressed_in_window_ = 0;
  uint64_t suppressed_total_ = 0;
  Severity severity_ = Severity::kInfo;  // of the suppressed message, for the summary
  Component component_ = Component::kDefault;
  std::string msg_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_LOG_H_
