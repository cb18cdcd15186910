// The first bytes of an ingress connection, decided without sockets (proxy/net/first_bytes.h):
// what each verdict does under each mode, the sniff across reads cut anywhere, and the first
// request read for the client's identity and answered when the connection is refused.
#include "proxy/net/first_bytes.h"

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/bson.h"
#include "protocol/error_reply.h"
#include "protocol/tls_alert.h"
#include "protocol/wire.h"
#include "tests/support/bson_builder.h"

namespace sidecar::proxy {
namespace {

using protocol::SniffVerdict;
using Action = Admission::Action;

std::vector<uint8_t> Hello(int32_t request_id) {
  support::BsonBuilder body;
  body.AppendInt32("hello", 1).AppendString("$db", "admin");
  body.StartDocument("client")
      .StartDocument("application")
      .AppendString("name", "first-bytes")
      .EndDocument()
      .EndDocument();
  return protocol::BuildOpMsg(request_id, 0, body.Finish());
}

absl::Span<const uint8_t> Span(const std::vector<uint8_t>& bytes) {
  return absl::MakeConstSpan(bytes);
}

Admission Decide(SniffVerdict verdict, Mode mode, bool certificate = true,
                 const std::vector<uint8_t>& bytes = {}) {
  return DecideAdmission(verdict, Span(bytes), mode, [&] { return certificate; });
}

struct Case {
  SniffVerdict verdict;
  Mode mode;
  Action action;
  CloseReason reason;  // for the refusing actions
};

TEST(DecideAdmissionTest, EachVerdictUnderEachMode) {
  const Case cases[] = {
      {SniffVerdict::kTls, Mode::kDisabled, Action::kAnswerAndClose, CloseReason::kTlsInDisabled},
      {SniffVerdict::kTls, Mode::kAllowTls, Action::kHandshake, CloseReason::kFinished},
      {SniffVerdict::kTls, Mode::kPreferTls, Action::kHandshake, CloseReason::kFinished},
      {SniffVerdict::kTls, Mode::kRequireTls, Action::kHandshake, CloseReason::kFinished},
      {SniffVerdict::kMongo, Mode::kDisabled, Action::kAdmit, CloseReason::kFinished},
      {SniffVerdict::kMongo, Mode::kAllowTls, Action::kAdmit, CloseReason::kFinished},
      {SniffVerdict::kMongo, Mode::kPreferTls, Action::kAdmit, CloseReason::kFinished},
      {SniffVerdict::kMongo, Mode::kRequireTls, Action::kRefuseRequest,
       CloseReason::kPlaintextInRequireTls},
      {SniffVerdict::kHttp, Mode::kAllowTls, Action::kAnswerAndClose,
       CloseReason::kHttpOnNativePort},
      {SniffVerdict::kHttp, Mode::kRequireTls, Action::kAnswerAndClose,
       CloseReason::kHttpOnNativePort},
      {SniffVerdict::kUnsupportedTls, Mode::kAllowTls, Action::kClose,
       CloseReason::kUnsupportedTls},
      {SniffVerdict::kInvalid, Mode::kAllowTls, Action::kClose, CloseReason::kInvalidFirstBytes},
      {SniffVerdict::kInvalid, Mode::kRequireTls, Action::kClose, CloseReason::kInvalidFirstBytes},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "verdict " << static_cast<int>(c.verdict) << " mode " << ModeName(c.mode));
    Admission admission = Decide(c.verdict, c.mode);
    EXPECT_EQ(admission.action, c.action);
    if (c.action != Action::kHandshake && c.action != Action::kAdmit) {
      EXPECT_EQ(admission.reason, c.reason);
    }
  }
}

TEST(DecideAdmissionTest, TlsWithoutACertificateIsRefusedWithAnAlert) {
  Admission admission = Decide(SniffVerdict::kTls, Mode::kRequireTls, /*certificate=*/false);
  EXPECT_EQ(admission.action, Action::kAnswerAndClose);
  EXPECT_EQ(admission.reason, CloseReason::kNoCertificate);
  auto alert = protocol::TlsHandshakeFailureAlert();
  EXPECT_EQ(admission.answer, std::string(alert.begin(), alert.end()));
}

TEST(DecideAdmissionTest, PlaintextNeverAsksForTheCertificate) {
  bool asked = false;
  DecideAdmission(SniffVerdict::kMongo, {}, Mode::kAllowTls, [&] {
    asked = true;
    return true;
  });
  EXPECT_FALSE(asked);
}

TEST(DecideAdmissionTest, HttpIsAnsweredAsMongodAnswersIt) {
  Admission admission = Decide(SniffVerdict::kHttp, Mode::kAllowTls);
  EXPECT_EQ(admission.answer, std::string(protocol::HttpOnNativePortResponse()));
}

TEST(DecideAdmissionTest, InvalidHeaderThatFramesAsARequestIsToldTlsIsRequired) {
  // responseTo 5: no client's first message (SPEC §3), but in requireTLS still answerable.
  std::vector<uint8_t> header = Hello(3);
  header[8] = 5;
  EXPECT_EQ(protocol::Sniff(Span(header)), SniffVerdict::kInvalid);
  Admission admission = Decide(SniffVerdict::kInvalid, Mode::kRequireTls, true, header);
  EXPECT_EQ(admission.action, Action::kRefuseRequest);
  EXPECT_EQ(admission.reason, CloseReason::kPlaintextInRequireTls);
}

TEST(FirstBytesTest, VerdictIsTheSameWhereverTheReadsAreCut) {
  std::vector<uint8_t> hello = Hello(1);
  for (size_t cut = 0; cut <= protocol::kSniffBytes; ++cut) {
    FirstBytes bytes;
    SniffVerdict first = bytes.Add(Span(hello).first(cut));
    SniffVerdict second = bytes.Add(Span(hello).subspan(cut));
    EXPECT_EQ(second, SniffVerdict::kMongo) << "cut at " << cut;
    if (cut < protocol::kSniffBytes) {
      EXPECT_EQ(first, SniffVerdict::kNeedMore) << "cut at " << cut;
    }
    EXPECT_EQ(bytes.bytes().size(), protocol::kSniffBytes);
  }
}

TEST(FirstBytesTest, KeepsOnlyWhatTheSniffNeeds) {
  FirstBytes bytes;
  EXPECT_TRUE(bytes.empty());
  std::vector<uint8_t> hello = Hello(1);
  bytes.Add(Span(hello));
  EXPECT_FALSE(bytes.empty());
  EXPECT_EQ(bytes.bytes().size(), protocol::kSniffBytes);
}

TEST(FirstRequestTest, IdentifiesTheClientAcrossOneByteReads) {
  std::vector<uint8_t> hello = Hello(9);
  FirstRequest request;
  size_t finished_at = 0;
  for (size_t i = 0; i < hello.size(); ++i) {
    if (request.Add(Span(hello).subspan(i, 1))) {
      finished_at = i + 1;
    }
  }
  EXPECT_EQ(finished_at, hello.size());  // finished by the last byte, not before
  ASSERT_TRUE(request.identified());
  EXPECT_EQ(request.request().metadata.application, "first-bytes");
  EXPECT_TRUE(request.undecodable().empty());
  EXPECT_FALSE(request.Add(Span(hello))) << "bytes after the first request are ignored";
}

TEST(FirstRequestTest, RefusalsAnswerTheRequestId) {
  std::vector<uint8_t> hello = Hello(21);
  FirstRequest request;
  ASSERT_TRUE(request.Add(Span(hello)));
  for (CloseReason reason :
       {CloseReason::kPlaintextInRequireTls, CloseReason::kUpstreamUnavailable}) {
    std::vector<uint8_t> reply = request.Refusal(reason, "connection refused");
    ASSERT_GE(reply.size(), protocol::kHeaderSize);
    protocol::Frame frame = protocol::FrameMessage(Span(reply));
    EXPECT_EQ(frame.status, protocol::ParseStatus::kDone);
    EXPECT_EQ(frame.header.response_to, 21);
  }
}

TEST(FirstRequestTest, UndecodableRequestIsStillToldTlsIsRequiredButNotWhyUpstreamFailed) {
  std::vector<uint8_t> hello = Hello(22);
  hello[20] = 0x7f;  // the first section kind (after header and flags): none such
  FirstRequest request;
  ASSERT_TRUE(request.Add(Span(hello)));
  EXPECT_TRUE(request.inspected());
  EXPECT_FALSE(request.identified());
  EXPECT_FALSE(request.undecodable().empty());
  EXPECT_FALSE(request.Refusal(CloseReason::kPlaintextInRequireTls, "").empty());
  EXPECT_TRUE(request.Refusal(CloseReason::kUpstreamUnavailable, "refused").empty());
}

TEST(FirstRequestTest, GivesUpBeyondTheInspectionBound) {
  std::vector<uint8_t> huge = Hello(23);
  int32_t declared = static_cast<int32_t>(FirstRequest::kMaxInspectedBytes * 2);
  std::memcpy(huge.data(), &declared, 4);
  huge.resize(FirstRequest::kMaxInspectedBytes + 100, 'x');
  FirstRequest request;
  EXPECT_TRUE(request.Add(Span(huge)));
  EXPECT_FALSE(request.identified());
  EXPECT_EQ(request.undecodable(), "first request larger than inspected");
}

}  // namespace
}  // namespace sidecar::proxy
