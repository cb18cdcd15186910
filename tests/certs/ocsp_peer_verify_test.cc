// OCSP checks of peer certificates inside real handshakes (client certificates on the
// ingress context), with a fake OcspStatusSource standing for the responder: revoked is
// refused and readable as such, good passes, no answer soft-fails or, with hard fail,
// refuses; certificates that name no responder are never looked up.
#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "certs/ocsp_peer_verify.h"
#include "certs/throwaway_pki.h"
#include "certs/tls_snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_pki.h"

namespace sidecar::certs {
namespace {

using ::sidecar::test_support::Handshake;
using ::sidecar::test_support::HandshakeResult;
using ::sidecar::test_support::NewClient;
using ::sidecar::test_support::NewClientContext;
using ::sidecar::test_support::TestPki;
using ::testing::HasSubstr;

// FakeSource answers every lookup at once with `answer` and records what it was told.
class FakeSource : public OcspStatusSource {
 public:
  std::optional<OcspAnswer> Lookup(const OcspQuery& query,
                                   absl::AnyInvocable<void()> wake) override {
    urls.push_back(query.url);
    return answer;
  }
  void Record(const OcspQuery& query, const OcspAnswer& given, bool stapled,
              bool accepted) override {
    records.push_back({given.result, accepted});
  }

  OcspAnswer answer;
  std::vector<std::string> urls;
  std::vector<std::pair<OcspCheckResult, bool>> records;
};

struct Version {
  uint16_t version;
  const char* name;
};

class OcspPeerVerifyTest : public ::testing::TestWithParam<Version> {
 protected:
  void SetUp() override {
    auto pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *std::move(pki);
    source_ = std::make_shared<FakeSource>();
  }

  // Runs a client presenting a certificate (naming a responder unless `no_responder`)
  // against a snapshot built with `hard_fail`; the server SSL is kept for inspection.
  HandshakeResult Run(bool hard_fail, bool no_responder = false) {
    TlsSettings settings = pki_->Settings();
    settings.allow_connections_without_certificates = false;
    settings.ocsp.hard_fail = hard_fail;
    auto snapshot = TlsSnapshot::Create(settings, source_);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    snapshot_ = *snapshot;
    CertificateOptions options;
    options.common_name = "client";
    options.server_auth = false;
    if (!no_responder) {
      options.ocsp_url = "http://127.0.0.1:9/";
    }
    auto client_cert = pki_->Issue(options);
    EXPECT_TRUE(client_cert.ok());
    client_ctx_ = NewClientContext(pki_->ca.cert_pem, client_cert->CertificateKeyPem(),
                                   GetParam().version, GetParam().version);
    client_ = NewClient(client_ctx_.get());
    server_ = test_support::NewIngressSession(*snapshot_);
    return Handshake(client_.get(), server_.get());
  }

  std::unique_ptr<TestPki> pki_;
  std::shared_ptr<FakeSource> source_;
  std::shared_ptr<const TlsSnapshot> snapshot_;
  bssl::UniquePtr<SSL_CTX> client_ctx_;
  bssl::UniquePtr<SSL> client_;
  bssl::UniquePtr<SSL> server_;
};

TEST_P(OcspPeerVerifyTest, GoodCertificateIsAcceptedAndVerified) {
  source_->answer.result = OcspCheckResult::kGood;
  HandshakeResult result = Run(false);
  ASSERT_TRUE(result.ok) << result.client_error << " / " << result.server_error;
  EXPECT_THAT(source_->urls, ::testing::ElementsAre("http://127.0.0.1:9/"));
  ASSERT_EQ(source_->records.size(), 1u);
  EXPECT_TRUE(source_->records[0].second);
  EXPECT_THAT(VerifiedPeerSubject(server_.get()), HasSubstr("CN=client"));
  EXPECT_FALSE(PeerCertificateRevoked(server_.get()));
  EXPECT_EQ(PeerVerifyFailure(server_.get()), "");
}

TEST_P(OcspPeerVerifyTest, RevokedCertificateIsRefusedAndSaysSo) {
  source_->answer.result = OcspCheckResult::kRevoked;
  HandshakeResult result = Run(false);
  EXPECT_FALSE(result.ok);
  EXPECT_FALSE(result.server_ok);
  EXPECT_THAT(result.client_error, HasSubstr("REVOKED"));  // the certificate_revoked alert
  EXPECT_TRUE(PeerCertificateRevoked(server_.get()));
  EXPECT_THAT(PeerVerifyFailure(server_.get()), HasSubstr("revoked"));
  ASSERT_EQ(source_->records.size(), 1u);
  EXPECT_FALSE(source_->records[0].second);
}

TEST_P(OcspPeerVerifyTest, NoAnswerSoftFailsByDefault) {
  source_->answer.result = OcspCheckResult::kTimeout;
  HandshakeResult result = Run(false);
  ASSERT_TRUE(result.ok) << result.client_error << " / " << result.server_error;
  ASSERT_EQ(source_->records.size(), 1u);
  EXPECT_EQ(source_->records[0].first, OcspCheckResult::kTimeout);
  EXPECT_TRUE(source_->records[0].second);  // accepted: the source counts a soft-fail
}

TEST_P(OcspPeerVerifyTest, NoAnswerIsRefusedWithHardFail) {
  source_->answer.result = OcspCheckResult::kError;
  source_->answer.detail = "connection refused";
  HandshakeResult result = Run(true);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(PeerOcspRefused(server_.get()));
  EXPECT_FALSE(PeerCertificateRevoked(server_.get()));
  EXPECT_THAT(PeerVerifyFailure(server_.get()), HasSubstr("connection refused"));
}

TEST_P(OcspPeerVerifyTest, CertificateNamingNoResponderIsNotLookedUp) {
  source_->answer.result = OcspCheckResult::kRevoked;  // would refuse, were it asked
  HandshakeResult result = Run(true, /*no_responder=*/true);
  ASSERT_TRUE(result.ok) << result.client_error << " / " << result.server_error;
  EXPECT_TRUE(source_->urls.empty());
}

TEST_P(OcspPeerVerifyTest, ChainFailureIsStillReportedAsBefore) {
  // A client certificate from another CA fails the chain before any OCSP question.
  auto other = TestPki::Create();
  ASSERT_TRUE(other.ok());
  TlsSettings settings = pki_->Settings();
  settings.allow_connections_without_certificates = false;
  auto snapshot = TlsSnapshot::Create(settings, source_);
  ASSERT_TRUE(snapshot.ok());
  CertificateOptions options;
  options.common_name = "stranger";
  options.ocsp_url = "http://127.0.0.1:9/";
  auto stranger = (*other)->Issue(options);
  ASSERT_TRUE(stranger.ok());
  auto ctx = NewClientContext(pki_->ca.cert_pem, stranger->CertificateKeyPem(),
                              GetParam().version, GetParam().version);
  auto client = NewClient(ctx.get());
  auto server = test_support::NewIngressSession(**snapshot);
  HandshakeResult result = Handshake(client.get(), server.get());
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(PeerVerifyFailure(server.get()), HasSubstr("unable to get local issuer"));
  EXPECT_NE(PeerVerifyResult(server.get()), X509_V_OK);
  EXPECT_TRUE(source_->urls.empty());
}

INSTANTIATE_TEST_SUITE_P(Versions, OcspPeerVerifyTest,
                         ::testing::Values(Version{TLS1_2_VERSION, "TLSv1.2"},
                                           Version{TLS1_3_VERSION, "TLSv1.3"}),
                         [](const auto& info) {
                           return std::string(info.param.version == TLS1_2_VERSION ? "Tls12"
                                                                                   : "Tls13");
                         });

}  // namespace
}  // namespace sidecar::certs
