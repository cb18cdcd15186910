// RenderStatusPage turns StatusPageData into the status page (SPEC §8): one self-contained
// HTML document, no script at all, no external style, font or image (an inline SVG draws
// the TLS/plaintext mix), refreshed by a meta tag every kStatusPageRefreshSeconds. Every
// string that a client or a certificate controls (application, driver, address, subject)
// goes through HtmlEscape, and so does everything else, so no value can open an element
// or an attribute. kStatusPagePolicy is the Content-Security-Policy it is served with: it
// forbids scripts and every fetch outright, a second wall behind the escaping.
//
// Pure functions; any thread.
#ifndef SIDECAR_PROXY_OBSERVE_STATUS_PAGE_H_
#define SIDECAR_PROXY_OBSERVE_STATUS_PAGE_H_

#include <string>
#include <string_view>

#include "proxy/observe/status_board.h"

namespace sidecar::proxy {

inline constexpr int kStatusPageRefreshSeconds = 5;

inline constexpr char kStatusPagePolicy[] =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

// HtmlEscape replaces & < > " ' with character references; safe in text and in quoted
// attribute values.
std::string HtmlEscape(std::string_view text);

// RenderStatusPage renders `data`; with nullopt, a page that says the first sample is not
// in yet.
std::string RenderStatusPage(const std::optional<StatusPageData>& data);

// MixChartSvg is the inline SVG of the TLS/plaintext mix (exposed for tests).
std::string MixChartSvg(const std::vector<MixSample>& mix);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_OBSERVE_STATUS_PAGE_H_
