#include "proxy/config/suggest.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "proxy/base/concat.h"

namespace sidecar::proxy {

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      bool same = absl::ascii_tolower(static_cast<unsigned char>(a[i - 1])) ==
                  absl::ascii_tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string Suggestion(std::string_view wrong, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 3;  // only near misses: a typo or a wrong case
  for (const std::string& c : candidates) {
    size_t d = EditDistance(wrong, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  if (best.empty()) {
    return "";
  }
  return Concat("; did you mean ", best, "?");
}

}  // namespace sidecar::proxy
