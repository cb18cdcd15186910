// Fuzzes the connection fed the first bytes of a connection without sockets: the sniff
// (FirstBytes), the admission decision under every mode (DecideAdmission) and the first
// request's inspection and refusal (FirstRequest). The first input byte chooses how the
// rest is cut into reads. Invariants: reads cut anywhere give the same verdict, decision
// and inspection as one read; a decision is never to proxy plaintext where the mode refuses
// it, nor TLS where it is disabled; a refusal answers with a whole MongoDB message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "protocol/sniffer.h"
#include "proxy/base/mode.h"
#include "proxy/net/first_bytes.h"

namespace {

using sidecar::proxy::Admission;
using sidecar::proxy::CloseReason;
using sidecar::proxy::FirstBytes;
using sidecar::proxy::FirstRequest;
using sidecar::proxy::Mode;

void Check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

// Feed gives `input` to both inspectors in reads of `step` bytes (0: all at once).
template <typename F>
void InReads(const uint8_t* data, size_t size, size_t step, F&& read) {
  if (step == 0) {
    read(absl::MakeConstSpan(data, size));
    return;
  }
  for (size_t at = 0; at < size; at += step) {
    read(absl::MakeConstSpan(data + at, std::min(step, size - at)));
  }
}

void CheckRefusal(const FirstRequest& request, CloseReason reason) {
  std::vector<uint8_t> reply = request.Refusal(reason, "connection refused");
  if (!reply.empty()) {
    int32_t length = 0;
    Check(reply.size() >= 16);
    std::memcpy(&length, reply.data(), 4);
    Check(static_cast<size_t>(length) == reply.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  size_t step = data[0] % 17;
  data += 1;
  size -= 1;

  FirstBytes whole;
  auto full = whole.Add(absl::MakeConstSpan(data, size));
  FirstBytes cut;
  auto verdict = sidecar::protocol::SniffVerdict::kNeedMore;
  InReads(data, size, step, [&](absl::Span<const uint8_t> read) {
    if (verdict == sidecar::protocol::SniffVerdict::kNeedMore) {
      verdict = cut.Add(read);
    }
  });
  Check(verdict == full);
  if (verdict == sidecar::protocol::SniffVerdict::kNeedMore) {
    Check(size < sidecar::protocol::kSniffBytes);
    return 0;
  }

  for (Mode mode : {Mode::kDisabled, Mode::kAllowTls, Mode::kPreferTls, Mode::kRequireTls}) {
    for (bool certificate : {false, true}) {
      Admission admission =
          DecideAdmission(verdict, cut.bytes(), mode, [&] { return certificate; });
      using Action = Admission::Action;
      Check(admission.action != Action::kAdmit || IngressAcceptsPlaintext(mode));
      Check(admission.action != Action::kHandshake || (IngressAcceptsTls(mode) && certificate));
      Check(admission.action != Action::kAnswerAndClose || !admission.answer.empty());
      if (admission.action != Action::kAdmit && admission.action != Action::kRefuseRequest) {
        continue;
      }
      FirstRequest one;
      FirstRequest many;
      one.Add(absl::MakeConstSpan(data, size));
      InReads(data, size, step, [&](absl::Span<const uint8_t> read) { many.Add(read); });
      Check(one.inspected() == many.inspected() && one.identified() == many.identified());
      if (one.inspected()) {
        CheckRefusal(many, CloseReason::kPlaintextInRequireTls);
        CheckRefusal(many, CloseReason::kUpstreamUnavailable);
      }
    }
  }
  return 0;
}
