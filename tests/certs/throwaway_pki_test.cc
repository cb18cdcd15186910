#include "certs/throwaway_pki.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <ctime>

#include "certs/certificate_info.h"
#include "certs/pem_file.h"
#include "certs/tls_snapshot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_pki.h"

namespace sidecar::certs {
namespace {

using ::sidecar::test_support::MakeCrl;
using ::sidecar::test_support::NewEgressSession;
using ::sidecar::test_support::NewIngressSession;
using ::sidecar::test_support::SerialOf;
using ::sidecar::test_support::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

int ModeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

bool HasHost(X509* cert, const std::string& host) {
  return X509_check_host(cert, host.data(), host.size(), 0, nullptr) == 1;
}

bool HasIp(X509* cert, const std::string& ip) {
  return X509_check_ip_asc(cert, ip.c_str(), 0) == 1;
}

TEST(WriteThrowawayPkiTest, WritesCaServerClusterClientThatParseAndChain) {
  TempDir dir;
  const std::string pki_dir = dir.File("pki");  // created by WriteThrowawayPki
  absl::StatusOr<std::vector<std::string>> files =
      WriteThrowawayPki(pki_dir, {.hosts = {"mongo-a.example.net", "10.0.0.5"}});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_THAT(*files, ElementsAre(pki_dir + "/ca.pem", pki_dir + "/server.pem",
                                  pki_dir + "/cluster.pem", pki_dir + "/client.pem"));
  EXPECT_EQ(ModeOf(pki_dir), 0700);
  EXPECT_EQ(ModeOf(pki_dir + "/server.pem"), 0600);
  EXPECT_EQ(ModeOf(pki_dir + "/client.pem"), 0600);

  absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> ca = LoadCertificates(pki_dir + "/ca.pem");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_EQ(ca->size(), 1u);
  EXPECT_EQ(X509_check_ca((*ca)[0].get()), 1);

  const int64_t now = time(nullptr);
  for (const char* name : {"server.pem", "cluster.pem", "client.pem"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<CertificateKeyPair> pair = LoadCertificateKeyFile(pki_dir + "/" + name, "");
    ASSERT_TRUE(pair.ok()) << pair.status();
    EXPECT_EQ(EVP_PKEY_id(pair->key.get()), EVP_PKEY_EC);
    CertificateInfo info = Inspect(pair->leaf.get());
    EXPECT_NEAR(info.not_before, now - 3600, 5);
    EXPECT_NEAR(info.not_after - info.not_before, 365 * 86400, 5);
    bssl::UniquePtr<EVP_PKEY> ca_key(X509_get_pubkey((*ca)[0].get()));
    EXPECT_EQ(X509_verify(pair->leaf.get(), ca_key.get()), 1) << "signed by ca.pem";
  }

  absl::StatusOr<CertificateKeyPair> server = LoadCertificateKeyFile(pki_dir + "/server.pem", "");
  ASSERT_TRUE(server.ok());
  X509* leaf = server->leaf.get();
  EXPECT_TRUE(HasHost(leaf, "mongo-a.example.net"));
  EXPECT_TRUE(HasHost(leaf, "localhost"));
  EXPECT_TRUE(HasIp(leaf, "127.0.0.1"));
  EXPECT_TRUE(HasIp(leaf, "::1"));
  EXPECT_TRUE(HasIp(leaf, "10.0.0.5"));
  EXPECT_FALSE(HasHost(leaf, "mongo-b.example.net"));
  EXPECT_EQ(CommonName(X509_get_subject_name(leaf)), "mongo-a.example.net");
  EXPECT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0), 1);
  EXPECT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0), 1);

  absl::StatusOr<CertificateKeyPair> client = LoadCertificateKeyFile(pki_dir + "/client.pem", "");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(X509_check_purpose(client->leaf.get(), X509_PURPOSE_SSL_CLIENT, 0), 1);
  EXPECT_NE(X509_check_purpose(client->leaf.get(), X509_PURPOSE_SSL_SERVER, 0), 1);
}

TEST(WriteThrowawayPkiTest, FilesWorkAsSidecarConfiguration) {
  TempDir dir;
  ASSERT_TRUE(WriteThrowawayPki(dir.path(), {}).ok());
  TlsSettings settings;
  settings.certificate_key_file = dir.File("server.pem");
  settings.ca_file = dir.File("ca.pem");
  settings.cluster_file = dir.File("cluster.pem");
  absl::StatusOr<std::shared_ptr<const TlsSnapshot>> snapshot = TlsSnapshot::Create(settings);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  absl::StatusOr<bssl::UniquePtr<SSL>> client = NewEgressSession(**snapshot, "localhost");
  ASSERT_TRUE(client.ok());
  bssl::UniquePtr<SSL> server = NewIngressSession(**snapshot);
  test_support::HandshakeResult result = test_support::Handshake(client->get(), server.get());
  EXPECT_TRUE(result.ok) << result.client_error << " / " << result.server_error;
  EXPECT_EQ(VerifiedPeerSubject(server.get()), "CN=localhost,OU=cluster,O=tls-sidecar test PKI");
}

TEST(WriteThrowawayPkiTest, RefusesToOverwriteUnlessAsked) {
  TempDir dir;
  ASSERT_TRUE(WriteThrowawayPki(dir.path(), {}).ok());
  absl::StatusOr<std::vector<std::string>> again = WriteThrowawayPki(dir.path(), {});
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), HasSubstr(dir.File("ca.pem") + ": already exists"));
  ThrowawayPkiOptions options;
  options.overwrite = true;
  EXPECT_TRUE(WriteThrowawayPki(dir.path(), options).ok());
}

TEST(WriteThrowawayPkiTest, RefusesAFileAsDirectory) {
  TempDir dir;
  std::string file = dir.Write("plain", "x");
  EXPECT_THAT(WriteThrowawayPki(file, {}).status().message(), HasSubstr("is not a directory"));
}

TEST(MakeCertificateTest, HonoursKeyTypeSerialSubjectAndCaFlag) {
  CertificateOptions ca_options;
  ca_options.is_ca = true;
  ca_options.key_type = KeyType::kRsa2048;
  ca_options.common_name = "RSA CA";
  absl::StatusOr<GeneratedCertificate> ca = MakeCertificate(ca_options);
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(EVP_PKEY_id(ca->key.get()), EVP_PKEY_RSA);
  EXPECT_EQ(EVP_PKEY_bits(ca->key.get()), 2048);
  EXPECT_EQ(X509_check_ca(ca->cert.get()), 1);

  CertificateOptions options;
  options.common_name = "node7";
  options.subject_attributes = {{"O", "Example"}, {"OU", "db"}};
  options.serial = 0x7fffffffffffffffull;
  options.issuer = &*ca;
  absl::StatusOr<GeneratedCertificate> leaf = MakeCertificate(options);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(SerialOf(leaf->cert.get()), 0x7fffffffffffffffull);
  EXPECT_EQ(Inspect(leaf->cert.get()).subject, "CN=node7,OU=db,O=Example");
  EXPECT_EQ(Inspect(leaf->cert.get()).issuer, "CN=RSA CA");
  EXPECT_NE(X509_check_ca(leaf->cert.get()), 1);
  bssl::UniquePtr<EVP_PKEY> ca_key(X509_get_pubkey(ca->cert.get()));
  EXPECT_EQ(X509_verify(leaf->cert.get(), ca_key.get()), 1);

  // Random serials are positive and differ.
  absl::StatusOr<GeneratedCertificate> a = MakeCertificate({});
  absl::StatusOr<GeneratedCertificate> b = MakeCertificate({});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(SerialOf(a->cert.get()), 0u);
  EXPECT_NE(SerialOf(a->cert.get()), SerialOf(b->cert.get()));
}

TEST(MakeCertificateTest, ValidityWindowFollowsOptions) {
  const int64_t now = time(nullptr);
  CertificateOptions options;
  options.valid_from = absl::Hours(-48);
  options.lifetime = absl::Hours(24);
  absl::StatusOr<GeneratedCertificate> expired = MakeCertificate(options);
  ASSERT_TRUE(expired.ok());
  CertificateInfo info = Inspect(expired->cert.get());
  EXPECT_NEAR(info.not_before, now - 48 * 3600, 5);
  EXPECT_NEAR(info.not_after, now - 24 * 3600, 5);
}

TEST(MakeCrlTest, RevokesTheGivenSerialsAndIsSignedByTheIssuer) {
  CertificateOptions ca_options;
  ca_options.is_ca = true;
  absl::StatusOr<GeneratedCertificate> ca = MakeCertificate(ca_options);
  ASSERT_TRUE(ca.ok());
  absl::StatusOr<std::string> pem = MakeCrl(*ca, {.revoked_serials = {12345}});
  ASSERT_TRUE(pem.ok()) << pem.status();
  TempDir dir;
  absl::StatusOr<std::vector<bssl::UniquePtr<X509_CRL>>> crls =
      LoadCrls(dir.Write("crl.pem", *pem));
  ASSERT_TRUE(crls.ok()) << crls.status();
  X509_CRL* crl = (*crls)[0].get();
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(ca->cert.get()));
  EXPECT_EQ(X509_CRL_verify(crl, key.get()), 1);
  ASSERT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1u);
  uint64_t serial = 0;
  ASSERT_TRUE(ASN1_INTEGER_get_uint64(&serial, X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(
                                                   X509_CRL_get_REVOKED(crl), 0))));
  EXPECT_EQ(serial, 12345u);
}

}  // namespace
}  // namespace sidecar::certs
