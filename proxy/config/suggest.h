// Suggestion finds the near miss behind a misspelt key or flag, for "did you mean" in error
// messages. Pure functions; any thread.
#ifndef SIDECAR_PROXY_CONFIG_SUGGEST_H_
#define SIDECAR_PROXY_CONFIG_SUGGEST_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::proxy {

// EditDistance is the Levenshtein distance between `a` and `b`, ignoring ASCII case
// differences.
size_t EditDistance(std::string_view a, std::string_view b);

// Suggestion returns "; did you mean X?" for the candidate closest to `wrong` when it is a
// near miss (a typo or a wrong case: distance under 3), or "".
std::string Suggestion(std::string_view wrong, const std::vector<std::string>& candidates);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONFIG_SUGGEST_H_
