// Concat joins strings and numbers into one std::string. It exists because Debian's Abseil
// is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so
// absl::StrCat refuses the std::string_view our headers return (ModeName, TransportName);
// Concat takes both kinds of views, C strings, std::string, integers and doubles.
// Header-only; any thread.
#ifndef SIDECAR_PROXY_BASE_CONCAT_H_
#define SIDECAR_PROXY_BASE_CONCAT_H_

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sidecar::proxy {

namespace concat_internal {

template <typename T>
void Append(std::string* out, const T& piece) {
  if constexpr (std::is_same_v<T, bool>) {
    out->append(piece ? "true" : "false");
  } else if constexpr (std::is_arithmetic_v<T>) {
    absl::StrAppend(out, piece);
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out->append(std::string_view(piece));
  } else {
    out->append(piece.data(), piece.size());  // absl::string_view
  }
}

}  // namespace concat_internal

// ConcatAppend appends the pieces to `out`.
template <typename... Pieces>
void ConcatAppend(std::string* out, const Pieces&... pieces) {
  (concat_internal::Append(out, pieces), ...);
}

template <typename... Pieces>
std::string Concat(const Pieces&... pieces) {
  std::string out;
  (concat_internal::Append(&out, pieces), ...);
  return out;
}

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_CONCAT_H_
