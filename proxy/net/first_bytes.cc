#include "proxy/net/first_bytes.h"

#include <algorithm>
#include <cstring>

#include "protocol/error_reply.h"
#include "protocol/tls_alert.h"
#include "protocol/wire.h"

namespace sidecar::proxy {

protocol::SniffVerdict FirstBytes::Add(absl::Span<const uint8_t> bytes) {
  size_t copy = std::min(bytes_.size() - size_, bytes.size());
  if (copy > 0) {
    std::memcpy(bytes_.data() + size_, bytes.data(), copy);
    size_ += copy;
  }
  return protocol::Sniff(this->bytes());
}

namespace {

Admission Refuse(Admission::Action action, CloseReason reason, std::string answer = "") {
  Admission admission;
  admission.action = action;
  admission.reason = reason;
  admission.answer = std::move(answer);
  return admission;
}

std::string Alert() {
  auto alert = protocol::TlsHandshakeFailureAlert();
  return std::string(alert.begin(), alert.end());
}

}  // namespace

Admission DecideAdmission(protocol::SniffVerdict verdict, absl::Span<const uint8_t> first_bytes,
                          Mode mode, absl::FunctionRef<bool()> certificate_loaded) {
  using Action = Admission::Action;
  switch (verdict) {
    case protocol::SniffVerdict::kTls:
      if (!IngressAcceptsTls(mode)) {
        return Refuse(Action::kAnswerAndClose, CloseReason::kTlsInDisabled, Alert());
      }
      if (!certificate_loaded()) {
        return Refuse(Action::kAnswerAndClose, CloseReason::kNoCertificate, Alert());
      }
      return {Action::kHandshake};
    case protocol::SniffVerdict::kMongo:
      if (!IngressAcceptsPlaintext(mode)) {
        return Refuse(Action::kRefuseRequest, CloseReason::kPlaintextInRequireTls);
      }
      return {Action::kAdmit};
    case protocol::SniffVerdict::kHttp:
      return Refuse(Action::kAnswerAndClose, CloseReason::kHttpOnNativePort,
                    std::string(protocol::HttpOnNativePortResponse()));
    case protocol::SniffVerdict::kUnsupportedTls:
      return Refuse(Action::kClose, CloseReason::kUnsupportedTls);
    case protocol::SniffVerdict::kInvalid:
      // A MongoDB header whose responseTo is neither 0 nor -1 is no client's first message
      // (SPEC §3), but in requireTLS it is still a plaintext client that can read why.
      if (!IngressAcceptsPlaintext(mode) && protocol::RequestToAnswer(first_bytes)) {
        return Refuse(Action::kRefuseRequest, CloseReason::kPlaintextInRequireTls);
      }
      return Refuse(Action::kClose, CloseReason::kInvalidFirstBytes);
    case protocol::SniffVerdict::kNeedMore:
      break;
  }
  // Asked before a verdict: a caller's bug, answered safely.
  return Refuse(Action::kClose, CloseReason::kInvalidFirstBytes);
}

bool FirstRequest::Add(absl::Span<const uint8_t> bytes) {
  if (inspected_) {
    return false;
  }
  size_t take = std::min(bytes.size(), kMaxInspectedBytes - copy_.size());
  copy_.append(reinterpret_cast<const char*>(bytes.data()), take);
  auto copied = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(copy_.data()), copy_.size());
  auto result = protocol::InspectFirstRequest(copied);
  if (result.status == protocol::ParseStatus::kNeedMore && copy_.size() < kMaxInspectedBytes) {
    return false;
  }
  inspected_ = true;
  reply_target_ = protocol::RequestToAnswer(copied);
  if (result.status == protocol::ParseStatus::kDone) {
    identified_ = true;
    request_ = result.request;
  } else {
    // Fail open: the bytes go on untouched; only the identity is unknown.
    undecodable_ = result.status == protocol::ParseStatus::kError
                       ? result.error
                       : "first request larger than inspected";
  }
  copy_.clear();
  copy_.shrink_to_fit();
  return true;
}

std::vector<uint8_t> FirstRequest::Refusal(CloseReason reason,
                                           std::string_view upstream_error) const {
  if (reason == CloseReason::kPlaintextInRequireTls) {
    // The refusal needs only the request id and opcode: a message that frames as MongoDB
    // is answered even when compressed, too large to inspect or too deep to decode.
    return reply_target_ ? protocol::BuildTlsRequiredReply(*reply_target_) : std::vector<uint8_t>{};
  }
  bool answerable =
      request_.op_code == protocol::OpCode::kMsg || request_.op_code == protocol::OpCode::kQuery;
  if (answerable && identified_) {
    return protocol::BuildUpstreamUnavailableReply(request_, upstream_error);
  }
  return {};
}

}  // namespace sidecar::proxy
