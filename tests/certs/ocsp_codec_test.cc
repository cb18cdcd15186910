// The OCSP codec against requests and responses made by Debian's `openssl ocsp`
// (tests/testdata/ocsp/make_fixtures.sh says how): byte-identical requests, every
// certificate status, delegated responders, and each reason to refuse a response.
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "certs/ocsp_request.h"
#include "certs/ocsp_response.h"
#include "certs/ocsp_verify.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sidecar::certs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Fixture(const std::string& name) {
  const char* root = std::getenv("SIDECAR_SOURCE_DIR");
  std::string path = std::string(root ? root : ".") + "/tests/testdata/ocsp/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bssl::UniquePtr<X509> Cert(const std::string& name) {
  std::string pem = Fixture(name + ".pem");
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  EXPECT_NE(cert, nullptr) << name;
  return cert;
}

class OcspCodecTest : public ::testing::Test {
 protected:
  // A clock an hour after the fixtures were made, whenever that was.
  absl::Time FixtureNow(const std::string& response) {
    auto parsed = ParseOcspResponse(Fixture(response));
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed.ok() ? parsed->produced_at + absl::Hours(1) : absl::Now();
  }
  absl::StatusOr<OcspVerdict> Verify(const std::string& response, X509* cert,
                                     std::string_view nonce = {}) {
    OcspVerifyOptions options;
    options.now = FixtureNow(response);
    options.nonce = nonce;
    return ParseAndVerifyOcspResponse(Fixture(response), cert, ca_.get(), options);
  }

  bssl::UniquePtr<X509> ca_ = Cert("ca");
  bssl::UniquePtr<X509> good_ = Cert("good");
  bssl::UniquePtr<X509> revoked_ = Cert("revoked");
  bssl::UniquePtr<X509> unlisted_ = Cert("unlisted");
};

TEST_F(OcspCodecTest, RequestIsByteIdenticalToOpenssls) {
  auto id = MakeOcspCertId(good_.get(), ca_.get());
  ASSERT_TRUE(id.ok()) << id.status();
  auto request = BuildOcspRequest(*id);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(*request, Fixture("good_req.der"));
}

TEST_F(OcspCodecTest, RequestWithNonceIsByteIdenticalToOpenssls) {
  std::string theirs = Fixture("good_nonce_req.der");
  ASSERT_GT(theirs.size(), 16u);
  std::string nonce = theirs.substr(theirs.size() - 16);  // openssl's nonce: 16 bytes, last
  auto id = MakeOcspCertId(good_.get(), ca_.get());
  ASSERT_TRUE(id.ok());
  auto request = BuildOcspRequest(*id, nonce);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(*request, theirs);
}

TEST_F(OcspCodecTest, NonceLongerThan32BytesIsRefused) {
  auto id = MakeOcspCertId(good_.get(), ca_.get());
  ASSERT_TRUE(id.ok());
  EXPECT_FALSE(BuildOcspRequest(*id, std::string(33, 'n')).ok());
}

TEST_F(OcspCodecTest, ReadsResponderUrlAndMustStaple) {
  EXPECT_THAT(OcspResponderUrls(good_.get()), ElementsAre("http://127.0.0.1:1/"));
  EXPECT_TRUE(HasMustStaple(good_.get()));
  EXPECT_FALSE(HasMustStaple(revoked_.get()));
  EXPECT_TRUE(OcspResponderUrls(ca_.get()).empty());
}

TEST_F(OcspCodecTest, GoodSignedByTheIssuer) {
  auto verdict = Verify("good_by_ca.der", good_.get());
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_EQ(verdict->status, OcspCertStatus::kGood);
  EXPECT_GT(verdict->next_update, verdict->this_update + absl::Hours(24 * 365 * 50));
}

TEST_F(OcspCodecTest, GoodSignedByADelegatedResponder) {
  for (const char* name : {"good_by_responder.der", "good_by_responder_id_key.der"}) {
    auto verdict = Verify(name, good_.get());
    ASSERT_TRUE(verdict.ok()) << name << ": " << verdict.status();
    EXPECT_EQ(verdict->status, OcspCertStatus::kGood) << name;
  }
}

TEST_F(OcspCodecTest, ResponderWithoutOcspSigningUsageIsRefused) {
  auto verdict = Verify("good_by_noeku.der", good_.get());
  ASSERT_FALSE(verdict.ok());
  EXPECT_THAT(verdict.status().message(), HasSubstr("OCSP signing"));
}

TEST_F(OcspCodecTest, ResponderFromAnotherCaIsRefused) {
  auto verdict = Verify("good_by_rogue.der", good_.get());
  ASSERT_FALSE(verdict.ok());
  EXPECT_THAT(verdict.status().message(), HasSubstr("not issued by"));
}

TEST_F(OcspCodecTest, DelegatedResponseWithoutTheResponderCertificateIsRefused) {
  auto verdict = Verify("good_no_certs.der", good_.get());
  ASSERT_FALSE(verdict.ok());
  EXPECT_THAT(verdict.status().message(), HasSubstr("neither the issuer"));
}

TEST_F(OcspCodecTest, RevokedCarriesTheRevocationTime) {
  auto verdict = Verify("revoked.der", revoked_.get());
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_EQ(verdict->status, OcspCertStatus::kRevoked);
  EXPECT_LT(verdict->revocation_time, verdict->this_update);
}

TEST_F(OcspCodecTest, CertificateMissingFromTheIndexIsUnknown) {
  auto verdict = Verify("unknown.der", unlisted_.get());
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_EQ(verdict->status, OcspCertStatus::kUnknown);
}

TEST_F(OcspCodecTest, AnswerAboutAnotherCertificateIsRefused) {
  auto verdict = Verify("good_by_ca.der", revoked_.get());
  ASSERT_FALSE(verdict.ok());
  EXPECT_THAT(verdict.status().message(), HasSubstr("no answer for this certificate"));
}

TEST_F(OcspCodecTest, StaleAndFutureResponsesAreRefusedBeyondTheSkew) {
  std::string der = Fixture("stale_good.der");
  auto parsed = ParseOcspResponse(der);
  ASSERT_TRUE(parsed.ok());
  absl::Time this_update = parsed->responses.at(0).this_update;
  OcspVerifyOptions options;
  options.now = this_update + absl::Minutes(3);  // before nextUpdate (1 minute) + 5 min skew
  EXPECT_TRUE(VerifyOcspResponse(*parsed, good_.get(), ca_.get(), options).ok());
  options.now = this_update + absl::Hours(1);
  auto stale = VerifyOcspResponse(*parsed, good_.get(), ca_.get(), options);
  ASSERT_FALSE(stale.ok());
  EXPECT_THAT(stale.status().message(), HasSubstr("stale"));
  options.now = this_update - absl::Hours(1);
  auto future = VerifyOcspResponse(*parsed, good_.get(), ca_.get(), options);
  ASSERT_FALSE(future.ok());
  EXPECT_THAT(future.status().message(), HasSubstr("future"));
}

TEST_F(OcspCodecTest, NonceMustMatchWhenEchoed) {
  std::string request = Fixture("good_nonce_req.der");
  std::string nonce = request.substr(request.size() - 16);
  auto echoed = Verify("good_nonce.der", good_.get(), nonce);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  auto parsed = ParseOcspResponse(Fixture("good_nonce.der"));
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->has_nonce);
  EXPECT_EQ(parsed->nonce, nonce);
  auto mismatch = Verify("good_nonce.der", good_.get(), std::string(16, 'x'));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(mismatch.status().message(), HasSubstr("nonce"));
  // A pre-signed response carries no nonce; it is accepted on its signature and times.
  EXPECT_TRUE(Verify("good_by_ca.der", good_.get(), nonce).ok());
}

TEST_F(OcspCodecTest, TamperedResponseFailsTheSignature) {
  std::string der = Fixture("good_by_ca.der");
  auto parsed = ParseOcspResponse(der);
  ASSERT_TRUE(parsed.ok());
  // Flip a bit of producedAt's seconds, inside the signed data, keeping it a valid time.
  size_t at = der.find(parsed->tbs_response_data);
  ASSERT_NE(at, std::string::npos);
  size_t z = der.find("Z", at);
  ASSERT_NE(z, std::string::npos);
  der[z - 1] = der[z - 1] == '0' ? '1' : '0';
  OcspVerifyOptions options;
  options.now = parsed->produced_at + absl::Hours(1);
  auto verdict = ParseAndVerifyOcspResponse(der, good_.get(), ca_.get(), options);
  ASSERT_FALSE(verdict.ok());
  EXPECT_THAT(verdict.status().message(), HasSubstr("bad signature"));
}

TEST_F(OcspCodecTest, EveryTruncationAndTrailingByteIsAnError) {
  std::string der = Fixture("good_by_responder.der");
  ASSERT_TRUE(ParseOcspResponse(der).ok());
  for (size_t n = 0; n < der.size(); ++n) {
    EXPECT_FALSE(ParseOcspResponse(der.substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(ParseOcspResponse(der + '\0').ok());
  EXPECT_FALSE(ParseOcspResponse("garbage that is not DER").ok());
}

TEST_F(OcspCodecTest, UnsuccessfulStatusIsParsedAndRefused) {
  auto parsed = ParseOcspResponse(std::string("\x30\x03\x0a\x01\x03", 5));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->response_status, OcspResponseStatus::kTryLater);
  auto verdict = VerifyOcspResponse(*parsed, good_.get(), ca_.get(), {});
  ASSERT_FALSE(verdict.ok());
  EXPECT_THAT(verdict.status().message(), HasSubstr("tryLater"));
  EXPECT_FALSE(ParseOcspResponse(std::string("\x30\x03\x0a\x01\x04", 5)).ok());
}

TEST(GeneralizedTimeTest, AcceptsOnlyTheRfc5280Form) {
  auto t = ParseGeneralizedTime("20240229235959Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(absl::FormatTime("%Y-%m-%d %H:%M:%S", *t, absl::UTCTimeZone()),
            "2024-02-29 23:59:59");
  EXPECT_FALSE(ParseGeneralizedTime("20230229000000Z").ok());
  EXPECT_FALSE(ParseGeneralizedTime("20231301000000Z").ok());
  EXPECT_FALSE(ParseGeneralizedTime("20230101000000").ok());
  EXPECT_FALSE(ParseGeneralizedTime("20230101000000.5Z").ok());
  EXPECT_FALSE(ParseGeneralizedTime("2023010100000aZ").ok());
}

}  // namespace
}  // namespace sidecar::certs
