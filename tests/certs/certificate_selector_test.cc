#include "certs/certificate_selector.h"

#include "absl/strings/ascii.h"
#include "certs/certificate_info.h"
#include "certs/throwaway_pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_pki.h"

namespace sidecar::certs {
namespace {

using ::sidecar::test_support::SerialOf;
using ::sidecar::test_support::TempDir;
using ::testing::HasSubstr;

// A store of three certificates with distinct serials: node1 and node2 in O=Example, and a
// second "node1" in O=Other, so a CN alone is ambiguous.
class CertificateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node1_ = Add("a-node1.pem", "node1", "Example", 101);
    node2_ = Add("b-node2.pem", "node2", "Example", 102);
    other_ = Add("c-other.pem", "node1", "Other", 103);
  }

  std::string Add(const std::string& file, const std::string& cn, const std::string& org,
                  uint64_t serial) {
    CertificateOptions options;
    options.common_name = cn;
    options.subject_attributes = {{"O", org}};
    options.serial = serial;
    absl::StatusOr<GeneratedCertificate> cert = MakeCertificate(options);
    EXPECT_TRUE(cert.ok()) << cert.status();
    store_.Write(file, cert->CertificateKeyPem());
    return Sha1Thumbprint(cert->cert.get());
  }

  absl::StatusOr<CertificateKeyPair> Select(const std::string& text) {
    absl::StatusOr<CertificateSelector> selector = ParseCertificateSelector(text);
    if (!selector.ok()) {
      return selector.status();
    }
    return SelectFromStore(store_.path(), *selector, "");
  }

  TempDir store_;
  std::string node1_;
  std::string node2_;
  std::string other_;
};

TEST_F(CertificateStoreTest, SubjectCommonNamePicksTheOnlyMatch) {
  absl::StatusOr<CertificateKeyPair> pair = Select("subject=node2");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(SerialOf(pair->leaf.get()), 102u);
  EXPECT_EQ(pair->source, store_.File("b-node2.pem"));
  ASSERT_NE(pair->key, nullptr);
}

TEST_F(CertificateStoreTest, FullDistinguishedNameDisambiguates) {
  absl::StatusOr<CertificateKeyPair> pair = Select("subject=CN=node1,O=Other");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(SerialOf(pair->leaf.get()), 103u);

  // Spaces after separators and case do not matter.
  pair = Select("subject=cn=node1, o=example");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(SerialOf(pair->leaf.get()), 101u);
}

TEST_F(CertificateStoreTest, ThumbprintMatchesInAnyCaseAndWithSeparators) {
  absl::StatusOr<CertificateKeyPair> pair = Select("thumbprint=" + node2_);
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(SerialOf(pair->leaf.get()), 102u);

  std::string upper_with_colons;
  for (size_t i = 0; i < other_.size(); i += 2) {
    upper_with_colons += (i == 0 ? "" : ":") + absl::AsciiStrToUpper(other_.substr(i, 2));
  }
  pair = Select("thumbprint=" + upper_with_colons);
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(SerialOf(pair->leaf.get()), 103u);
}

TEST_F(CertificateStoreTest, SeveralMatchesIsAnErrorListingThem) {
  absl::StatusOr<CertificateKeyPair> pair = Select("subject=node1");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr("2 certificates match subject=node1"));
  EXPECT_THAT(pair.status().message(), HasSubstr(store_.File("a-node1.pem")));
  EXPECT_THAT(pair.status().message(), HasSubstr(store_.File("c-other.pem")));
}

TEST_F(CertificateStoreTest, NoMatchIsAnErrorListingWhatWasFound) {
  store_.Write("notes.txt", "not a certificate");
  absl::StatusOr<CertificateKeyPair> pair = Select("subject=node9");
  ASSERT_FALSE(pair.ok());
  EXPECT_EQ(pair.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(pair.status().message(), HasSubstr("no certificate matches subject=node9"));
  EXPECT_THAT(pair.status().message(), HasSubstr("CN=node2,O=Example, sha1 " + node2_));
  EXPECT_THAT(pair.status().message(), HasSubstr("notes.txt (skipped: "));
}

TEST_F(CertificateStoreTest, MissingStoreIsNamed) {
  absl::StatusOr<CertificateSelector> selector = ParseCertificateSelector("subject=node1");
  ASSERT_TRUE(selector.ok());
  absl::StatusOr<CertificateKeyPair> pair = SelectFromStore(store_.File("absent"), *selector, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr(store_.File("absent")));
}

TEST(CertificateSelectorTest, ParseRejectsUnknownPrefixEmptySubjectAndBadThumbprints) {
  EXPECT_THAT(ParseCertificateSelector("issuer=x").status().message(),
              HasSubstr("must start with \"subject=\" or \"thumbprint=\""));
  EXPECT_FALSE(ParseCertificateSelector("subject=").ok());
  EXPECT_THAT(ParseCertificateSelector("thumbprint=abc").status().message(),
              HasSubstr("40 hex digits"));
  EXPECT_THAT(ParseCertificateSelector("thumbprint=" + std::string(40, 'g')).status().message(),
              HasSubstr("not hexadecimal"));
  absl::StatusOr<CertificateSelector> ok =
      ParseCertificateSelector("thumbprint=" + std::string(40, 'A'));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->value, std::string(40, 'a'));
  EXPECT_EQ(ok->ToString(), "thumbprint=" + std::string(40, 'a'));
}

}  // namespace
}  // namespace sidecar::certs
