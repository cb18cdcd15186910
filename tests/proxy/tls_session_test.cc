// TlsSession tested as BoringSSL tests its own: two sessions back to back in memory, the
// output queue of one fed to the other, with no socket involved.
#include "proxy/net/tls_session.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "certs/throwaway_pki.h"
#include "certs/tls_snapshot.h"

namespace sidecar::proxy {
namespace {

class TlsSessionTest : public testing::TestWithParam<uint16_t> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tls_session_test_" + std::to_string(getpid()) + "_" +
            std::to_string(reinterpret_cast<uintptr_t>(this)));
    auto files = certs::WriteThrowawayPki(dir_.string(), {});
    ASSERT_TRUE(files.ok()) << files.status();
    certs::TlsSettings settings;
    settings.certificate_key_file = (dir_ / "server.pem").string();
    settings.ca_file = (dir_ / "ca.pem").string();
    auto snapshot = certs::TlsSnapshot::Create(settings);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    snapshot_ = *snapshot;
    // Pin the protocol version under test on both ends.
    SSL_CTX_set_min_proto_version(snapshot_->server_context(), GetParam());
    SSL_CTX_set_max_proto_version(snapshot_->server_context(), GetParam());
    auto server = TlsSession::Create(snapshot_->server_context(), TlsSession::Role::kServer, &pool_,
                                     &server_out_);
    auto client = TlsSession::Create(snapshot_->client_context(), TlsSession::Role::kClient, &pool_,
                                     &client_out_);
    ASSERT_TRUE(server.ok() && client.ok());
    server_ = *std::move(server);
    client_ = *std::move(client);
    // The egress path names and checks its peer the same way.
    ASSERT_TRUE(snapshot_->PrepareEgressSession(client_->ssl(), "localhost").ok());
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Moves everything `out` holds into `to`, in pieces of at most `piece` bytes.
  void Transfer(ChunkQueue& out, TlsSession& to, size_t piece = kChunkCapacity) {
    while (!out.empty()) {
      Chunk* chunk = pool_.Take();
      size_t n = std::min(piece, out.front()->size());
      std::memcpy(chunk->tail(), out.front()->head(), n);
      chunk->end += n;
      out.Consume(n);
      to.Feed(chunk);
    }
  }

  void Handshake(size_t piece = kChunkCapacity) {
    for (int round = 0; round < 10000 && !(client_->handshake_done() && server_->handshake_done());
         ++round) {
      auto c = client_->Handshake();
      ASSERT_NE(c, TlsSession::Status::kError) << client_->error();
      Transfer(client_out_, *server_, piece);
      auto s = server_->Handshake();
      ASSERT_NE(s, TlsSession::Status::kError) << server_->error();
      Transfer(server_out_, *client_, piece);
    }
    ASSERT_TRUE(client_->handshake_done());
    ASSERT_TRUE(server_->handshake_done());
  }

  static std::string Drain(ChunkQueue& q) {
    std::string s;
    while (Chunk* c = q.Pop()) {
      s.append(reinterpret_cast<const char*>(c->head()), c->size());
      q.pool()->Give(c);
    }
    return s;
  }

  std::filesystem::path dir_;
  std::shared_ptr<const certs::TlsSnapshot> snapshot_;
  ChunkPool pool_;
  ChunkQueue server_out_{&pool_};
  ChunkQueue client_out_{&pool_};
  std::unique_ptr<TlsSession> server_;
  std::unique_ptr<TlsSession> client_;
};

TEST_P(TlsSessionTest, HandshakesAndNamesTheVersion) {
  Handshake();
  EXPECT_EQ(server_->version(), GetParam() == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2");
  EXPECT_FALSE(server_->cipher().empty());
  EXPECT_EQ(server_->server_name(), "localhost");
  EXPECT_FALSE(server_->resumed());
}

TEST_P(TlsSessionTest, HandshakesWhenEveryByteArrivesAlone) {
  Handshake(/*piece=*/1);
  EXPECT_TRUE(server_->handshake_done());
}

TEST_P(TlsSessionTest, CarriesLargeDataBothWaysUnchanged) {
  Handshake();
  std::string data(3 * 1024 * 1024 + 17, '\0');
  std::mt19937 rng(42);
  for (char& ch : data) {
    ch = static_cast<char>(rng());
  }
  ASSERT_EQ(client_->Write(reinterpret_cast<const uint8_t*>(data.data()), data.size()),
            TlsSession::Status::kOk);
  Transfer(client_out_, *server_, 1000);
  ChunkQueue plain(&pool_);
  std::string received;
  // A small limit makes the session stop early and resume: nothing may be lost across it.
  for (int i = 0; i < 100000 && received.size() < data.size(); ++i) {
    auto status = server_->ReadPlaintext(plain, 50000);
    ASSERT_NE(status, TlsSession::Status::kError) << server_->error();
    received += Drain(plain);
    if (status == TlsSession::Status::kWantRead) {
      break;
    }
  }
  EXPECT_EQ(received.size(), data.size());
  EXPECT_TRUE(received == data);

  std::string reply = "server says hello";
  ASSERT_EQ(server_->Write(reinterpret_cast<const uint8_t*>(reply.data()), reply.size()),
            TlsSession::Status::kOk);
  Transfer(server_out_, *client_);
  EXPECT_EQ(client_->ReadPlaintext(plain, 1 << 20), TlsSession::Status::kWantRead);
  EXPECT_EQ(Drain(plain), reply);
}

TEST_P(TlsSessionTest, CloseNotifyEndsOneDirectionOnly) {
  Handshake();
  ASSERT_EQ(client_->SendCloseNotify(), TlsSession::Status::kOk);
  Transfer(client_out_, *server_);
  ChunkQueue plain(&pool_);
  EXPECT_EQ(server_->ReadPlaintext(plain, 1 << 20), TlsSession::Status::kPeerClosed);
  // The server may still answer after the client said it is done sending.
  std::string late = "late reply";
  ASSERT_EQ(server_->Write(reinterpret_cast<const uint8_t*>(late.data()), late.size()),
            TlsSession::Status::kOk);
  ASSERT_EQ(server_->SendCloseNotify(), TlsSession::Status::kOk);
  Transfer(server_out_, *client_);
  EXPECT_EQ(client_->ReadPlaintext(plain, 1 << 20), TlsSession::Status::kPeerClosed);
  EXPECT_EQ(Drain(plain), late);
}

TEST_P(TlsSessionTest, GarbageIsAnErrorWithAReason) {
  Chunk* chunk = pool_.Take();
  const char garbage[] = "\x16\x03\x01\x00\x05hello-not-a-client-hello";
  std::memcpy(chunk->tail(), garbage, sizeof(garbage));
  chunk->end += sizeof(garbage);
  server_->Feed(chunk);
  EXPECT_EQ(server_->Handshake(), TlsSession::Status::kError);
  EXPECT_FALSE(server_->error().empty());
  // No certificate was checked: the reason must not blame verification.
  EXPECT_EQ(server_->error().find("certificate verification"), std::string::npos)
      << server_->error();
}

TEST_P(TlsSessionTest, AFailedVerificationIsNamedInTheReason) {
  auto client = TlsSession::Create(snapshot_->client_context(), TlsSession::Role::kClient, &pool_,
                                   &client_out_);
  ASSERT_TRUE(client.ok());
  client_ = *std::move(client);
  ASSERT_TRUE(snapshot_->PrepareEgressSession(client_->ssl(), "not-this-host.example").ok());
  TlsSession::Status c = TlsSession::Status::kOk;
  for (int round = 0; round < 100 && c != TlsSession::Status::kError; ++round) {
    c = client_->Handshake();
    Transfer(client_out_, *server_);
    server_->Handshake();
    Transfer(server_out_, *client_);
  }
  ASSERT_EQ(c, TlsSession::Status::kError);
  EXPECT_NE(client_->error().find("(certificate verification: "), std::string::npos)
      << client_->error();
}

// Preflight names a peer's refusal from error_code(): a disabled-mode sidecar's
// handshake_failure alert, or a plaintext listener's bytes.
TEST_P(TlsSessionTest, AHandshakeFailureAlertIsAnErrorCodeNamingIt) {
  ASSERT_EQ(client_->Handshake(), TlsSession::Status::kWantRead);
  Drain(client_out_);  // the ClientHello goes nowhere; the "peer" answers with an alert
  Chunk* chunk = pool_.Take();
  const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};  // fatal handshake_failure
  std::memcpy(chunk->tail(), alert, sizeof(alert));
  chunk->end += sizeof(alert);
  client_->Feed(chunk);
  ASSERT_EQ(client_->Handshake(), TlsSession::Status::kError);
  ASSERT_NE(client_->error_code(), 0u);
  EXPECT_NE(std::string(ERR_reason_error_string(client_->error_code())).find("HANDSHAKE_FAILURE"),
            std::string::npos)
      << client_->error();
  EXPECT_NE(client_->error().find("HANDSHAKE_FAILURE"), std::string::npos) << client_->error();
}

TEST_P(TlsSessionTest, PlaintextInsteadOfTlsIsAWrongVersionError) {
  ASSERT_EQ(client_->Handshake(), TlsSession::Status::kWantRead);
  Drain(client_out_);
  Chunk* chunk = pool_.Take();
  const char reply[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
  std::memcpy(chunk->tail(), reply, sizeof(reply) - 1);
  chunk->end += sizeof(reply) - 1;
  client_->Feed(chunk);
  ASSERT_EQ(client_->Handshake(), TlsSession::Status::kError);
  EXPECT_EQ(ERR_GET_REASON(client_->error_code()), SSL_R_WRONG_VERSION_NUMBER) << client_->error();
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsSessionTest, testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const auto& info) {
                           return info.param == TLS1_3_VERSION ? std::string("TLS13")
                                                               : std::string("TLS12");
                         });

// Cipher suite order is a TLS 1.2 matter: TLS 1.3 suites are chosen by BoringSSL.
class TlsSessionTls12Test : public TlsSessionTest {};

TEST_P(TlsSessionTls12Test, TheServerChoosesTheSuiteInItsOwnOrder) {
  // The client prefers ChaCha20; the server's list puts AES-128-GCM first.
  ASSERT_TRUE(
      SSL_set_strict_cipher_list(client_->ssl(),
                                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                                 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"));
  Handshake();
  EXPECT_NE(std::string(server_->cipher()).find("AES128-GCM"), std::string::npos)
      << server_->cipher();
}

INSTANTIATE_TEST_SUITE_P(Tls12, TlsSessionTls12Test, testing::Values(TLS1_2_VERSION),
                         [](const auto&) { return std::string("TLS12"); });

}  // namespace
}  // namespace sidecar::proxy
