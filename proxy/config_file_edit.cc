#include "proxy/config_file_edit.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "certs/pem_file.h"
#include "proxy/concat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// See config.cc: toml++ is compiled in, header-only, because Debian's shared library is built
// with exceptions and we build with TOML_EXCEPTIONS=0.
#undef TOML_SHARED_LIB
#define TOML_SHARED_LIB 0
#undef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

namespace sidecar::proxy {
namespace {


using Path = std::vector<std::string>;

const Path kNetTls = {"net", "tls"};
const Path kNetTlsMode = {"net", "tls", "mode"};

// Places in the document found by Scanner.
struct Places {
  int mode_values = 0;  // how many times net.tls.mode is assigned (1 in a valid file)
  size_t value_begin = 0;
  size_t value_end = 0;
  char quote = 0;                      // '"', '\'' or 0 when the value is not a one-line string
  std::optional<size_t> after_header;  // start of the line after a [net.tls] header
  std::optional<size_t> inline_open;   // just after the '{' of an inline net.tls table
  bool inline_empty = false;
  std::optional<size_t> after_dotted;  // start of the line after a dotted net.tls.X = ... key
  std::string dotted_prefix;           // "net.tls." or "tls.", as the section needs
};

// Scanner walks a TOML document that toml++ has already accepted, to learn the byte positions
// of the places above. It knows just enough TOML to never mistake the inside of a string,
// array or inline table for a key or a header.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : t_(text) {}

  bool Run(Places* places) {
    places_ = places;
    Path section;
    bool in_array_table = false;
    while (true) {
      SkipBlanks();
      if (AtEnd()) {
        return true;
      }
      char c = Peek();
      if (c == '#') {
        SkipComment();
        continue;
      }
      if (c == '\r' || c == '\n') {
        ++p_;
        continue;
      }
      if (c == '[') {
        bool array = Peek(1) == '[';
        p_ += array ? 2 : 1;
        SkipBlanks();
        std::optional<Path> key = Key();
        SkipBlanks();
        if (!key || !Consume(array ? "]]" : "]")) {
          return false;
        }
        section = *key;
        in_array_table = array;
        if (!array && section == kNetTls && !places_->after_header) {
          places_->after_header = NextLineStart(p_);
        }
        continue;
      }
      std::optional<Path> key = Key();
      SkipBlanks();
      if (!key || !Consume("=")) {
        return false;
      }
      SkipBlanks();
      Path full = section;
      full.insert(full.end(), key->begin(), key->end());
      if (!Value(full, /*tracked=*/!in_array_table)) {
        return false;
      }
      // A dotted key such as `tls.CAFile` under [net] defines net.tls implicitly; a new key
      // can go on the next line with the same prefix.
      if (!in_array_table && key->size() > 1 && section.size() < 2 && full.size() > 2 &&
          Path(full.begin(), full.begin() + 2) == kNetTls &&
          std::equal(section.begin(), section.end(), kNetTls.begin()) && !places_->after_dotted) {
        places_->after_dotted = NextLineStart(p_);
        places_->dotted_prefix =
            Concat(absl::StrJoin(kNetTls.begin() + section.size(), kNetTls.end(), "."), ".");
      }
    }
  }

 private:
  bool AtEnd() const { return p_ >= t_.size(); }
  char Peek(size_t ahead = 0) const { return p_ + ahead < t_.size() ? t_[p_ + ahead] : '\0'; }
  bool LookingAt(std::string_view s) const { return t_.substr(p_, s.size()) == s; }
  bool Consume(std::string_view s) {
    if (!LookingAt(s)) {
      return false;
    }
    p_ += s.size();
    return true;
  }
  void SkipBlanks() {
    while (Peek() == ' ' || Peek() == '\t') {
      ++p_;
    }
  }
  void SkipComment() {
    if (Peek() == '#') {
      while (!AtEnd() && Peek() != '\n') {
        ++p_;
      }
    }
  }
  void SkipBlanksCommentsNewlines() {
    while (true) {
      SkipBlanks();
      SkipComment();
      if (Peek() == '\r' || Peek() == '\n') {
        ++p_;
        continue;
      }
      return;
    }
  }
  size_t NextLineStart(size_t from) const {
    size_t nl = t_.find('\n', from);
    return nl == std::string_view::npos ? t_.size() : nl + 1;
  }

  std::optional<std::string> KeySegment() {
    std::string out;
    char c = Peek();
    if (c == '"') {
      ++p_;
      while (!AtEnd() && Peek() != '"') {
        if (Peek() == '\\') {
          char e = Peek(1);
          p_ += 2;
          switch (e) {
            case 'n':
              out.push_back('\n');
              break;
            case 't':
              out.push_back('\t');
              break;
            case 'u':
            case 'U': {
              size_t digits = e == 'u' ? 4 : 8;
              unsigned long cp = strtoul(std::string(t_.substr(p_, digits)).c_str(), nullptr, 16);
              // Only ASCII matters for the names compared here.
              out.push_back(cp < 0x80 ? static_cast<char>(cp) : '\x01');
              p_ += digits;
              break;
            }
            default:
              out.push_back(e);
          }
          continue;
        }
        out.push_back(Peek());
        ++p_;
      }
      if (!Consume("\"")) {
        return std::nullopt;
      }
      return out;
    }
    if (c == '\'') {
      ++p_;
      size_t close = t_.find('\'', p_);
      if (close == std::string_view::npos) {
        return std::nullopt;
      }
      out = std::string(t_.substr(p_, close - p_));
      p_ = close + 1;
      return out;
    }
    while (absl::ascii_isalnum(static_cast<unsigned char>(Peek())) || Peek() == '_' ||
           Peek() == '-') {
      out.push_back(Peek());
      ++p_;
    }
    if (out.empty()) {
      return std::nullopt;
    }
    return out;
  }

  std::optional<Path> Key() {
    Path path;
    while (true) {
      std::optional<std::string> segment = KeySegment();
      if (!segment) {
        return std::nullopt;
      }
      path.push_back(*std::move(segment));
      SkipBlanks();
      if (Peek() != '.') {
        return path;
      }
      ++p_;
      SkipBlanks();
    }
  }

  // SkipMultiline skips past a closing delimiter `q` x3, which may be followed by up to two
  // more quotes that belong to the string (TOML allows `""""` at the end).
  bool SkipMultiline(char q) {
    while (!AtEnd()) {
      if (q == '"' && Peek() == '\\') {
        p_ += 2;
        continue;
      }
      if (Peek() == q && Peek(1) == q && Peek(2) == q) {
        size_t run = 0;
        while (Peek(run) == q) {
          ++run;
        }
        p_ += run;
        return true;
      }
      ++p_;
    }
    return false;
  }

  bool Value(const Path& path, bool tracked) {
    const size_t begin = p_;
    char quote = 0;
    char c = Peek();
    if (LookingAt("\"\"\"") || LookingAt("'''")) {
      p_ += 3;
      if (!SkipMultiline(c)) {
        return false;
      }
    } else if (c == '"') {
      ++p_;
      while (!AtEnd() && Peek() != '"' && Peek() != '\n') {
        p_ += Peek() == '\\' ? 2 : 1;
      }
      if (!Consume("\"")) {
        return false;
      }
      quote = '"';
    } else if (c == '\'') {
      ++p_;
      while (!AtEnd() && Peek() != '\'' && Peek() != '\n') {
        ++p_;
      }
      if (!Consume("'")) {
        return false;
      }
      quote = '\'';
    } else if (c == '[') {
      ++p_;
      while (true) {
        SkipBlanksCommentsNewlines();
        if (Consume("]")) {
          break;
        }
        if (!Value({}, /*tracked=*/false)) {
          return false;
        }
        SkipBlanksCommentsNewlines();
        if (Consume(",")) {
          continue;
        }
        if (!Consume("]")) {
          return false;
        }
        break;
      }
    } else if (c == '{') {
      ++p_;
      bool is_net_tls = tracked && path == kNetTls;
      if (is_net_tls && !places_->inline_open) {
        places_->inline_open = p_;
      }
      SkipBlanksCommentsNewlines();
      if (Consume("}")) {
        if (is_net_tls) {
          places_->inline_empty = true;
        }
      } else {
        while (true) {
          SkipBlanksCommentsNewlines();
          std::optional<Path> key = Key();
          SkipBlanks();
          if (!key || !Consume("=")) {
            return false;
          }
          SkipBlanks();
          Path full = path;
          full.insert(full.end(), key->begin(), key->end());
          if (!Value(full, tracked)) {
            return false;
          }
          SkipBlanksCommentsNewlines();
          if (Consume(",")) {
            continue;
          }
          if (!Consume("}")) {
            return false;
          }
          break;
        }
      }
    } else {
      // Numbers, booleans, dates (which may hold one space): up to a delimiter.
      while (!AtEnd() && std::string_view(",]}#\r\n").find(Peek()) == std::string_view::npos) {
        ++p_;
      }
      size_t end = p_;
      while (end > begin && (t_[end - 1] == ' ' || t_[end - 1] == '\t')) {
        --end;
      }
      p_ = end;
      if (end == begin) {
        return false;
      }
    }
    if (tracked && path == kNetTlsMode) {
      ++places_->mode_values;
      places_->value_begin = begin;
      places_->value_end = p_;
      places_->quote = quote;
    }
    return true;
  }

  std::string_view t_;
  size_t p_ = 0;
  Places* places_ = nullptr;
};

// Expected is what the document must hold after the edit: the original with net.tls.mode set.
bool SetExpectedMode(toml::table& root, Mode mode) {
  toml::table* table = &root;
  for (const std::string& key : kNetTls) {
    auto [it, inserted] = table->emplace<toml::table>(key);
    table = it->second.as_table();
    if (table == nullptr) {
      return false;
    }
  }
  table->insert_or_assign("mode", std::string(ModeName(mode)));
  return true;
}

absl::StatusOr<toml::table> Parse(std::string_view text, std::string_view what) {
  toml::parse_result result = toml::parse(text, std::string_view("config"));
  if (!result) {
    return absl::FailedPreconditionError(Concat(what, " does not parse as TOML (line ",
                                             result.error().source().begin.line, ": ",
                                             result.error().description(), ")"));
  }
  return std::move(result).table();
}


bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> SetModeInTomlText(std::string_view text, Mode mode) {
  absl::StatusOr<toml::table> original = Parse(text, "the file");
  if (!original.ok()) {
    return original.status();
  }
  const std::string_view name = ModeName(mode);
  const std::string_view nl = (text.find("\r\n") != std::string::npos) ? "\r\n" : "\n";
  const std::string new_line = Concat("mode = \"", name, "\"");
  Places places;
  Scanner scanner(text);
  if (!scanner.Run(&places)) {
    return absl::FailedPreconditionError(
        "could not find where net.tls.mode goes in the file; edit it by hand");
  }
  std::string out(text);
  if (places.mode_values == 1) {
    std::string value = places.quote == '\'' ? Concat("'", name, "'") : Concat("\"", name, "\"");
    out.replace(places.value_begin, places.value_end - places.value_begin, value);
  } else if (places.mode_values > 1) {
    return absl::FailedPreconditionError("net.tls.mode is set more than once; edit it by hand");
  } else if (places.after_header) {
    std::string insert = Concat(new_line, nl);
    if (*places.after_header == out.size() && !out.empty() && out.back() != '\n') {
      insert = Concat(nl, insert);
    }
    out.insert(*places.after_header, insert);
  } else if (places.inline_open) {
    out.insert(*places.inline_open, Concat(" ", new_line, places.inline_empty ? " " : ","));
  } else if (places.after_dotted) {
    std::string insert = Concat(places.dotted_prefix, new_line, nl);
    if (*places.after_dotted == out.size() && !out.empty() && out.back() != '\n') {
      insert = Concat(nl, insert);
    }
    out.insert(*places.after_dotted, insert);
  } else {
    if (!out.empty() && out.back() != '\n') {
      ConcatAppend(&out, nl);
    }
    if (!out.empty()) {
      ConcatAppend(&out, nl);
    }
    ConcatAppend(&out, "[net.tls]", nl, new_line, nl);
  }

  // The edit must change the mode and nothing else, whatever the document looked like.
  toml::table expected = *std::move(original);
  if (!SetExpectedMode(expected, mode)) {
    return absl::FailedPreconditionError("net or net.tls is not a table; edit the file by hand");
  }
  absl::StatusOr<toml::table> edited = Parse(out, "the edited file");
  if (!edited.ok() || !(*edited == expected)) {
    return absl::FailedPreconditionError(
        "could not set net.tls.mode without changing other settings; edit the file by hand");
  }
  return out;
}

absl::Status PersistMode(const std::string& config_file, Mode mode) {
  auto fail = [&](std::string_view what) {
    return absl::FailedPreconditionError(
        Concat(config_file, ": ", what, "; the mode was not persisted"));
  };
  // Edit the file a symlink points to, not the link (a rename would replace the link).
  char resolved[PATH_MAX];
  if (realpath(config_file.c_str(), resolved) == nullptr) {
    return fail(Concat("cannot resolve the path: ", strerror(errno)));
  }
  const std::string target = resolved;
  struct stat st;
  if (stat(target.c_str(), &st) != 0) {
    return fail(Concat("cannot stat: ", strerror(errno)));
  }
  absl::StatusOr<std::string> text = certs::ReadFileToString(target);
  if (!text.ok()) {
    return fail(std::string(text.status().message()));
  }
  absl::StatusOr<std::string> edited = SetModeInTomlText(*text, mode);
  if (!edited.ok()) {
    return fail(std::string(edited.status().message()));
  }
  if (*edited == *text) {
    return absl::OkStatus();
  }

  const size_t slash = target.rfind('/');
  const std::string dir = slash == 0 ? "/" : target.substr(0, slash);
  const std::string base = target.substr(slash + 1);
  std::string temp = Concat(dir, "/.", base, ".tmp-XXXXXX");
  int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return fail(Concat("cannot create a temporary file in ", dir, ": ", strerror(errno)));
  }
  auto abandon = [&](std::string_view what) {
    int saved = errno;
    if (fd >= 0) {
      close(fd);
    }
    unlink(temp.c_str());
    return fail(Concat(what, ": ", strerror(saved)));
  };
  if (fchmod(fd, st.st_mode & 07777) != 0) {
    return abandon(Concat("cannot set the permissions of ", temp));
  }
  if ((st.st_uid != geteuid() || st.st_gid != getegid()) && fchown(fd, st.st_uid, st.st_gid) != 0) {
    // Only root may give a file away; anyone else writes a file of their own, as an editor
    // would. The permission bits are kept either way.
    errno = 0;
  }
  if (!WriteAll(fd, *edited)) {
    return abandon(Concat("cannot write ", temp));
  }
  if (fsync(fd) != 0) {
    return abandon(Concat("cannot sync ", temp));
  }
  int closing = fd;
  fd = -1;
  if (close(closing) != 0) {
    return abandon(Concat("cannot write ", temp));
  }
  if (rename(temp.c_str(), target.c_str()) != 0) {
    return abandon(Concat("cannot replace ", target));
  }
  // The rename is durable only once the directory entry is.
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace sidecar::proxy
