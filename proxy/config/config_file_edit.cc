#include "proxy/config/config_file_edit.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "certs/pem_file.h"
#include "proxy/base/concat.h"

// See toml_loader.cc: toml++ is compiled in, header-only, because Debian's shared library is
// built with exceptions and we build with TOML_EXCEPTIONS=0.
#undef TOML_SHARED_LIB
#define TOML_SHARED_LIB 0
#undef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

namespace sidecar::proxy {
namespace {


// Where things are in the text comes from toml++'s source regions (line and column, both
// 1-based, columns counted in code points), so nothing here has to know TOML's grammar: a
// lookalike inside a string or a comment never has a region.

// Offset is the byte offset of `position` in `text` (its end when out of range).
size_t Offset(std::string_view text, const toml::source_position& position) {
  size_t offset = 0;
  for (toml::source_index line = 1; line < position.line; ++line) {
    offset = text.find('\n', offset);
    if (offset == std::string_view::npos) {
      return text.size();
    }
    ++offset;
  }
  for (toml::source_index column = 1; column < position.column && offset < text.size(); ++column) {
    // One code point: a lead byte and its UTF-8 continuation bytes (10xxxxxx).
    ++offset;
    while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) {
      ++offset;
    }
  }
  return offset;
}

// NextLine is the offset of the line after the one holding `offset` (the text's end if none).
size_t NextLine(std::string_view text, size_t offset) {
  size_t newline = text.find('\n', offset);
  return newline == std::string_view::npos ? text.size() : newline + 1;
}

// LastLineOf is the last line a node on line `line` reaches, its values and their children
// included (a dotted key's value may be a multi-line array or string).
toml::source_index LastLineOf(const toml::node& node, toml::source_index line) {
  toml::source_index last = node.source().begin.line == line ? node.source().end.line : line;
  if (const toml::table* table = node.as_table(); table != nullptr) {
    for (const auto& [key, child] : *table) {
      last = std::max(last, LastLineOf(child, line));
    }
  } else if (const toml::array* array = node.as_array(); array != nullptr) {
    for (const toml::node& child : *array) {
      last = std::max(last, LastLineOf(child, line));
    }
  }
  return last;
}

// IsNetTlsHeader: the line at `offset` is a `[net.tls]` header, however spaced and quoted
// (not `[net.tls.x]`, which only implies the table).
bool IsNetTlsHeader(std::string_view text, size_t offset) {
  size_t close = text.find(']', offset);
  if (close == std::string_view::npos || text.substr(offset, 2) == "[[") {
    return false;
  }
  std::string name;
  for (char c : text.substr(offset + 1, close - offset - 1)) {
    if (c != ' ' && c != '\t' && c != '"' && c != '\'') {
      name.push_back(c);
    }
  }
  return name == "net.tls";
}

// QuotedLike quotes `name` as the value it replaces was quoted: a literal 'string' stays
// literal; anything else becomes a basic "string".
std::string QuotedLike(std::string_view old_value, std::string_view name) {
  bool literal = old_value.starts_with("'") && !old_value.starts_with("'''");
  return literal ? Concat("'", name, "'") : Concat("\"", name, "\"");
}

// InsertLine puts `line` (with its newline) at `offset`, the start of a line, adding a newline
// first when `offset` is the end of a last line that has none.
void InsertLine(std::string* out, size_t offset, std::string_view line, std::string_view nl) {
  std::string insert = Concat(line, nl);
  if (offset == out->size() && !out->empty() && out->back() != '\n') {
    insert = Concat(nl, insert);
  }
  out->insert(offset, insert);
}

// EditedText is `text` with net.tls.mode set or added, or nullopt when the net.tls table is
// somewhere it cannot add a key to. `root` is `text`, parsed.
std::optional<std::string> EditedText(std::string_view text, const toml::table& root,
                                      std::string_view name) {
  const std::string_view nl = (text.find("\r\n") != std::string::npos) ? "\r\n" : "\n";
  const std::string new_line = Concat("mode = \"", name, "\"");
  std::string out(text);
  const toml::node* tls = root["net"]["tls"].node();
  if (const toml::node* mode = root["net"]["tls"]["mode"].node(); mode != nullptr) {
    size_t begin = Offset(text, mode->source().begin);
    size_t end = Offset(text, mode->source().end);
    if (end <= begin) {
      return std::nullopt;
    }
    out.replace(begin, end - begin, QuotedLike(text.substr(begin, end - begin), name));
    return out;
  }
  if (tls != nullptr && tls->is_table()) {
    const toml::table& table = *tls->as_table();
    size_t at = Offset(text, tls->source().begin);
    if (at >= text.size()) {
      return std::nullopt;
    }
    if (table.is_inline()) {
      // `tls = { ... }`: the region starts at the brace.
      if (text[at] != '{') {
        return std::nullopt;
      }
      out.insert(at + 1, Concat(" ", new_line, table.empty() ? " " : ","));
      return out;
    }
    if (text[at] == '[') {
      if (IsNetTlsHeader(text, at)) {
        InsertLine(&out, NextLine(text, at), new_line, nl);
        return out;
      }
      // Only implied by a [net.tls.x] header: a [net.tls] table of its own goes at the end.
    } else {
      // Dotted keys (`net.tls.X = ...` or, under [net], `tls.X = ...`): the region is the
      // `tls` part of the first one. The new key takes the same prefix, on the line after
      // that key's value.
      size_t line_start = text.rfind('\n', at);
      line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
      while (line_start < at && (text[line_start] == ' ' || text[line_start] == '\t')) {
        ++line_start;
      }
      size_t tls_end = Offset(text, tls->source().end);
      std::string prefix = Concat(text.substr(line_start, tls_end - line_start), ".");
      toml::source_index last = LastLineOf(*tls, tls->source().begin.line);
      size_t after = Offset(text, toml::source_position{last + 1, 1});
      InsertLine(&out, after, Concat(prefix, new_line), nl);
      return out;
    }
  }
  if (!out.empty() && out.back() != '\n') {
    ConcatAppend(&out, nl);
  }
  if (!out.empty()) {
    ConcatAppend(&out, nl);
  }
  ConcatAppend(&out, "[net.tls]", nl, new_line, nl);
  return out;
}

// Expected is what the document must hold after the edit: the original with net.tls.mode set.
bool SetExpectedMode(toml::table& root, Mode mode) {
  toml::table* table = &root;
  for (std::string key : {"net", "tls"}) {
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
  std::optional<std::string> out = EditedText(text, *original, ModeName(mode));
  if (!out.has_value()) {
    return absl::FailedPreconditionError(
        "could not find where net.tls.mode goes in the file; edit it by hand");
  }

  // The edit must change the mode and nothing else, whatever the document looked like.
  toml::table expected = *std::move(original);
  if (!SetExpectedMode(expected, mode)) {
    return absl::FailedPreconditionError("net or net.tls is not a table; edit the file by hand");
  }
  absl::StatusOr<toml::table> edited = Parse(*out, "the edited file");
  if (!edited.ok() || !(*edited == expected)) {
    return absl::FailedPreconditionError(
        "could not set net.tls.mode without changing other settings; edit the file by hand");
  }
  return *std::move(out);
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
