#include "proxy/observe/status_page.h"

#include <algorithm>
#include <tuple>
#include <vector>

#include "proxy/base/concat.h"

namespace sidecar::proxy {

namespace {

constexpr char kStyle[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}"
    "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}"
    "table{border-collapse:collapse}td,th{padding:.2em .8em .2em 0;text-align:left;"
    "vertical-align:top}th{border-bottom:1px solid #999}"
    ".verdict{font-size:1.3em;font-weight:bold;padding:.3em .6em;display:inline-block}"
    ".ready{background:#d7f5d7}.warnings{background:#fff0c2}.not-ready{background:#ffd6d6}"
    ".refused{color:#a00}.muted{color:#777}code{background:#f3f3f3}";

// Colours of the chart's two lines, also used in its legend.
constexpr char kTlsColour[] = "#2a7d2a";
constexpr char kPlaintextColour[] = "#d2691e";

std::string Time(int64_t unix) { return HtmlEscape(certs::FormatUnixTime(unix)); }

std::string Ago(int64_t now, int64_t then) {
  int64_t s = std::max<int64_t>(0, now - then);
  if (s < 120) {
    return Concat(s, " s ago");
  }
  if (s < 7200) {
    return Concat(s / 60, " min ago");
  }
  return Concat(s / 3600, " h ago");
}

void AppendList(std::string* out, const char* id, const char* css,
                const std::vector<std::string>& items) {
  if (items.empty()) {
    return;
  }
  ConcatAppend(out, "<ul id=\"", id, "\" class=\"", css, "\">");
  for (const std::string& item : items) {
    ConcatAppend(out, "<li>", HtmlEscape(item), "</li>");
  }
  ConcatAppend(out, "</ul>");
}

void AppendVerdict(std::string* out, const StatusPageData& d) {
  const char* css = d.verdict == "ready"       ? "ready"
                    : d.verdict == "not ready" ? "not-ready"
                                               : "warnings";
  ConcatAppend(out, "<section id=\"readiness\"><h2>Next step: ", HtmlEscape(d.mode),
                  " &rarr; ", HtmlEscape(d.next_mode), "</h2><div id=\"verdict\" class=\"verdict ",
                  css, "\">", HtmlEscape(d.verdict), "</div>");
  if (!d.note.empty()) {
    ConcatAppend(out, "<p class=\"muted\">", HtmlEscape(d.note), "</p>");
  }
  AppendList(out, "reasons", "reasons", d.reasons);
  AppendList(out, "warnings", "warnings", d.warnings);
  ConcatAppend(out,
                  "<p class=\"muted\">The same answer for scripts: <code>tls-sidecar ctl "
                  "readiness ",
                  HtmlEscape(d.next_mode), "</code> (exit status 0 when ready).</p></section>");
}

void AppendClients(std::string* out, const StatusPageData& d) {
  std::vector<ClientRow> rows = d.clients;
  // Grouped by application, then driver, then address, so one application's hosts sit
  // together; connected before refused within a group.
  std::sort(rows.begin(), rows.end(), [](const ClientRow& a, const ClientRow& b) {
    return std::tie(a.application, a.driver, a.address, a.state) <
           std::tie(b.application, b.driver, b.address, b.state);
  });
  ConcatAppend(out, "<section id=\"clients\"><h2>Plaintext clients</h2>");
  if (rows.empty()) {
    ConcatAppend(out, "<p class=\"muted\">No plaintext client seen since start.</p></section>");
    return;
  }
  ConcatAppend(out,
                  "<table><tr><th>Application</th><th>Driver</th><th>Address</th><th>Kind</th>"
                  "<th>State</th><th>Open</th><th>Total</th><th>Last seen</th></tr>");
  for (const ClientRow& row : rows) {
    std::string_view state = ClientStateName(row.state);
    ConcatAppend(out, "<tr class=\"client ", state, "\"><td class=\"application\">",
                    HtmlEscape(row.application), "</td><td class=\"driver\">",
                    HtmlEscape(row.driver), "</td><td class=\"address\">", HtmlEscape(row.address),
                    "</td><td>", row.member ? "member" : "client", "</td><td class=\"state\">",
                    state, "</td><td>", row.active, "</td><td>", row.total, "</td><td>",
                    Ago(d.now_unix, row.last_seen_unix_ms / 1000), "</td></tr>");
  }
  ConcatAppend(out, "</table></section>");
}

void AppendPeers(std::string* out, const StatusPageData& d) {
  ConcatAppend(out, "<section id=\"peers\"><h2>Egress peers and preflight</h2>");
  if (d.egress_peers == 0) {
    ConcatAppend(out, "<p class=\"muted\">No [[egress.peers]] configured.</p></section>");
    return;
  }
  if (!d.preflight) {
    ConcatAppend(out, "<p>", d.egress_peers,
                    " peers configured; no preflight since start: run <code>tls-sidecar ctl "
                    "preflight MODE</code>.</p></section>");
    return;
  }
  const PreflightRecord& p = *d.preflight;
  ConcatAppend(out, "<p id=\"preflight\">Last preflight: ", HtmlEscape(p.mode), ", ",
                  Ago(d.now_unix, p.unix), ", ", p.ok ? "passed" : "<b>failed</b>",
                  ".</p><table><tr><th>Peer</th><th>Result</th><th>Detail</th></tr>");
  for (const PreflightRecord::Peer& peer : p.peers) {
    ConcatAppend(out, "<tr><td>", HtmlEscape(peer.target), "</td><td>",
                    peer.passed ? "passed" : "failed", "</td><td>", HtmlEscape(peer.detail),
                    "</td></tr>");
  }
  ConcatAppend(out, "</table></section>");
}

void AppendCertificates(std::string* out, const StatusPageData& d) {
  ConcatAppend(out, "<section id=\"certificates\"><h2>Certificates</h2>");
  if (d.certificates.empty()) {
    ConcatAppend(out, "<p class=\"muted\">None loaded.</p></section>");
    return;
  }
  ConcatAppend(out,
                  "<table><tr><th>Role</th><th>Subject</th><th>Expires</th><th>Days left</th>"
                  "<th>SHA-1</th></tr>");
  for (const certs::CertificateInfo& cert : d.certificates) {
    ConcatAppend(out, "<tr><td>", HtmlEscape(cert.role), "</td><td>", HtmlEscape(cert.subject),
                    "</td><td>", Time(cert.not_after), "</td><td>",
                    (cert.not_after - d.now_unix) / 86400, "</td><td><code>",
                    HtmlEscape(cert.sha1_hex), "</code></td></tr>");
  }
  ConcatAppend(out, "</table></section>");
}

void AppendChanges(std::string* out, const StatusPageData& d) {
  ConcatAppend(out, "<section id=\"changes\"><h2>Recent mode changes</h2>");
  if (d.changes.empty()) {
    ConcatAppend(out, "<p class=\"muted\">None since start; it started in ",
                    HtmlEscape(d.mode), ".</p></section>");
    return;
  }
  ConcatAppend(out,
                  "<table><tr><th>When</th><th>From</th><th>To</th><th>By uid</th><th>Command</th>"
                  "<th>Forced</th></tr>");
  for (auto it = d.changes.rbegin(); it != d.changes.rend(); ++it) {
    ConcatAppend(out, "<tr><td>", Time(it->unix), "</td><td>", HtmlEscape(it->from),
                    "</td><td>", HtmlEscape(it->to), "</td><td>", it->uid, "</td><td>",
                    HtmlEscape(it->command), "</td><td>", it->forced ? "yes" : "no",
                    "</td></tr>");
  }
  ConcatAppend(out, "</table></section>");
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string MixChartSvg(const std::vector<MixSample>& mix) {
  constexpr int kWidth = 600;
  constexpr int kHeight = 160;
  constexpr int kPad = 24;
  std::string out = Concat("<svg id=\"mix-chart\" ",
                                 "width=\"", kWidth, "\" height=\"", kHeight, "\" viewBox=\"0 0 ",
                                 kWidth, " ", kHeight, "\" role=\"img\">",
                                 "<title>Open ingress connections, TLS and plaintext</title>",
                                 "<rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>");
  if (mix.size() < 2) {
    ConcatAppend(&out, "<text x=\"", kPad, "\" y=\"", kHeight / 2,
                    "\" fill=\"#777\">collecting samples...</text></svg>");
    return out;
  }
  int64_t top = 1;
  for (const MixSample& s : mix) {
    top = std::max({top, s.tls, s.plaintext});
  }
  const int64_t t0 = mix.front().unix;
  const int64_t span = std::max<int64_t>(1, mix.back().unix - t0);
  auto line = [&](auto value, const char* colour, const char* id) {
    std::string points;
    for (const MixSample& s : mix) {
      double x = kPad + static_cast<double>(s.unix - t0) * (kWidth - 2 * kPad) / span;
      double y = kHeight - kPad - static_cast<double>(value(s)) * (kHeight - 2 * kPad) / top;
      ConcatAppend(&points, static_cast<int>(x), ",", static_cast<int>(y), " ");
    }
    ConcatAppend(&out, "<polyline id=\"", id, "\" fill=\"none\" stroke=\"", colour,
                    "\" stroke-width=\"2\" points=\"", points, "\"/>");
  };
  ConcatAppend(&out, "<line x1=\"", kPad, "\" y1=\"", kHeight - kPad, "\" x2=\"",
                  kWidth - kPad, "\" y2=\"", kHeight - kPad, "\" stroke=\"#999\"/>",
                  "<text x=\"2\" y=\"", kPad, "\" font-size=\"11\" fill=\"#555\">", top,
                  "</text><text x=\"2\" y=\"", kHeight - kPad, "\" font-size=\"11\" "
                  "fill=\"#555\">0</text><text x=\"", kPad, "\" y=\"", kHeight - 6,
                  "\" font-size=\"11\" fill=\"#555\">", span / 60, " min ", span % 60,
                  " s ago</text><text x=\"", kWidth - kPad - 24, "\" y=\"", kHeight - 6,
                  "\" font-size=\"11\" fill=\"#555\">now</text>");
  line([](const MixSample& s) { return s.tls; }, kTlsColour, "mix-tls");
  line([](const MixSample& s) { return s.plaintext; }, kPlaintextColour, "mix-plaintext");
  ConcatAppend(&out, "</svg>");
  return out;
}

std::string RenderStatusPage(const std::optional<StatusPageData>& data) {
  std::string out = Concat(
      "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta http-equiv=\"refresh\" content=\"",
      kStatusPageRefreshSeconds,
      "\"><meta name=\"viewport\" content=\"width=device-width\">"
      "<title>tls-sidecar status</title><style>",
      kStyle, "</style></head><body>");
  if (!data) {
    ConcatAppend(&out, "<h1>tls-sidecar</h1><p>Starting: the first sample is not in yet.</p>"
                          "</body></html>");
    return out;
  }
  const StatusPageData& d = *data;
  const MixSample now = d.mix.empty() ? MixSample{} : d.mix.back();
  ConcatAppend(&out, "<h1>tls-sidecar</h1><p>Mode <b id=\"mode\">", HtmlEscape(d.mode),
                  "</b> &middot; version ", HtmlEscape(d.version), " &middot; up ",
                  d.uptime_seconds / 3600, " h ", (d.uptime_seconds % 3600) / 60,
                  " min &middot; ", Time(d.now_unix), "</p>");
  AppendVerdict(&out, d);
  ConcatAppend(&out, "<section id=\"mix\"><h2>Connections: <span style=\"color:", kTlsColour,
                  "\">", now.tls, " TLS</span>, <span style=\"color:", kPlaintextColour, "\">",
                  now.plaintext, " plaintext</span></h2>", MixChartSvg(d.mix), "</section>");
  AppendClients(&out, d);
  AppendPeers(&out, d);
  AppendCertificates(&out, d);
  AppendChanges(&out, d);
  ConcatAppend(&out, "</body></html>");
  return out;
}

}  // namespace sidecar::proxy
