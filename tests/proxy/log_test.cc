#include "proxy/observe/log.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// A strict JSON reader (RFC 8259), so that every line is checked the way a log shipper would
// read it: raw control characters, bad escapes and invalid UTF-8 are all rejected.

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
  bool boolean = false;
  std::string number;  // as written
  std::string string;  // decoded
  std::vector<Json> array;
  std::vector<std::string> keys;  // of an object, in order; values[i] is keys[i]'s value
  std::vector<Json> values;

  const Json* Get(const std::string& key) const {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) {
        return &values[i];
      }
    }
    return nullptr;
  }
};

class JsonReader {
 public:
  static std::unique_ptr<Json> Parse(std::string_view text) {
    JsonReader reader(text);
    auto value = std::make_unique<Json>();
    if (!reader.Value(value.get())) {
      return nullptr;
    }
    reader.Blanks();
    return reader.p_ == text.size() ? std::move(value) : nullptr;
  }

 private:
  explicit JsonReader(std::string_view t) : t_(t) {}

  void Blanks() {
    while (p_ < t_.size() &&
           (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) {
      ++p_;
    }
  }
  bool Take(char c) {
    Blanks();
    if (p_ < t_.size() && t_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Literal(std::string_view word) {
    if (t_.substr(p_, word.size()) != word) {
      return false;
    }
    p_ += word.size();
    return true;
  }
  static void AppendUtf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool Hex4(uint32_t* out) {
    if (p_ + 4 > t_.size()) {
      return false;
    }
    *out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = t_[p_++];
      *out <<= 4;
      if (c >= '0' && c <= '9') {
        *out |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        *out |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        *out |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }
  bool String(std::string* out) {
    if (!Take('"')) {
      return false;
    }
    while (p_ < t_.size()) {
      unsigned char c = static_cast<unsigned char>(t_[p_]);
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) {
        return false;  // raw control character
      }
      if (c == '\\') {
        if (++p_ >= t_.size()) {
          return false;
        }
        char e = t_[p_++];
        switch (e) {
          case '"':
            out->push_back('"');
            break;
          case '\\':
            out->push_back('\\');
            break;
          case '/':
            out->push_back('/');
            break;
          case 'b':
            out->push_back('\b');
            break;
          case 'f':
            out->push_back('\f');
            break;
          case 'n':
            out->push_back('\n');
            break;
          case 'r':
            out->push_back('\r');
            break;
          case 't':
            out->push_back('\t');
            break;
          case 'u': {
            uint32_t cp;
            if (!Hex4(&cp)) {
              return false;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              uint32_t low;
              if (!Literal("\\u") || !Hex4(&low) || low < 0xDC00 || low > 0xDFFF) {
                return false;
              }
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              return false;
            }
            AppendUtf8(out, cp);
            break;
          }
          default:
            return false;
        }
        continue;
      }
      // Raw UTF-8 must be valid: decode and re-check the range.
      size_t length = c < 0x80           ? 1
                      : (c >> 5) == 0x6  ? 2
                      : (c >> 4) == 0xE  ? 3
                      : (c >> 3) == 0x1E ? 4
                                         : 0;
      if (length == 0 || p_ + length > t_.size()) {
        return false;
      }
      uint32_t cp = length == 1 ? c : c & (0xFF >> (length + 1));
      for (size_t i = 1; i < length; ++i) {
        unsigned char cc = static_cast<unsigned char>(t_[p_ + i]);
        if ((cc & 0xC0) != 0x80) {
          return false;
        }
        cp = (cp << 6) | (cc & 0x3F);
      }
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < kMin[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return false;
      }
      out->append(t_.substr(p_, length));
      p_ += length;
    }
    return false;
  }
  bool Value(Json* v) {
    Blanks();
    if (p_ >= t_.size()) {
      return false;
    }
    char c = t_[p_];
    if (c == '{') {
      ++p_;
      v->type = Json::Type::kObject;
      if (Take('}')) {
        return true;
      }
      do {
        std::string key;
        Blanks();
        if (!String(&key) || !Take(':')) {
          return false;
        }
        Json member;
        if (!Value(&member)) {
          return false;
        }
        v->keys.push_back(std::move(key));
        v->values.push_back(std::move(member));
      } while (Take(','));
      return Take('}');
    }
    if (c == '[') {
      ++p_;
      v->type = Json::Type::kArray;
      if (Take(']')) {
        return true;
      }
      do {
        Json element;
        if (!Value(&element)) {
          return false;
        }
        v->array.push_back(std::move(element));
      } while (Take(','));
      return Take(']');
    }
    if (c == '"') {
      v->type = Json::Type::kString;
      return String(&v->string);
    }
    if (Literal("true")) {
      v->type = Json::Type::kBool;
      v->boolean = true;
      return true;
    }
    if (Literal("false")) {
      v->type = Json::Type::kBool;
      return true;
    }
    if (Literal("null")) {
      return true;
    }
    static const std::regex kNumber(R"(^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_search(t_.begin() + static_cast<std::ptrdiff_t>(p_), t_.end(), m, kNumber)) {
      return false;
    }
    v->type = Json::Type::kNumber;
    v->number = m.str();
    p_ += v->number.size();
    return true;
  }

  std::string_view t_;
  size_t p_ = 0;
};

TEST(JsonReaderTest, RejectsWhatIsNotJson) {
  for (std::string_view bad : {"{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\xff\"}",
                               "{\"a\":\"\xc0\x80\"}", "{\"a\":1,}", "{\"a\":NaN}", "{a:1}"}) {
    EXPECT_EQ(JsonReader::Parse(bad), nullptr) << bad;
  }
  EXPECT_NE(JsonReader::Parse("{\"a\":[1,-2.5e3,true,null,\"\\ud83d\\ude00\"]}"), nullptr);
}

std::unique_ptr<Json> ParseLine(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per object";
  auto json = JsonReader::Parse(line.substr(0, line.size() - 1));
  EXPECT_NE(json, nullptr) << line;
  return json;
}

// ---------------------------------------------------------------------------------------------
// Format.

TEST(FormatLogLineTest, WritesMongodStyleFields) {
  // 2026-11-21T23:59:00.123Z
  auto when = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795305540123));
  std::string line =
      FormatLogLine(when, Severity::kInfo, Component::kNetwork, 22943, "Connection accepted",
                    {{"remote", "10.0.0.7:51234"},
                     {"connectionCount", 12},
                     {"tls", true},
                     {"seconds", 1.5},
                     {"bytes", uint64_t{18446744073709551615u}},
                     LogAttr::RawJson("peers", "[\"a\",\"b\"]")});
  EXPECT_EQ(line,
            "{\"t\":{\"$date\":\"2026-11-21T23:59:00.123+00:00\"},\"s\":\"I\",\"c\":\"NETWORK\","
            "\"id\":22943,\"msg\":\"Connection accepted\",\"attr\":{\"remote\":\"10.0.0.7:51234\","
            "\"connectionCount\":12,\"tls\":true,\"seconds\":1.5,"
            "\"bytes\":18446744073709551615,\"peers\":[\"a\",\"b\"]}}\n");
  auto json = ParseLine(line);
  ASSERT_NE(json, nullptr);
  EXPECT_EQ(json->Get("t")->Get("$date")->string, "2026-11-21T23:59:00.123+00:00");
}

TEST(FormatLogLineTest, LeavesOutAZeroIdAndKeepsAnEmptyAttr) {
  std::string line = FormatLogLine(std::chrono::system_clock::now(), Severity::kDebug,
                                   Component::kDefault, 0, "x", {});
  auto json = ParseLine(line);
  ASSERT_NE(json, nullptr);
  EXPECT_EQ(json->Get("id"), nullptr);
  EXPECT_EQ(json->Get("s")->string, "D1");
  EXPECT_EQ(json->Get("c")->string, "-");
  ASSERT_NE(json->Get("attr"), nullptr);
  EXPECT_EQ(json->Get("attr")->type, Json::Type::kObject);
  EXPECT_THAT(json->Get("t")->Get("$date")->string,
              ::testing::MatchesRegex(
                  R"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}\+00:00)"));
}

TEST(FormatLogLineTest, SeveritiesAndComponentsAreMongods) {
  EXPECT_EQ(SeverityName(Severity::kFatal), "F");
  EXPECT_EQ(SeverityName(Severity::kError), "E");
  EXPECT_EQ(SeverityName(Severity::kWarning), "W");
  EXPECT_EQ(SeverityName(Severity::kInfo), "I");
  EXPECT_EQ(SeverityName(Severity::kDebug), "D1");
  EXPECT_EQ(ComponentName(Component::kControl), "CONTROL");
  EXPECT_EQ(ComponentName(Component::kTls), "TLS");
}

struct EscapeCase {
  std::string input;
  std::string decoded;  // what a JSON reader gets back
};

TEST(AppendJsonStringTest, EscapesAndRepairsSoEveryLineIsValidJson) {
  const std::string kReplacement = "\xEF\xBF\xBD";
  const std::vector<EscapeCase> cases = {
      {"plain", "plain"},
      {"quote \" backslash \\ slash /", "quote \" backslash \\ slash /"},
      {"new\nline\rtab\tbell\abs\bff\f", "new\nline\rtab\tbell\abs\bff\f"},
      {std::string("nul\0byte", 8), std::string("nul\0byte", 8)},
      {"del\x7f", "del\x7f"},
      {"caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x80\xA8", "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x80\xA8"},
      {"bad\xFF", "bad" + kReplacement},
      {"truncated\xC3", "truncated" + kReplacement},
      {"overlong\xC0\x80", "overlong" + kReplacement + kReplacement},
      {"surrogate\xED\xA0\x80", "surrogate" + kReplacement + kReplacement + kReplacement},
      {"too big\xF5\x80\x80\x80",
       "too big" + kReplacement + kReplacement + kReplacement + kReplacement},
      {"\xE2\x82", kReplacement + kReplacement},
  };
  for (const EscapeCase& test : cases) {
    std::string out;
    AppendJsonString(&out, test.input);
    for (char c : out) {
      EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20) << "raw control character in " << out;
    }
    auto json = JsonReader::Parse(out);
    ASSERT_NE(json, nullptr) << out;
    EXPECT_EQ(json->string, test.decoded) << out;
  }
  // Every single byte value, alone and inside text.
  for (int b = 0; b < 256; ++b) {
    std::string out;
    AppendJsonString(&out, std::string("a") + static_cast<char>(b) + "z");
    EXPECT_NE(JsonReader::Parse(out), nullptr) << b;
  }
}

TEST(AppendJsonStringTest, KeysAreEscapedToo) {
  std::string line = FormatLogLine(std::chrono::system_clock::now(), Severity::kInfo,
                                   Component::kTls, 0, "m\"sg", {{"we\"ird\n", "v"}});
  auto json = ParseLine(line);
  ASSERT_NE(json, nullptr);
  EXPECT_EQ(json->Get("msg")->string, "m\"sg");
  ASSERT_NE(json->Get("attr")->Get("we\"ird\n"), nullptr);
}

TEST(FormatLogLineTest, NonFiniteDoublesStayValidJson) {
  std::string line =
      FormatLogLine(std::chrono::system_clock::now(), Severity::kInfo, Component::kTls, 0, "m",
                    {{"nan", std::nan("")},
                     {"inf", std::numeric_limits<double>::infinity()},
                     {"ninf", -std::numeric_limits<double>::infinity()},
                     {"small", 1e-300}});
  auto json = ParseLine(line);
  ASSERT_NE(json, nullptr);
  EXPECT_EQ(json->Get("attr")->Get("nan")->string, "NaN");
  EXPECT_EQ(json->Get("attr")->Get("ninf")->string, "-Infinity");
  EXPECT_EQ(json->Get("attr")->Get("small")->number, "1e-300");
}

// ---------------------------------------------------------------------------------------------
// Output.

// CapturedLog sends the process's log lines to a temporary file for the test's duration.
class CapturedLog {
 public:
  CapturedLog() {
    std::string pattern = ::testing::TempDir() + "/log_test_XXXXXX";
    fd_ = mkstemp(pattern.data());
    path_ = pattern;
    FlushLogs();
    SetLogFd(fd_);
  }
  int fd() const { return fd_; }
  ~CapturedLog() {
    FlushLogs();
    SetLogFd(STDERR_FILENO);
    close(fd_);
    unlink(path_.c_str());
  }
  std::vector<std::string> Lines() {
    EXPECT_TRUE(FlushLogs(5000ms));
    std::vector<std::string> lines;
    std::string text;
    char buffer[65536];
    ssize_t n;
    off_t offset = 0;
    while ((n = pread(fd_, buffer, sizeof(buffer), offset)) > 0) {
      text.append(buffer, static_cast<size_t>(n));
      offset += n;
    }
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      EXPECT_NE(end, std::string::npos) << "unterminated line";
      if (end == std::string::npos) {
        break;
      }
      lines.push_back(text.substr(start, end - start + 1));
      start = end + 1;
    }
    return lines;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

std::vector<std::string> Messages(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const std::string& line : lines) {
    auto json = ParseLine(line);
    if (json != nullptr && json->Get("msg") != nullptr) {
      out.push_back(json->Get("msg")->string);
    }
  }
  return out;
}

TEST(LogTest, WritesLinesAndSkipsDebugUnlessEnabled) {
  CapturedLog log;
  Log(Severity::kInfo, Component::kControl, "first", {{"k", 1}});
  Log(Severity::kDebug, Component::kControl, "hidden");
  SetMinLogSeverity(Severity::kDebug);
  Log(Severity::kDebug, Component::kControl, 51800, "shown");
  SetMinLogSeverity(Severity::kInfo);
  EXPECT_FALSE(LogEnabled(Severity::kDebug));
  EXPECT_TRUE(LogEnabled(Severity::kWarning));
  std::vector<std::string> lines = log.Lines();
  EXPECT_EQ(Messages(lines), (std::vector<std::string>{"first", "shown"}));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("\"id\":51800"));
}

TEST(LogTest, ConcurrentWritersNeverInterleaveLines) {
  CapturedLog log;
  constexpr int kThreads = 4;
  constexpr int kLines = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kLines; ++i) {
        Log(Severity::kInfo, Component::kNetwork, "line",
            {{"thread", t}, {"i", i}, {"padding", std::string(100, 'x')}});
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines));
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    auto json = ParseLine(line);
    ASSERT_NE(json, nullptr);
    int t = std::stoi(json->Get("attr")->Get("thread")->number);
    int i = std::stoi(json->Get("attr")->Get("i")->number);
    EXPECT_EQ(i, next[t]) << "lines of one thread stay in order";
    next[t] = i + 1;
  }
}

TEST(LogTest, FailedWritesAreDroppedCountedAndReported) {
  CapturedLog log;
  // A pipe nobody reads any more: EPIPE (and SIGPIPE, which must not kill us).
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  FlushLogs();
  uint64_t dropped_before = GetLogStats().dropped;
  SetLogFd(fds[1]);
  Log(Severity::kError, Component::kNetwork, "lost 1");
  Log(Severity::kError, Component::kNetwork, "lost 2");
  FlushLogs();
  // A full disk.
  int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (full >= 0) {
    SetLogFd(full);
    Log(Severity::kError, Component::kNetwork, "lost 3");
    FlushLogs();
  }
  uint64_t lost = full >= 0 ? 3 : 2;
  EXPECT_EQ(GetLogStats().dropped - dropped_before, lost);
  close(fds[1]);

  // Once the output works again, the first batch is followed by a count of what was lost.
  SetLogFd(log.fd());
  if (full >= 0) {
    close(full);
  }
  Log(Severity::kInfo, Component::kNetwork, "recovered");
  std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Messages(lines), (std::vector<std::string>{"recovered", "Log lines were dropped"}));
  auto json = ParseLine(lines[1]);
  ASSERT_NE(json, nullptr);
  EXPECT_EQ(json->Get("s")->string, "W");
  EXPECT_GE(std::stoull(json->Get("attr")->Get("dropped")->number), lost);
}

TEST(LogTest, AStalledOutputNeverBlocksTheCaller) {
  CapturedLog log;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  FlushLogs();
  uint64_t dropped_before = GetLogStats().dropped;
  SetLogFd(fds[1]);  // nobody reads: the writer fills the pipe and blocks
  const std::string padding(1000, 'p');
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10000; ++i) {  // ~10 MB: more than the pipe and the queue hold
    Log(Severity::kInfo, Component::kNetwork, "flood", {{"padding", padding}});
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 5s);
  EXPECT_GT(GetLogStats().dropped, dropped_before);
  // Unblock the writer: with the reader gone its write fails with EPIPE.
  close(fds[0]);
  EXPECT_TRUE(FlushLogs(5000ms));
  SetLogFd(log.fd());
  close(fds[1]);
  Log(Severity::kInfo, Component::kNetwork, "after the flood");
  EXPECT_EQ(Messages(log.Lines()),
            (std::vector<std::string>{"after the flood", "Log lines were dropped"}));
}

// ---------------------------------------------------------------------------------------------
// Rate limiting.

TEST(LogRateLimiterTest, AllowsNPerSecondThenOneSummary) {
  CapturedLog log;
  LogRateLimiter limiter(3, /*flush_from_writer=*/false);
  auto t0 = LogRateLimiter::Clock::now();
  int written = 0;
  for (int i = 0; i < 10; ++i) {
    written += limiter.LogAt(t0 + std::chrono::milliseconds(i * 10), Severity::kWarning,
                             Component::kNetwork, "Rejected connection",
                             {{"reason", "invalid_first_bytes"}, {"i", i}})
                   ? 1
                   : 0;
  }
  EXPECT_EQ(written, 3);
  EXPECT_EQ(limiter.suppressed_total(), 7u);
  // Still inside the first second: nothing more is written.
  limiter.FlushSummary(t0 + 500ms);
  EXPECT_EQ(log.Lines().size(), 3u);
  // The next second: the summary first, then the line.
  EXPECT_TRUE(limiter.LogAt(t0 + 1100ms, Severity::kWarning, Component::kNetwork,
                            "Rejected connection", {{"i", 10}}));
  std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 5u);
  auto summary = ParseLine(lines[3]);
  ASSERT_NE(summary, nullptr);
  EXPECT_EQ(summary->Get("msg")->string, "Suppressed similar log messages");
  EXPECT_EQ(summary->Get("s")->string, "W");
  EXPECT_EQ(summary->Get("c")->string, "NETWORK");
  EXPECT_EQ(summary->Get("attr")->Get("suppressed")->number, "7");
  EXPECT_EQ(summary->Get("attr")->Get("message")->string, "Rejected connection");
  EXPECT_EQ(summary->Get("attr")->Get("limitPerSecond")->number, "3");
  auto next = ParseLine(lines[4]);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->Get("attr")->Get("i")->number, "10");
}

TEST(LogRateLimiterTest, AFloodWritesABoundedNumberOfLines) {
  CapturedLog log;
  LogRateLimiter limiter(5, /*flush_from_writer=*/false);
  auto t0 = LogRateLimiter::Clock::now();
  // 100000 attempts over 10 seconds: 5 lines and at most one summary per second.
  for (int i = 0; i < 100000; ++i) {
    limiter.LogAt(t0 + std::chrono::microseconds(i * 100), Severity::kInfo, Component::kNetwork,
                  "Connection accepted");
  }
  limiter.FlushSummary(t0 + 20s);
  std::vector<std::string> lines = log.Lines();
  EXPECT_LE(lines.size(), 10u * 6u);
  EXPECT_GE(lines.size(), 10u * 5u);
  uint64_t summarised = 0;
  for (const std::string& line : lines) {
    auto json = ParseLine(line);
    ASSERT_NE(json, nullptr);
    if (json->Get("msg")->string == "Suppressed similar log messages") {
      summarised += std::stoull(json->Get("attr")->Get("suppressed")->number);
    }
  }
  EXPECT_EQ(summarised, limiter.suppressed_total());
  EXPECT_EQ(summarised + (lines.size() - 10), 100000u) << "every attempt is accounted for";
}

TEST(LogRateLimiterTest, WriterThreadSummarisesAfterTheFloodStops) {
  CapturedLog log;
  LogRateLimiter limiter(2);
  for (int i = 0; i < 50; ++i) {
    limiter.Log(Severity::kInfo, Component::kTls, "Handshake failed");
  }
  // No further call: the summary must still come, within about two seconds.
  std::vector<std::string> messages;
  for (int attempt = 0; attempt < 40; ++attempt) {
    std::this_thread::sleep_for(100ms);
    messages = Messages(log.Lines());
    if (messages.size() == 3) {
      break;
    }
  }
  EXPECT_EQ(messages, (std::vector<std::string>{"Handshake failed", "Handshake failed",
                                                "Suppressed similar log messages"}));
}

TEST(LogRateLimiterTest, DestructionFlushesThePendingSummary) {
  CapturedLog log;
  {
    LogRateLimiter limiter(1, /*flush_from_writer=*/false);
    limiter.Log(Severity::kInfo, Component::kEgress, "Peer unreachable");
    limiter.Log(Severity::kInfo, Component::kEgress, "Peer unreachable");
  }
  EXPECT_EQ(Messages(log.Lines()),
            (std::vector<std::string>{"Peer unreachable", "Suppressed similar log messages"}));
}

}  // namespace
}  // namespace sidecar::proxy
