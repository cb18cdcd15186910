#include "certs/pem_file.h"

#include <openssl/x509.h>
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <string>

#include "certs/certificate_info.h"
#include "certs/throwaway_pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_pki.h"

namespace sidecar::certs {
namespace {

using ::sidecar::test_support::MakeCrl;
using ::sidecar::test_support::TempDir;
using ::testing::HasSubstr;
using ::testing::SizeIs;

GeneratedCertificate Make(CertificateOptions options = {}) {
  absl::StatusOr<GeneratedCertificate> cert = MakeCertificate(options);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(*cert);
}

TEST(PemFileTest, LoadsCertificateAndMatchingKey) {
  TempDir dir;
  GeneratedCertificate cert = Make();
  std::string path = dir.Write("server.pem", cert.CertificateKeyPem());
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(pair->source, path);
  EXPECT_EQ(Sha1Thumbprint(pair->leaf.get()), Sha1Thumbprint(cert.cert.get()));
  EXPECT_TRUE(pair->chain.empty());
  EXPECT_TRUE(X509_check_private_key(pair->leaf.get(), pair->key.get()));
}

TEST(PemFileTest, KeyMayComeFirstAndChainFollowsTheLeaf) {
  TempDir dir;
  CertificateOptions ca_options;
  ca_options.is_ca = true;
  ca_options.common_name = "Intermediate";
  GeneratedCertificate intermediate = Make(ca_options);
  CertificateOptions leaf_options;
  leaf_options.issuer = &intermediate;
  GeneratedCertificate leaf = Make(leaf_options);
  std::string path = dir.Write("chain.pem", leaf.key_pem + leaf.cert_pem + intermediate.cert_pem);
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(Sha1Thumbprint(pair->leaf.get()), Sha1Thumbprint(leaf.cert.get()));
  ASSERT_THAT(pair->chain, SizeIs(1));
  EXPECT_EQ(Sha1Thumbprint(pair->chain[0].get()), Sha1Thumbprint(intermediate.cert.get()));
}

TEST(PemFileTest, MissingFileIsNotFound) {
  TempDir dir;
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(dir.File("nope.pem"), "");
  ASSERT_FALSE(pair.ok());
  EXPECT_EQ(pair.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(pair.status().message(), HasSubstr(dir.File("nope.pem") + ": not found"));
}

TEST(PemFileTest, DirectoryIsRefused) {
  TempDir dir;
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(dir.path(), "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr("is a directory"));
}

// Each of these once hung start-up (a FIFO without a writer) or read without end
// (/dev/zero): every file is now a regular file of at most kMaxFileSize, or an error.
TEST(ReadFileToStringTest, RefusesDevicesAtOnce) {
  auto started = std::chrono::steady_clock::now();
  for (const char* device : {"/dev/zero", "/dev/urandom", "/dev/null"}) {
    absl::StatusOr<std::string> text = ReadFileToString(device);
    ASSERT_FALSE(text.ok()) << device;
    EXPECT_THAT(text.status().message(),
                HasSubstr(std::string(device) + ": is not a regular file"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(ReadFileToStringTest, RefusesAFifoWithoutWaitingForAWriter) {
  TempDir dir;
  std::string fifo = dir.File("fifo.pem");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto started = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> text = ReadFileToString(fifo);
  ASSERT_FALSE(text.ok());
  EXPECT_THAT(text.status().message(), HasSubstr(fifo + ": is not a regular file"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(fifo, "");
  EXPECT_FALSE(pair.ok());
}

TEST(ReadFileToStringTest, CapsTheSize) {
  TempDir dir;
  std::string at_cap = dir.Write("at-cap.pem", std::string(kMaxFileSize, 'a'));
  absl::StatusOr<std::string> text = ReadFileToString(at_cap);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->size(), kMaxFileSize);
  std::string over = dir.Write("over.pem", std::string(kMaxFileSize + 1, 'a'));
  text = ReadFileToString(over);
  ASSERT_FALSE(text.ok());
  EXPECT_THAT(text.status().message(), HasSubstr(over + ": is larger than 1024 KiB"));
}

TEST(ReadFileToStringTest, RefusesAPathWithANulByte) {
  TempDir dir;
  std::string real = dir.Write("server.pem", "text");
  absl::StatusOr<std::string> text = ReadFileToString(real + std::string("\0.bak", 5));
  ASSERT_FALSE(text.ok()) << "the path was cut at the NUL and another file read";
  EXPECT_THAT(text.status().message(), HasSubstr("holds a NUL byte"));
}

TEST(FilePermissionWarningsTest, NamesAKeyOthersCanReadAndAConfigOthersCanWrite) {
  TempDir dir;
  TlsSettings tls;
  tls.certificate_key_file = dir.Write("server.pem", "key");
  tls.cluster_file = dir.Write("cluster.pem", "key");
  tls.ca_file = dir.Write("ca.pem", "ca");
  std::string config = dir.Write("sidecar.toml", "");
  ASSERT_EQ(chmod(tls.ca_file.c_str(), 0644), 0);  // a CA is public: never warned about
  EXPECT_THAT(FilePermissionWarnings(tls, config), SizeIs(0));

  ASSERT_EQ(chmod(tls.certificate_key_file.c_str(), 0644), 0);
  ASSERT_EQ(chmod(tls.cluster_file.c_str(), 0640), 0);
  ASSERT_EQ(chmod(config.c_str(), 0666), 0);
  std::vector<std::string> warnings = FilePermissionWarnings(tls, config);
  ASSERT_THAT(warnings, SizeIs(3));
  EXPECT_THAT(warnings[0], HasSubstr("net.tls.certificateKeyFile " + tls.certificate_key_file +
                                     " holds a private key and is readable by every user"));
  EXPECT_THAT(warnings[0], HasSubstr("mode 0644"));
  EXPECT_THAT(warnings[1], HasSubstr("net.tls.clusterFile " + tls.cluster_file));
  EXPECT_THAT(warnings[1], HasSubstr("readable by its group (mode 0640)"));
  EXPECT_THAT(warnings[2], HasSubstr("configuration file " + config + " is writable by every"));

  ASSERT_EQ(chmod(config.c_str(), 0664), 0);  // group-writable is an operator's choice
  EXPECT_THAT(FilePermissionWarnings(tls, config), SizeIs(2));
}

TEST(PemFileTest, NonPemFileIsReportedAsNotPem) {
  TempDir dir;
  std::string der_like = dir.Write("server.der", std::string("\x30\x82\x01\x0a garbage"));
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(der_like, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr(der_like + ": not PEM"));

  std::string broken =
      dir.Write("broken.pem", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
  pair = LoadCertificateKeyFile(broken, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr(broken + ": not PEM"));
}

TEST(PemFileTest, CertificateWithoutKeyIsRefused) {
  TempDir dir;
  std::string path = dir.Write("cert-only.pem", Make().cert_pem);
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr(path + ": holds no private key"));
}

TEST(PemFileTest, KeyWithoutCertificateIsRefused) {
  TempDir dir;
  std::string path = dir.Write("key-only.pem", Make().key_pem);
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(), HasSubstr(path + ": holds no CERTIFICATE"));
}

TEST(PemFileTest, KeyOfAnotherCertificateIsRefused) {
  TempDir dir;
  GeneratedCertificate a = Make();
  GeneratedCertificate b = Make();
  std::string path = dir.Write("mismatch.pem", a.cert_pem + b.key_pem);
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(),
              HasSubstr(path + ": the private key does not match the certificate CN=localhost"));
}

TEST(PemFileTest, LeafAfterItsIssuerIsReportedAsWrongOrder) {
  TempDir dir;
  CertificateOptions ca_options;
  ca_options.is_ca = true;
  ca_options.common_name = "Issuer";
  GeneratedCertificate issuer = Make(ca_options);
  CertificateOptions leaf_options;
  leaf_options.issuer = &issuer;
  leaf_options.common_name = "leaf";
  GeneratedCertificate leaf = Make(leaf_options);
  std::string path = dir.Write("reversed.pem", issuer.cert_pem + leaf.cert_pem + leaf.key_pem);
  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(),
              HasSubstr(path + ": the private key belongs to certificate 2 (CN=leaf)"));
}

class EncryptedKeyTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(EncryptedKeyTest, RightPasswordDecryptsWrongOrMissingPasswordIsNamed) {
  TempDir dir;
  CertificateOptions options;
  options.key_type = GetParam();
  options.key_password = "s3cret";
  GeneratedCertificate cert = Make(options);
  ASSERT_THAT(cert.key_pem, HasSubstr("ENCRYPTED PRIVATE KEY"));
  std::string path = dir.Write("enc.pem", cert.CertificateKeyPem());

  absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(path, "s3cret");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_TRUE(X509_check_private_key(pair->leaf.get(), pair->key.get()));

  pair = LoadCertificateKeyFile(path, "wrong");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(),
              HasSubstr(path + ": wrong password for the encrypted private key"));

  pair = LoadCertificateKeyFile(path, "");
  ASSERT_FALSE(pair.ok());
  EXPECT_THAT(pair.status().message(),
              HasSubstr(path + ": the private key is encrypted and no password was given"));
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, EncryptedKeyTest,
                         ::testing::Values(KeyType::kEcdsaP256, KeyType::kRsa2048));

TEST(PemFileTest, PasswordForAnUnencryptedKeyIsHarmless) {
  TempDir dir;
  std::string path = dir.Write("plain.pem", Make().CertificateKeyPem());
  EXPECT_TRUE(LoadCertificateKeyFile(path, "unused").ok());
}

TEST(PemFileTest, LoadCertificatesReadsABundle) {
  TempDir dir;
  GeneratedCertificate a = Make();
  GeneratedCertificate b = Make();
  std::string path = dir.Write("bundle.pem", a.cert_pem + b.cert_pem);
  absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> certs = LoadCertificates(path);
  ASSERT_TRUE(certs.ok()) << certs.status();
  EXPECT_THAT(*certs, SizeIs(2));

  std::string empty = dir.Write("key.pem", a.key_pem);
  EXPECT_THAT(LoadCertificates(empty).status().message(), HasSubstr("holds no CERTIFICATE"));
}

TEST(PemFileTest, LoadCrlsReadsCrlBlocks) {
  TempDir dir;
  CertificateOptions ca_options;
  ca_options.is_ca = true;
  GeneratedCertificate ca = Make(ca_options);
  absl::StatusOr<std::string> crl = MakeCrl(ca, {.revoked_serials = {7, 9}});
  ASSERT_TRUE(crl.ok()) << crl.status();
  std::string path = dir.Write("crl.pem", *crl);
  absl::StatusOr<std::vector<bssl::UniquePtr<X509_CRL>>> crls = LoadCrls(path);
  ASSERT_TRUE(crls.ok()) << crls.status();
  ASSERT_THAT(*crls, SizeIs(1));
  EXPECT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED((*crls)[0].get())), 2u);

  std::string not_crl = dir.Write("ca.pem", ca.cert_pem);
  EXPECT_THAT(LoadCrls(not_crl).status().message(), HasSubstr("holds no X509 CRL"));
}

TEST(PemFileTest, CheckValidityNamesExpiredAndNotYetValid) {
  const int64_t now = time(nullptr);
  CertificateOptions expired;
  expired.valid_from = absl::Hours(-48);
  expired.lifetime = absl::Hours(24);
  absl::Status s = CheckValidity(Make(expired).cert.get(), "/x/expired.pem", now);
  EXPECT_THAT(s.message(), HasSubstr("/x/expired.pem: the certificate CN=localhost expired on"));

  CertificateOptions future;
  future.valid_from = absl::Hours(24);
  s = CheckValidity(Make(future).cert.get(), "/x/future.pem", now);
  EXPECT_THAT(s.message(),
              HasSubstr("/x/future.pem: the certificate CN=localhost is not yet valid"));

  EXPECT_TRUE(CheckValidity(Make().cert.get(), "/x/ok.pem", now).ok());
}

}  // namespace
}  // namespace sidecar::certs
