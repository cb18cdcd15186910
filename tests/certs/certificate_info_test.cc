#include "certs/certificate_info.h"

#include <openssl/x509.h>

#include <ctime>

#include "absl/strings/match.h"
#include "certs/throwaway_pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sidecar::certs {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(CertificateInfoTest, InspectReadsSubjectIssuerSerialDatesAndThumbprint) {
  CertificateOptions ca_options;
  ca_options.common_name = "Example CA";
  ca_options.subject_attributes = {{"O", "Example"}};
  ca_options.is_ca = true;
  absl::StatusOr<GeneratedCertificate> ca = MakeCertificate(ca_options);
  ASSERT_TRUE(ca.ok()) << ca.status();

  CertificateOptions options;
  options.common_name = "node1";
  options.subject_attributes = {{"O", "Example"}, {"OU", "db"}};
  options.serial = 0x1f40;
  options.issuer = &*ca;
  absl::StatusOr<GeneratedCertificate> cert = MakeCertificate(options);
  ASSERT_TRUE(cert.ok()) << cert.status();

  const int64_t now = time(nullptr);
  CertificateInfo info = Inspect(cert->cert.get());
  EXPECT_EQ(info.subject, "CN=node1,OU=db,O=Example");
  EXPECT_EQ(info.issuer, "CN=Example CA,O=Example");
  EXPECT_EQ(info.serial_hex, "1f40");
  EXPECT_NEAR(info.not_before, now - 3600, 5);
  EXPECT_NEAR(info.not_after, now - 3600 + 365 * 86400, 5);
  EXPECT_THAT(info.sha1_hex, SizeIs(40));
  EXPECT_EQ(info.sha1_hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_TRUE(info.role.empty());
}

TEST(CertificateInfoTest, ThumbprintDiffersBetweenCertificatesOfTheSameKey) {
  absl::StatusOr<GeneratedCertificate> first = MakeCertificate({});
  ASSERT_TRUE(first.ok()) << first.status();
  CertificateOptions options;
  options.reuse_key = first->key.get();
  absl::StatusOr<GeneratedCertificate> second = MakeCertificate(options);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(Sha1Thumbprint(first->cert.get()), Sha1Thumbprint(second->cert.get()));
  EXPECT_EQ(Sha1Thumbprint(first->cert.get()), Sha1Thumbprint(first->cert.get()));
}

TEST(CertificateInfoTest, FormatNameEscapesRfc4514SpecialCharactersAndKeepsUtf8) {
  CertificateOptions options;
  options.common_name = "a,b";
  options.subject_attributes = {{"O", "Zürich"}};
  absl::StatusOr<GeneratedCertificate> cert = MakeCertificate(options);
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(FormatName(X509_get_subject_name(cert->cert.get())), "CN=a\\,b,O=Zürich");
  EXPECT_EQ(CommonName(X509_get_subject_name(cert->cert.get())), "a,b");
}

TEST(CertificateInfoTest, ExpiryWarningsNameCertificatesExpiringWithinTheWindow) {
  const int64_t now = 1'700'000'000;
  CertificateInfo soon{.role = "server",
                       .subject = "CN=soon",
                       .not_after = now + 10 * 86400 + 60,
                       .source = "/etc/s.pem"};
  CertificateInfo later{.role = "ca", .subject = "CN=later", .not_after = now + 90 * 86400};
  CertificateInfo gone{.role = "cluster", .subject = "CN=gone", .not_after = now - 1};
  std::vector<std::string> warnings = ExpiryWarnings({soon, later, gone}, 30, now);
  ASSERT_THAT(warnings, SizeIs(2));
  EXPECT_THAT(warnings[0], HasSubstr("server certificate CN=soon (/etc/s.pem) expires on"));
  EXPECT_THAT(warnings[0], HasSubstr("in 10 days"));
  EXPECT_THAT(warnings[1], HasSubstr("cluster certificate CN=gone expired on"));
  EXPECT_THAT(ExpiryWarnings({later}, 30, now), IsEmpty());
}

TEST(CertificateInfoTest, FormatUnixTimeIsUtcIso8601) {
  EXPECT_EQ(FormatUnixTime(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatUnixTime(1'700'000'000), "2023-11-14T22:13:20Z");
}

}  // namespace
}  // namespace sidecar::certs
