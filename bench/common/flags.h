// Copyright the tls-sidecar authors.

#ifndef SIDECAR_BENCH_COMMON_FLAGS_H_
#define SIDECAR_BENCH_COMMON_FLAGS_H_

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sidecar::bench {

// Flags holds `--name value`, `--name=value` and bare `--name` (value "true") arguments
// of a bench tool. Parsed once in main(); read-only afterwards.
class Flags {
 public:
  // Parse returns the flags of argv, or InvalidArgument for a positional argument.
  static absl::StatusOr<Flags> Parse(int argc, char** argv) {
    Flags flags;
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (arg.substr(0, 2) != "--") {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument: ", std::string(arg)));
      }
      arg.remove_prefix(2);
      size_t eq = arg.find('=');
      if (eq != std::string_view::npos) {
        flags.values_[std::string(arg.substr(0, eq))] = std::string(arg.substr(eq + 1));
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--") {
        flags.values_[std::string(arg)] = argv[++i];
      } else {
        flags.values_[std::string(arg)] = "true";
      }
    }
    return flags;
  }

  std::string String(const std::string& name, std::string fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }

  // Number returns the flag as a double; a value that is not a number is reported in
  // `bad_` and read as the fallback.
  double Number(const std::string& name, double fallback) {
    auto it = values_.find(name);
    if (it == values_.end()) {
      return fallback;
    }
    double v = 0;
    if (!absl::SimpleAtod(it->second, &v)) {
      bad_ = absl::StrCat("--", name, ": not a number: ", it->second);
      return fallback;
    }
    return v;
  }

  bool Bool(const std::string& name) const {
    auto it = values_.find(name);
    return it != values_.end() && it->second != "false" && it->second != "0";
  }

  // error returns the first malformed value seen by Number(), or "" when all were good.
  const std::string& error() const { return bad_; }

 private:
  std::map<std::string, std::string> values_;
  std::string bad_;
};

}  // namespace sidecar::bench

#endif  // SIDECAR_BENCH_COMMON_FLAGS_H_
