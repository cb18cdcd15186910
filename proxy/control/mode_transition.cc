#include "proxy/control/mode_transition.h"

#include <string_view>

#include "absl/strings/str_join.h"
#include "proxy/base/concat.h"

namespace sidecar::proxy {

namespace {

// The modes strictly between `from` and `to` (upwards), e.g. "allowTLS and preferTLS".
std::string SkippedModes(Mode from, Mode to) {
  std::vector<std::string> skipped;
  for (int m = static_cast<int>(from) + 1; m < static_cast<int>(to); ++m) {
    skipped.push_back(std::string(ModeName(static_cast<Mode>(m))));
  }
  return absl::StrJoin(skipped, " and ");
}

std::string StepRuleSentence(Mode from, Mode to) {
  if (to > from) {
    return Concat(ModeName(from), " -> ", ModeName(to), " skips ", SkippedModes(from, to),
                  " (modes go up one step at a time: disabled, allowTLS, preferTLS, "
                  "requireTLS); set `force` to skip.");
  }
  return Concat(ModeName(from), " -> ", ModeName(to),
                " is a step down (a rollback); set `force` to go down.");
}

std::string CertificateSentence(Mode to) {
  return Concat(ModeName(to),
                " accepts TLS but no server certificate is loaded (net.tls.certificateKeyFile "
                "or net.tls.certificateSelector), so every TLS client would fail its handshake",
                to == Mode::kRequireTls ? " and no client at all could be served" : "",
                ". Configure net.tls.certificateKeyFile (--tlsCertificateKeyFile) or "
                "net.tls.certificateSelector and restart; `force` does not override this.");
}

std::string GateSentence(const std::vector<OpenPlaintextClient>& clients) {
  int64_t connections = 0;
  for (const OpenPlaintextClient& client : clients) {
    connections += client.connections;
  }
  return Concat(
      connections,
      connections == 1 ? " plaintext client connection is" : " plaintext client connections are",
      " open (see `plaintextClients`); requireTLS would refuse those clients when "
      "they reconnect. Move them to TLS, close them with `drainPlaintext`, or set "
      "`force`.");
}

std::string PreflightSentence(Mode to, int peers, const std::optional<PreflightFacts>& last) {
  std::string when;
  if (!last) {
    when = "no preflight has run since the sidecar started";
  } else if (!last->ok) {
    when = "the last preflight failed";
  } else {
    when = Concat("the last successful preflight is older than ", kPreflightMaxAgeSeconds / 60,
                  " minutes (", last->age_seconds / 60, " min)");
  }
  return Concat(ModeName(to), " makes connections to the ", peers, " egress peer",
                peers == 1 ? "" : "s", " use TLS, and ", when, ". Run `tls-sidecar ctl preflight ",
                ModeName(to), "` until every peer passes, or set `force`.");
}

}  // namespace

std::string_view ObstacleCode(TransitionObstacle obstacle) {
  switch (obstacle) {
    case kNotOneStepUp:
      return "not_one_step";
    case kNoCertificate:
      return "no_certificate";
    case kPlaintextClients:
      return "plaintext_clients";
    case kNoPreflight:
      return "no_preflight";
  }
  return "unknown";
}

bool IsOneStepUp(Mode from, Mode to) { return static_cast<int>(to) == static_cast<int>(from) + 1; }

TransitionDecision DecideTransition(const TransitionRequest& request) {
  TransitionDecision decision;
  if (request.from == request.to) {
    decision.verdict = TransitionVerdict::kUnchanged;
    return decision;
  }
  std::vector<std::string> overridden;
  auto stand_in_the_way = [&decision](TransitionObstacle obstacle, std::string sentence) {
    decision.obstacles |= obstacle;
    decision.reasons.push_back({obstacle, std::move(sentence)});
  };
  if (!IsOneStepUp(request.from, request.to)) {
    stand_in_the_way(kNotOneStepUp, StepRuleSentence(request.from, request.to));
    overridden.push_back(request.to > request.from ? "the one-step rule (a skip)"
                                                   : "the one-step rule (a step down)");
  }
  if (IngressAcceptsTls(request.to) && !request.certificate_loaded) {
    stand_in_the_way(kNoCertificate, CertificateSentence(request.to));
  }
  if (request.to == Mode::kRequireTls && !request.open_plaintext.empty()) {
    decision.plaintext_clients = request.open_plaintext;
    stand_in_the_way(kPlaintextClients, GateSentence(request.open_plaintext));
    overridden.push_back("the plaintext-client gate of requireTLS");
  }
  if (EgressUsesTls(request.to) && !EgressUsesTls(request.from) && request.egress_peers > 0 &&
      !(request.last_preflight && request.last_preflight->ok &&
        request.last_preflight->age_seconds <= kPreflightMaxAgeSeconds)) {
    stand_in_the_way(kNoPreflight,
                     PreflightSentence(request.to, request.egress_peers, request.last_preflight));
    overridden.push_back("the preflight requirement for egress TLS");
  }
  if (decision.obstacles == 0) {
    decision.verdict = TransitionVerdict::kAllowed;
    return decision;
  }
  if (request.force && (decision.obstacles & kNoCertificate) != 0) {
    // The one rule force cannot lift: say only that, the others were overridable.
    decision.verdict = TransitionVerdict::kRefused;
    decision.error =
        Concat("Refused to change the mode from ", ModeName(request.from), " to ",
               ModeName(request.to), ", even with `force`: ", CertificateSentence(request.to));
    return decision;
  }
  if (request.force) {
    decision.verdict = TransitionVerdict::kAllowed;
    decision.overridden = Concat("force overrode ", absl::StrJoin(overridden, ", "), ".");
    return decision;
  }
  std::vector<std::string> sentences;
  for (const TransitionReason& reason : decision.reasons) {
    sentences.push_back(reason.sentence);
  }
  decision.verdict = TransitionVerdict::kRefused;
  decision.error = Concat("Refused to change the mode from ", ModeName(request.from), " to ",
                          ModeName(request.to), ": ", absl::StrJoin(sentences, " "));
  return decision;
}

}  // namespace sidecar::proxy
