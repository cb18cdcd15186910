#include "certs/tls_snapshot.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>

#include "certs/certificate_info.h"
#include "certs/throwaway_pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_pki.h"

namespace sidecar::certs {
namespace {

using ::sidecar::test_support::Handshake;
using ::sidecar::test_support::HandshakeResult;
using ::sidecar::test_support::MakeCrl;
using ::sidecar::test_support::NewClient;
using ::sidecar::test_support::NewClientContext;
using ::sidecar::test_support::NewEgressSession;
using ::sidecar::test_support::NewIngressSession;
using ::sidecar::test_support::NewServer;
using ::sidecar::test_support::SerialOf;
using ::sidecar::test_support::TestPki;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kServerSubject[] = "CN=localhost,OU=server,O=tls-sidecar tests";
constexpr char kClusterSubject[] = "CN=localhost,OU=cluster,O=tls-sidecar tests";
constexpr char kClientSubject[] = "CN=client,OU=client,O=tls-sidecar tests";

class TlsSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestPki>> pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::move(*pki);
  }

  std::shared_ptr<const TlsSnapshot> MustCreate(const TlsSettings& settings) {
    absl::StatusOr<std::shared_ptr<const TlsSnapshot>> snapshot = TlsSnapshot::Create(settings);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    return snapshot.ok() ? *snapshot : nullptr;
  }

  std::string CreateError(const TlsSettings& settings) {
    absl::StatusOr<std::shared_ptr<const TlsSnapshot>> snapshot = TlsSnapshot::Create(settings);
    EXPECT_FALSE(snapshot.ok());
    return snapshot.ok() ? "" : std::string(snapshot.status().message());
  }

  GeneratedCertificate Issue(CertificateOptions options) {
    absl::StatusOr<GeneratedCertificate> cert = pki_->Issue(std::move(options));
    EXPECT_TRUE(cert.ok()) << cert.status();
    return std::move(*cert);
  }

  // ClientHandshake runs a bare client (trusting the test CA, presenting `cert_key_pem` when
  // given) against the snapshot's server context.
  HandshakeResult ClientHandshake(const TlsSnapshot& snapshot, const std::string& cert_key_pem,
                                  uint16_t min_version = TLS1_2_VERSION,
                                  uint16_t max_version = TLS1_3_VERSION,
                                  std::string* peer_subject = nullptr) {
    bssl::UniquePtr<SSL_CTX> ctx =
        NewClientContext(pki_->ca.cert_pem, cert_key_pem, min_version, max_version);
    bssl::UniquePtr<SSL> client = NewClient(ctx.get());
    bssl::UniquePtr<SSL> server = NewIngressSession(snapshot);
    HandshakeResult result = Handshake(client.get(), server.get());
    if (peer_subject != nullptr) {
      *peer_subject = VerifiedPeerSubject(server.get());
    }
    return result;
  }

  std::unique_ptr<TestPki> pki_;
};

// --- Loading errors -------------------------------------------------------------------------

TEST_F(TlsSnapshotTest, NoCertificateGivesNoServerContext) {
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(TlsSettings{});
  ASSERT_NE(snapshot, nullptr);
  EXPECT_EQ(snapshot->server_context(), nullptr);
  EXPECT_EQ(snapshot->client_context(), nullptr);
  EXPECT_EQ(NewIngressSession(*snapshot), nullptr);
  EXPECT_FALSE(NewEgressSession(*snapshot, "localhost").ok());
  EXPECT_THAT(snapshot->certificates(), IsEmpty());

  // A CA alone is enough to originate TLS to peers.
  TlsSettings ca_only;
  ca_only.ca_file = pki_->ca_file;
  snapshot = MustCreate(ca_only);
  ASSERT_NE(snapshot, nullptr);
  EXPECT_EQ(snapshot->server_context(), nullptr);
  EXPECT_NE(snapshot->client_context(), nullptr);
}

TEST_F(TlsSnapshotTest, MissingFilesAreNamed) {
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file = pki_->dir.File("absent.pem");
  EXPECT_THAT(CreateError(settings), HasSubstr(pki_->dir.File("absent.pem") + ": not found"));

  settings = pki_->Settings();
  settings.ca_file = pki_->dir.File("absent-ca.pem");
  EXPECT_THAT(CreateError(settings), HasSubstr(pki_->dir.File("absent-ca.pem") + ": not found"));

  settings = pki_->Settings();
  settings.cluster_file = pki_->dir.File("absent-cluster.pem");
  EXPECT_THAT(CreateError(settings),
              HasSubstr(pki_->dir.File("absent-cluster.pem") + ": not found"));
}

TEST_F(TlsSnapshotTest, NonPemCaFileIsNamed) {
  TlsSettings settings = pki_->Settings();
  settings.ca_file = pki_->dir.Write("ca.der", "\x30\x82 binary");
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.ca_file + ": not PEM"));
}

TEST_F(TlsSnapshotTest, KeyNotMatchingCertificateIsNamed) {
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file =
      pki_->dir.Write("mismatch.pem", pki_->server.cert_pem + pki_->client.key_pem);
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.certificate_key_file +
                                               ": the private key does not match the certificate"));
}

TEST_F(TlsSnapshotTest, ExpiredServerCertificateIsRefused) {
  CertificateOptions options;
  options.valid_from = absl::Hours(-48);
  options.lifetime = absl::Hours(24);
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file =
      pki_->dir.Write("expired.pem", Issue(options).CertificateKeyPem());
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.certificate_key_file +
                                               ": the certificate CN=localhost expired on"));
}

TEST_F(TlsSnapshotTest, NotYetValidServerCertificateIsRefused) {
  CertificateOptions options;
  options.valid_from = absl::Hours(24);
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file = pki_->dir.Write("future.pem", Issue(options).CertificateKeyPem());
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.certificate_key_file +
                                               ": the certificate CN=localhost is not yet valid"));
}

TEST_F(TlsSnapshotTest, ExpiredClusterCertificateIsRefused) {
  CertificateOptions options;
  options.valid_from = absl::Hours(-48);
  options.lifetime = absl::Hours(24);
  TlsSettings settings = pki_->Settings();
  settings.cluster_file = pki_->dir.Write("old-cluster.pem", Issue(options).CertificateKeyPem());
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.cluster_file + ": the certificate"));
}

TEST_F(TlsSnapshotTest, CrlWithoutCaIsRefused) {
  TlsSettings settings = pki_->Settings();
  settings.ca_file.clear();
  settings.crl_file = pki_->dir.Write("crl.pem", *MakeCrl(pki_->ca, {}));
  EXPECT_THAT(CreateError(settings),
              HasSubstr("CRLFile " + settings.crl_file + " is set without CAFile"));
}

TEST_F(TlsSnapshotTest, CrlFromAnotherCaOrOutOfDateIsRefused) {
  CertificateOptions other_ca_options;
  other_ca_options.is_ca = true;
  other_ca_options.common_name = "Other CA";
  absl::StatusOr<GeneratedCertificate> other_ca = MakeCertificate(other_ca_options);
  ASSERT_TRUE(other_ca.ok());
  TlsSettings settings = pki_->Settings();
  settings.crl_file = pki_->dir.Write("other-crl.pem", *MakeCrl(*other_ca, {}));
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.crl_file +
                                               ": the CRL issued by CN=Other CA is not signed by a "
                                               "CA of " +
                                               settings.ca_file));

  settings.crl_file = pki_->dir.Write(
      "stale-crl.pem",
      *MakeCrl(pki_->ca, {.last_update = absl::Hours(-48), .next_update = absl::Hours(-24)}));
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.crl_file + ": the CRL issued by"));
  EXPECT_THAT(CreateError(settings), HasSubstr("is out of date"));
}

TEST_F(TlsSnapshotTest, SelectorTogetherWithKeyFileIsRefused) {
  TlsSettings settings = pki_->Settings();
  settings.certificate_store = pki_->dir.path();
  settings.certificate_selector = "subject=localhost";
  EXPECT_THAT(CreateError(settings),
              HasSubstr("certificateSelector and certificateKeyFile are both set"));

  settings = pki_->Settings();
  settings.certificate_store = pki_->dir.path();
  settings.cluster_certificate_selector = "subject=localhost";
  EXPECT_THAT(CreateError(settings),
              HasSubstr("clusterCertificateSelector and clusterFile are both set"));
}

TEST_F(TlsSnapshotTest, SelectorWithoutStoreOrMalformedIsRefused) {
  TlsSettings settings;
  settings.certificate_selector = "subject=localhost";
  EXPECT_THAT(CreateError(settings), HasSubstr("certificateSelector needs certificateStore"));
  settings.certificate_store = pki_->dir.path();
  settings.certificate_selector = "cn=localhost";
  EXPECT_THAT(CreateError(settings), HasSubstr("certificateSelector: certificate selector"));
}

TEST_F(TlsSnapshotTest, SelectorMatchingSeveralOrNoneIsRefusedWithTheList) {
  TlsSettings settings;
  settings.certificate_store = pki_->dir.path();  // server.pem and cluster.pem: CN=localhost
  settings.certificate_selector = "subject=localhost";
  std::string error = CreateError(settings);
  EXPECT_THAT(error, HasSubstr("2 certificates match subject=localhost"));
  EXPECT_THAT(error, HasSubstr(pki_->server_file));
  EXPECT_THAT(error, HasSubstr(pki_->cluster_file));

  settings.certificate_selector = "subject=nobody";
  EXPECT_THAT(CreateError(settings), HasSubstr("no certificate matches subject=nobody"));
}

TEST_F(TlsSnapshotTest, ProtocolSettingsThatLeaveNothingOrAGapAreRefused) {
  TlsSettings settings = pki_->Settings();
  settings.disabled_protocols = {TlsProtocol::kTls1_0, TlsProtocol::kTls1_1, TlsProtocol::kTls1_2,
                                 TlsProtocol::kTls1_3};
  EXPECT_THAT(CreateError(settings), HasSubstr("disables every TLS version"));
  settings.disabled_protocols = {TlsProtocol::kTls1_2};
  EXPECT_THAT(CreateError(settings), HasSubstr("must be contiguous"));
}

// --- What was loaded ------------------------------------------------------------------------

TEST_F(TlsSnapshotTest, CertificatesListServerClusterAndCaWithSources) {
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(pki_->Settings());
  ASSERT_NE(snapshot, nullptr);
  const std::vector<CertificateInfo>& infos = snapshot->certificates();
  ASSERT_EQ(infos.size(), 3u);
  EXPECT_EQ(infos[0].role, "server");
  EXPECT_EQ(infos[0].subject, kServerSubject);
  EXPECT_EQ(infos[0].source, pki_->server_file);
  EXPECT_EQ(infos[0].sha1_hex, Sha1Thumbprint(pki_->server.cert.get()));
  EXPECT_EQ(infos[1].role, "cluster");
  EXPECT_EQ(infos[1].subject, kClusterSubject);
  EXPECT_EQ(infos[2].role, "ca");
  EXPECT_EQ(infos[2].subject, "CN=Test CA,O=tls-sidecar tests");
  EXPECT_THAT(snapshot->ExpiryWarnings(30), IsEmpty());
}

TEST_F(TlsSnapshotTest, ClusterDefaultsToServerCertificateAndSeparateClusterCaIsListed) {
  TlsSettings settings = pki_->Settings();
  settings.cluster_file.clear();
  settings.cluster_ca_file = pki_->dir.Write("cluster-ca.pem", pki_->ca.cert_pem);
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  const std::vector<CertificateInfo>& infos = snapshot->certificates();
  ASSERT_EQ(infos.size(), 4u);
  EXPECT_EQ(infos[1].role, "cluster");
  EXPECT_EQ(infos[1].subject, kServerSubject);
  EXPECT_EQ(infos[3].role, "cluster_ca");
  EXPECT_EQ(infos[3].source, settings.cluster_ca_file);
}

TEST_F(TlsSnapshotTest, MatchesServerNameFollowsSubjectAltNames) {
  CertificateOptions options;
  options.common_name = "node1.example.net";
  options.dns_names = {"node1.example.net", "*.pods.example.net"};
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file = pki_->dir.Write("sni.pem", Issue(options).CertificateKeyPem());
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  EXPECT_TRUE(snapshot->MatchesServerName("node1.example.net"));
  EXPECT_TRUE(snapshot->MatchesServerName("NODE1.example.net"));
  EXPECT_TRUE(snapshot->MatchesServerName("a.pods.example.net"));
  EXPECT_FALSE(snapshot->MatchesServerName("a.b.pods.example.net"));
  EXPECT_FALSE(snapshot->MatchesServerName("node2.example.net"));
  EXPECT_FALSE(snapshot->MatchesServerName(""));
  TlsSettings none;
  none.ca_file = pki_->ca_file;
  EXPECT_FALSE(MustCreate(none)->MatchesServerName("node1.example.net"));
}

TEST_F(TlsSnapshotTest, ExpiryWarningsNameACertificateCloseToExpiry) {
  CertificateOptions options;
  options.lifetime = absl::Hours(24 * 10);
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file = pki_->dir.Write("soon.pem", Issue(options).CertificateKeyPem());
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  std::vector<std::string> warnings = snapshot->ExpiryWarnings(30);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("server certificate CN=localhost (" +
                                     settings.certificate_key_file + ") expires on"));
}

TEST_F(TlsSnapshotTest, SelectorPicksTheRightOneOfThreeFromTheStore) {
  test_support::TempDir store;
  for (uint64_t serial : {501, 502, 503}) {
    CertificateOptions options;
    options.common_name = "node" + std::to_string(serial);
    options.serial = serial;
    store.Write("n" + std::to_string(serial) + ".pem", Issue(options).CertificateKeyPem());
  }
  TlsSettings settings;
  settings.certificate_store = store.path();
  settings.certificate_selector = "subject=CN=node502";
  settings.ca_file = pki_->ca_file;
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  ASSERT_NE(snapshot->server_context(), nullptr);
  EXPECT_EQ(snapshot->certificates()[0].serial_hex, "01f6");  // 502
  EXPECT_EQ(SerialOf(SSL_CTX_get0_certificate(snapshot->server_context())), 502u);
  // The cluster role falls back to the selected server certificate.
  EXPECT_EQ(snapshot->certificates()[1].role, "cluster");
  EXPECT_EQ(snapshot->certificates()[1].serial_hex, "01f6");
}

TEST_F(TlsSnapshotTest, EncryptedKeyNeedsTheRightPassword) {
  CertificateOptions options;
  options.common_name = "localhost";
  options.key_password = "hunter2";
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file = pki_->dir.Write("enc.pem", Issue(options).CertificateKeyPem());
  settings.certificate_key_file_password = "wrong";
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.certificate_key_file +
                                               ": wrong password for the encrypted private key"));
  settings.certificate_key_file_password = "hunter2";
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  EXPECT_TRUE(ClientHandshake(*snapshot, "").ok);
}

TEST_F(TlsSnapshotTest, ClusterPasswordDefaultsToTheServerPassword) {
  CertificateOptions options;
  options.key_password = "shared";
  TlsSettings settings = pki_->Settings();
  settings.certificate_key_file_password = "shared";
  settings.certificate_key_file = pki_->dir.Write("s.pem", Issue(options).CertificateKeyPem());
  settings.cluster_file = pki_->dir.Write("c.pem", Issue(options).CertificateKeyPem());
  EXPECT_NE(MustCreate(settings), nullptr);
  options.key_password = "other";
  settings.cluster_file = pki_->dir.Write("c2.pem", Issue(options).CertificateKeyPem());
  EXPECT_THAT(CreateError(settings), HasSubstr(settings.cluster_file + ": wrong password"));
  settings.cluster_file_password = "other";
  EXPECT_NE(MustCreate(settings), nullptr);
}

// --- Handshakes, table-driven over TLS 1.2 and 1.3 -------------------------------------------

struct VersionCase {
  uint16_t version;
  const char* name;
};

class TlsVersionTest : public TlsSnapshotTest, public ::testing::WithParamInterface<VersionCase> {
 protected:
  HandshakeResult Client(const TlsSnapshot& snapshot, const std::string& cert_key_pem,
                         std::string* peer_subject = nullptr) {
    return ClientHandshake(snapshot, cert_key_pem, GetParam().version, GetParam().version,
                           peer_subject);
  }
};

TEST_P(TlsVersionTest, EgressClientAndIngressServerShakeHandsAndVerifyEachOther) {
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(pki_->Settings());
  ASSERT_NE(snapshot, nullptr);
  absl::StatusOr<bssl::UniquePtr<SSL>> client = NewEgressSession(*snapshot, "localhost");
  ASSERT_TRUE(client.ok()) << client.status();
  SSL_set_max_proto_version(client->get(), GetParam().version);
  bssl::UniquePtr<SSL> server = NewIngressSession(*snapshot);
  HandshakeResult result = Handshake(client->get(), server.get());
  ASSERT_TRUE(result.ok) << result.client_error << " / " << result.server_error;
  EXPECT_EQ(result.version, GetParam().name);
  EXPECT_EQ(VerifiedPeerSubject(server.get()), kClusterSubject);
  EXPECT_EQ(VerifiedPeerSubject(client->get()), kServerSubject);
  // Only forward-secret AEAD suites.
  const SSL_CIPHER* cipher = SSL_get_current_cipher(server.get());
  ASSERT_NE(cipher, nullptr);
  EXPECT_TRUE(SSL_CIPHER_is_aead(cipher)) << SSL_CIPHER_get_name(cipher);
  if (GetParam().version == TLS1_2_VERSION) {
    EXPECT_EQ(SSL_CIPHER_get_kx_nid(cipher), NID_kx_ecdhe) << SSL_CIPHER_get_name(cipher);
  }
}

TEST_P(TlsVersionTest, ClientCertificateIsRequiredByDefaultAsInMongod) {
  TlsSettings defaults;
  EXPECT_FALSE(defaults.allow_connections_without_certificates);
  defaults.certificate_key_file = pki_->server_file;
  defaults.ca_file = pki_->ca_file;
  std::shared_ptr<const TlsSnapshot> required = MustCreate(defaults);
  ASSERT_NE(required, nullptr);
  HandshakeResult refused = Client(*required, "");
  EXPECT_FALSE(refused.ok);
  EXPECT_EQ(refused.server_error, "PEER_DID_NOT_RETURN_A_CERTIFICATE");
  HandshakeResult accepted = Client(*required, pki_->client.CertificateKeyPem());
  EXPECT_TRUE(accepted.ok) << accepted.client_error << " / " << accepted.server_error;
}

TEST_P(TlsVersionTest, ClientCertificateIsOptionalWhenConnectionsWithoutCertificatesAreAllowed) {
  TlsSettings settings = pki_->Settings();
  settings.allow_connections_without_certificates = true;
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  std::string subject = "unset";
  HandshakeResult without = Client(*snapshot, "", &subject);
  EXPECT_TRUE(without.ok) << without.client_error << " / " << without.server_error;
  EXPECT_EQ(subject, "");
  HandshakeResult with = Client(*snapshot, pki_->client.CertificateKeyPem(), &subject);
  EXPECT_TRUE(with.ok) << with.client_error << " / " << with.server_error;
  EXPECT_EQ(subject, kClientSubject);
}

TEST_P(TlsVersionTest, ClientCertificateRequiredWhenConnectionsWithoutCertificatesAreNotAllowed) {
  TlsSettings settings = pki_->Settings();
  settings.allow_connections_without_certificates = false;
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  HandshakeResult without = Client(*snapshot, "");
  EXPECT_FALSE(without.ok);
  EXPECT_FALSE(without.server_ok);
  EXPECT_EQ(without.server_error, "PEER_DID_NOT_RETURN_A_CERTIFICATE");
  HandshakeResult with = Client(*snapshot, pki_->client.CertificateKeyPem());
  EXPECT_TRUE(with.ok) << with.client_error << " / " << with.server_error;
}

TEST_P(TlsVersionTest, UntrustedOrExpiredClientCertificateIsRefusedUnlessInvalidAllowed) {
  CertificateOptions self_signed_options;
  self_signed_options.common_name = "stranger";
  absl::StatusOr<GeneratedCertificate> stranger = MakeCertificate(self_signed_options);
  ASSERT_TRUE(stranger.ok());
  CertificateOptions expired_options;
  expired_options.common_name = "old";
  expired_options.server_auth = false;
  expired_options.valid_from = absl::Hours(-48);
  expired_options.lifetime = absl::Hours(24);
  GeneratedCertificate expired = Issue(expired_options);

  std::shared_ptr<const TlsSnapshot> strict = MustCreate(pki_->Settings());
  ASSERT_NE(strict, nullptr);
  HandshakeResult refused = Client(*strict, stranger->CertificateKeyPem());
  EXPECT_FALSE(refused.server_ok);
  EXPECT_EQ(refused.server_error, "CERTIFICATE_VERIFY_FAILED");
  EXPECT_FALSE(Client(*strict, expired.CertificateKeyPem()).server_ok);

  TlsSettings lenient_settings = pki_->Settings();
  lenient_settings.allow_invalid_certificates = true;
  std::shared_ptr<const TlsSnapshot> lenient = MustCreate(lenient_settings);
  ASSERT_NE(lenient, nullptr);
  std::string subject = "unset";
  HandshakeResult accepted = Client(*lenient, stranger->CertificateKeyPem(), &subject);
  EXPECT_TRUE(accepted.ok) << accepted.client_error << " / " << accepted.server_error;
  EXPECT_EQ(subject, "") << "an unverified certificate must not be reported as verified";
  EXPECT_TRUE(Client(*lenient, expired.CertificateKeyPem()).ok);
  // A valid one is still reported.
  EXPECT_TRUE(Client(*lenient, pki_->client.CertificateKeyPem(), &subject).ok);
  EXPECT_EQ(subject, kClientSubject);
}

TEST_P(TlsVersionTest, RevokedClientCertificateIsRefusedWithCrl) {
  CertificateOptions options;
  options.common_name = "revoked";
  options.server_auth = false;
  options.serial = 4242;
  GeneratedCertificate revoked = Issue(options);
  TlsSettings settings = pki_->Settings();
  settings.crl_file = pki_->dir.Write("crl.pem", *MakeCrl(pki_->ca, {.revoked_serials = {4242}}));
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  HandshakeResult result = Client(*snapshot, revoked.CertificateKeyPem());
  EXPECT_FALSE(result.server_ok);
  EXPECT_EQ(result.server_error, "CERTIFICATE_VERIFY_FAILED");
  EXPECT_TRUE(Client(*snapshot, pki_->client.CertificateKeyPem()).ok)
      << "a certificate that is not on the CRL is accepted";
  EXPECT_TRUE(Client(*snapshot, "").ok) << "no certificate is still allowed by default";
}

TEST_P(TlsVersionTest, EgressChecksThePeerHostnameUnlessInvalidHostnamesAllowed) {
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(pki_->Settings());
  ASSERT_NE(snapshot, nullptr);
  auto egress = [&](const TlsSnapshot& s, const std::string& host) {
    absl::StatusOr<bssl::UniquePtr<SSL>> client = NewEgressSession(s, host);
    EXPECT_TRUE(client.ok()) << client.status();
    SSL_set_max_proto_version(client->get(), GetParam().version);
    bssl::UniquePtr<SSL> server = NewIngressSession(*snapshot);
    return Handshake(client->get(), server.get());
  };
  EXPECT_TRUE(egress(*snapshot, "localhost").ok);
  EXPECT_TRUE(egress(*snapshot, "127.0.0.1").ok);
  EXPECT_TRUE(egress(*snapshot, "::1").ok);
  HandshakeResult wrong = egress(*snapshot, "mongo-b.example.net");
  EXPECT_FALSE(wrong.client_ok);
  EXPECT_EQ(wrong.client_error, "CERTIFICATE_VERIFY_FAILED");
  EXPECT_FALSE(egress(*snapshot, "10.1.2.3").client_ok);

  TlsSettings lenient_settings = pki_->Settings();
  lenient_settings.allow_invalid_hostnames = true;
  std::shared_ptr<const TlsSnapshot> lenient = MustCreate(lenient_settings);
  ASSERT_NE(lenient, nullptr);
  EXPECT_TRUE(lenient->allow_invalid_hostnames());
  EXPECT_TRUE(egress(*lenient, "mongo-b.example.net").ok);
}

TEST_P(TlsVersionTest, EgressRefusesAPeerFromAnotherCa) {
  absl::StatusOr<std::unique_ptr<TestPki>> other = TestPki::Create();
  ASSERT_TRUE(other.ok());
  std::shared_ptr<const TlsSnapshot> ours = MustCreate(pki_->Settings());
  std::shared_ptr<const TlsSnapshot> theirs = MustCreate((*other)->Settings());
  ASSERT_NE(ours, nullptr);
  ASSERT_NE(theirs, nullptr);
  absl::StatusOr<bssl::UniquePtr<SSL>> client = NewEgressSession(*ours, "localhost");
  ASSERT_TRUE(client.ok());
  SSL_set_max_proto_version(client->get(), GetParam().version);
  bssl::UniquePtr<SSL> server = NewIngressSession(*theirs);
  HandshakeResult result = Handshake(client->get(), server.get());
  EXPECT_FALSE(result.client_ok);
  EXPECT_EQ(result.client_error, "CERTIFICATE_VERIFY_FAILED");
}

// KeepNewestSession is the client's new-session callback: in TLS 1.3 the resumable session
// only arrives with the server's NewSessionTicket, after the handshake, so SSL_get1_session
// right after it is not resumable; the callback is how a client learns of it.
int KeepNewestSession(SSL* ssl, SSL_SESSION* session) {
  auto* newest =
      static_cast<bssl::UniquePtr<SSL_SESSION>*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  newest->reset(session);  // returning 1 takes ownership
  return 1;
}

TEST_P(TlsVersionTest, SessionsResumeThroughTicketsAndTheCache) {
  for (bool tickets : {true, false}) {
    SCOPED_TRACE(tickets ? "session tickets" : "session cache");
    std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(pki_->Settings());
    ASSERT_NE(snapshot, nullptr);
    bssl::UniquePtr<SSL_CTX> ctx =
        NewClientContext(pki_->ca.cert_pem, pki_->client.CertificateKeyPem(), GetParam().version,
                         GetParam().version);
    if (!tickets) {
      SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    }
    bssl::UniquePtr<SSL_SESSION> session;
    SSL_CTX_set_app_data(ctx.get(), &session);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(ctx.get(), KeepNewestSession);

    bssl::UniquePtr<SSL> first = NewClient(ctx.get());
    bssl::UniquePtr<SSL> server1 = NewIngressSession(*snapshot);
    ASSERT_TRUE(Handshake(first.get(), server1.get()).ok);
    ASSERT_NE(session, nullptr);
    ASSERT_TRUE(SSL_SESSION_is_resumable(session.get()));
    // TLS 1.2 without tickets resumes by session ID, from the server's cache; TLS 1.3
    // resumption is always by ticket (a PSK identity), whatever SSL_OP_NO_TICKET says.
    if (GetParam().version == TLS1_2_VERSION) {
      EXPECT_EQ(SSL_SESSION_has_ticket(session.get()), tickets ? 1 : 0);
    }

    bssl::UniquePtr<SSL> second = NewClient(ctx.get());
    SSL_set_session(second.get(), session.get());
    bssl::UniquePtr<SSL> server2 = NewIngressSession(*snapshot);
    HandshakeResult resumed = Handshake(second.get(), server2.get());
    ASSERT_TRUE(resumed.ok) << resumed.client_error << " / " << resumed.server_error;
    EXPECT_TRUE(resumed.resumed);
    // The client certificate verified in the first handshake still counts.
    EXPECT_EQ(VerifiedPeerSubject(server2.get()), kClientSubject);
  }
}

TEST_P(TlsVersionTest, ConnectionKeepsItsContextAfterTheSnapshotIsReplaced) {
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(pki_->Settings());
  ASSERT_NE(snapshot, nullptr);
  bssl::UniquePtr<SSL> server = NewIngressSession(*snapshot);
  snapshot.reset();  // a reload swapped it out
  bssl::UniquePtr<SSL_CTX> ctx =
      NewClientContext(pki_->ca.cert_pem, "", GetParam().version, GetParam().version);
  bssl::UniquePtr<SSL> client = NewClient(ctx.get());
  EXPECT_TRUE(Handshake(client.get(), server.get()).ok);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsVersionTest,
                         ::testing::Values(VersionCase{TLS1_2_VERSION, "TLSv1.2"},
                                           VersionCase{TLS1_3_VERSION, "TLSv1.3"}),
                         [](const ::testing::TestParamInfo<VersionCase>& info) {
                           return info.param.version == TLS1_2_VERSION ? "Tls12" : "Tls13";
                         });

// --- Protocol policy ------------------------------------------------------------------------

TEST_F(TlsSnapshotTest, Tls11ClientIsRefusedByDefaultAndAcceptedWhenNothingIsDisabled) {
  std::shared_ptr<const TlsSnapshot> strict = MustCreate(pki_->Settings());
  ASSERT_NE(strict, nullptr);
  HandshakeResult refused = ClientHandshake(*strict, "", TLS1_1_VERSION, TLS1_1_VERSION);
  EXPECT_FALSE(refused.server_ok);
  EXPECT_EQ(refused.server_error, "UNSUPPORTED_PROTOCOL");

  TlsSettings settings = pki_->Settings();
  settings.disabled_protocols.clear();  // disabledProtocols = "none"
  std::shared_ptr<const TlsSnapshot> legacy = MustCreate(settings);
  ASSERT_NE(legacy, nullptr);
  for (uint16_t version : {TLS1_VERSION, TLS1_1_VERSION}) {
    HandshakeResult accepted = ClientHandshake(*legacy, "", version, version);
    EXPECT_TRUE(accepted.ok) << accepted.client_error << " / " << accepted.server_error;
    EXPECT_EQ(accepted.version, version == TLS1_VERSION ? "TLSv1" : "TLSv1.1");
  }
  // Modern clients still get TLS 1.3.
  EXPECT_EQ(ClientHandshake(*legacy, "", TLS1_VERSION, TLS1_3_VERSION).version, "TLSv1.3");
}

TEST_F(TlsSnapshotTest, DisablingTls13LeavesTls12) {
  TlsSettings settings = pki_->Settings();
  settings.disabled_protocols = {TlsProtocol::kTls1_0, TlsProtocol::kTls1_1, TlsProtocol::kTls1_3};
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(settings);
  ASSERT_NE(snapshot, nullptr);
  EXPECT_EQ(ClientHandshake(*snapshot, "").version, "TLSv1.2");
  EXPECT_FALSE(ClientHandshake(*snapshot, "", TLS1_3_VERSION, TLS1_3_VERSION).ok);
}

TEST_F(TlsSnapshotTest, Tls12ClientOfferingOnlyCbcSuitesIsRefusedByDefault) {
  std::shared_ptr<const TlsSnapshot> snapshot = MustCreate(pki_->Settings());
  ASSERT_NE(snapshot, nullptr);
  bssl::UniquePtr<SSL_CTX> ctx =
      NewClientContext(pki_->ca.cert_pem, "", TLS1_2_VERSION, TLS1_2_VERSION);
  ASSERT_TRUE(SSL_CTX_set_strict_cipher_list(
      ctx.get(), "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256"));
  bssl::UniquePtr<SSL> client = NewClient(ctx.get());
  bssl::UniquePtr<SSL> server = NewIngressSession(*snapshot);
  HandshakeResult result = Handshake(client.get(), server.get());
  EXPECT_FALSE(result.server_ok);
  EXPECT_EQ(result.server_error, "NO_SHARED_CIPHER");
}

TEST(ProtocolPolicyTest, VersionRangeAndCipherList) {
  absl::StatusOr<std::pair<uint16_t, uint16_t>> range =
      ProtocolVersionRange({TlsProtocol::kTls1_0, TlsProtocol::kTls1_1});
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->first, TLS1_2_VERSION);
  EXPECT_EQ(range->second, TLS1_3_VERSION);
  range = ProtocolVersionRange({});
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->first, TLS1_VERSION);
  EXPECT_THAT(CipherListFor(TLS1_2_VERSION), ::testing::Not(HasSubstr("-SHA:")));
  EXPECT_THAT(CipherListFor(TLS1_VERSION), HasSubstr("ECDHE-RSA-AES128-SHA"));
}

}  // namespace
}  // namespace sidecar::certs
