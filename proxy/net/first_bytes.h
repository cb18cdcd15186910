// The first bytes of an ingress connection, decided without sockets: FirstBytes keeps what
// the sniff needs, DecideAdmission turns its verdict and the mode into what the connection
// does next, and FirstRequest reads the client's first request (its identity, and what to
// answer it with when the connection is refused). Pure and single-threaded; the connection
// feeds them the bytes it reads, the fuzzer (fuzz/first_bytes_fuzzer.cc) feeds them anything.
#ifndef SIDECAR_PROXY_NET_FIRST_BYTES_H_
#define SIDECAR_PROXY_NET_FIRST_BYTES_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "protocol/hello.h"
#include "protocol/sniffer.h"
#include "proxy/base/close_reason.h"
#include "proxy/base/mode.h"

namespace sidecar::proxy {

// FirstBytes copies the first kSniffBytes of a connection, across any number of reads.
class FirstBytes {
 public:
  // Add copies what the sniff still lacks from `bytes` and returns the verdict so far
  // (kNeedMore until one is possible; once given it never changes).
  protocol::SniffVerdict Add(absl::Span<const uint8_t> bytes);
  absl::Span<const uint8_t> bytes() const { return {bytes_.data(), size_}; }
  bool empty() const { return size_ == 0; }

 private:
  std::array<uint8_t, protocol::kSniffBytes> bytes_{};
  size_t size_ = 0;
};

// Admission is what a connection does once the sniff has a verdict.
struct Admission {
  enum class Action {
    kHandshake,       // TLS and the mode serves it: start a TLS server session
    kAdmit,           // MongoDB and the mode serves plaintext: proxy it
    kRefuseRequest,   // plaintext in requireTLS: read the first request, answer it, close
    kAnswerAndClose,  // say `answer` (a TLS alert, an HTTP response) and close
    kClose,           // close at once
  };
  Action action = Action::kClose;
  CloseReason reason = CloseReason::kFinished;  // for every action but kHandshake and kAdmit
  std::string answer;                           // kAnswerAndClose only
};

// DecideAdmission: `verdict` (not kNeedMore) of `first_bytes` under `mode` (SPEC §2, §3).
// `certificate_loaded` is asked only for TLS, so plaintext admission never reads the snapshot.
Admission DecideAdmission(protocol::SniffVerdict verdict, absl::Span<const uint8_t> first_bytes,
                          Mode mode, absl::FunctionRef<bool()> certificate_loaded);

// FirstRequest copies (bounded) the start of the client's plaintext until its first message
// is inspected, then lets go of the copy.
class FirstRequest {
 public:
  // The first request is copied only this far; a hello is a few hundred bytes.
  static constexpr size_t kMaxInspectedBytes = 64 * 1024;

  // Add takes the next plaintext from the client; returns true when this call finished the
  // inspection (then identified() or undecodable() says how it went). Bytes after that are
  // ignored.
  bool Add(absl::Span<const uint8_t> bytes);

  bool inspected() const { return inspected_; }
  bool identified() const { return identified_; }
  const protocol::RequestInfo& request() const { return request_; }
  // TakeMetadata moves the identified client's hello metadata out (for the connection to
  // keep; request().metadata is empty after). Refusal does not need it.
  protocol::HelloMetadata TakeMetadata() { return std::move(request_.metadata); }
  // undecodable: why an inspected request yielded no identity ("" when identified).
  const std::string& undecodable() const { return undecodable_; }

  // Refusal is the reply to the first request of a connection refused for `reason`
  // (plaintext_in_requireTLS or upstream_unavailable); empty when there is nothing the
  // client could read. Only once inspected().
  std::vector<uint8_t> Refusal(CloseReason reason, std::string_view upstream_error) const;

 private:
  std::string copy_;
  bool inspected_ = false;
  bool identified_ = false;
  protocol::RequestInfo request_;
  // The request id and opcode to answer the first message in, from its header alone: set
  // whenever the header frames as MongoDB, even when the body cannot be decoded.
  std::optional<protocol::RequestInfo> reply_target_;
  std::string undecodable_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_FIRST_BYTES_H_
