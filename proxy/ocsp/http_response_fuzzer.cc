// Fuzzes ParseHttpResponse: whatever a responder sends, parsing never reads past it, a body
// is never larger than the input, and the verdict does not depend on how the bytes were
// split when eof is the same (parsing is of the whole received so far).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/ocsp/http_response.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  for (bool eof : {false, true}) {
    std::string body;
    auto parsed = sidecar::proxy::ParseHttpResponse(input, eof, &body);
    if (parsed.ok() && *parsed == sidecar::proxy::HttpParse::kDone) {
      if (body.size() > size || input.find(body) == std::string::npos) {
        std::abort();
      }
    }
    if (eof && parsed.ok() && *parsed == sidecar::proxy::HttpParse::kNeedMore) {
      std::abort();  // at eof the answer is final
    }
  }
  auto url = sidecar::proxy::ParseHttpUrl(input);
  if (url.ok() && url->host.empty()) {
    std::abort();
  }
  return 0;
}
