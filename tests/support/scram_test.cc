#include "tests/support/scram.h"

#include <openssl/base64.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/bson.h"
#include "tests/support/standin.h"
#include "tests/support/bson_builder.h"

namespace sidecar::support {
namespace {

using protocol::BsonView;

std::vector<uint8_t> Unbase64(std::string_view text) {
  size_t max = 0;
  EXPECT_TRUE(EVP_DecodedLength(&max, text.size()));
  std::vector<uint8_t> out(max);
  size_t written = 0;
  EXPECT_TRUE(EVP_DecodeBase64(out.data(), &written, out.size(),
                               reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  out.resize(written);
  return out;
}

std::string Base64(const uint8_t* data, size_t size) {
  size_t encoded = 0;
  EVP_EncodedLength(&encoded, size);
  std::string out(encoded, '\0');
  out.resize(EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), data, size));
  return out;
}

// RFC 7677 §3: the SCRAM-SHA-256 exchange of user "user" with password "pencil".
constexpr std::string_view kClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramCredential Rfc7677Credential(std::string_view password = "pencil") {
  return ScramCredential::Derive("user", password, Unbase64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
}

TEST(ScramServerConversationTest, Rfc7677TestVector) {
  ScramCredential credential = Rfc7677Credential();
  ScramServerConversation conversation(&credential, std::string(kServerNonce));
  absl::StatusOr<std::string> server_first = conversation.Start(kClientFirst);
  ASSERT_TRUE(server_first.ok()) << server_first.status();
  EXPECT_EQ(*server_first, kServerFirst);
  absl::StatusOr<std::string> server_final = conversation.Finish(kClientFinal);
  ASSERT_TRUE(server_final.ok()) << server_final.status();
  EXPECT_EQ(*server_final, kServerFinal);
}

TEST(ScramServerConversationTest, WrongPasswordIsRefused) {
  // The client's proof is the RFC's, made with "pencil"; the server knows another password.
  ScramCredential credential = Rfc7677Credential("pen");
  ScramServerConversation conversation(&credential, std::string(kServerNonce));
  ASSERT_TRUE(conversation.Start(kClientFirst).ok());
  absl::StatusOr<std::string> server_final = conversation.Finish(kClientFinal);
  EXPECT_EQ(server_final.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(ScramServerConversationTest, UnknownUserIsRefused) {
  ScramCredential credential = Rfc7677Credential();
  ScramServerConversation conversation(&credential, std::string(kServerNonce));
  EXPECT_EQ(conversation.Start("n,,n=other,r=abc").status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(ScramServerConversationTest, MalformedAndOutOfOrderMessagesAreRefused) {
  ScramCredential credential = Rfc7677Credential();
  {
    // Channel binding asked for ("p=") is not offered.
    ScramServerConversation conversation(&credential, std::string(kServerNonce));
    EXPECT_FALSE(conversation.Start("p=tls-unique,,n=user,r=abc").ok());
  }
  {
    ScramServerConversation conversation(&credential, std::string(kServerNonce));
    EXPECT_FALSE(conversation.Finish(kClientFinal).ok());
  }
  {
    // A client-final-message with another nonce (a replay into another conversation).
    ScramServerConversation conversation(&credential, "otherServerNonce");
    ASSERT_TRUE(conversation.Start(kClientFirst).ok());
    EXPECT_EQ(conversation.Finish(kClientFinal).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    ScramServerConversation conversation(&credential, std::string(kServerNonce));
    ASSERT_TRUE(conversation.Start(kClientFirst).ok());
    EXPECT_FALSE(conversation.Finish("c=biws,r=x").ok());
  }
}

// ScramClient is the client side, as a driver computes it, to drive ScramAuthenticator.
struct ScramClient {
  std::string user;
  std::string password;
  std::string nonce = "fyko+d2lbbFgONRv9qkxdawL";
  std::string client_first_bare;

  std::string First() {
    client_first_bare = "n=" + user + ",r=" + nonce;
    return "n,," + client_first_bare;
  }
  std::string Final(std::string_view server_first) {
    // server_first: r=NONCE,s=SALT,i=ITERATIONS
    std::string text(server_first);
    size_t s = text.find(",s=");
    size_t i = text.find(",i=");
    std::string combined_nonce = text.substr(2, s - 2);
    std::vector<uint8_t> salt = Unbase64(text.substr(s + 3, i - s - 3));
    int iterations = std::stoi(text.substr(i + 3));
    uint8_t salted[32];
    PKCS5_PBKDF2_HMAC(password.data(), password.size(), salt.data(), salt.size(), iterations,
                      EVP_sha256(), sizeof(salted), salted);
    uint8_t client_key[32];
    unsigned int length = 0;
    HMAC(EVP_sha256(), salted, 32, reinterpret_cast<const uint8_t*>("Client Key"), 10, client_key,
         &length);
    uint8_t stored_key[32];
    SHA256(client_key, 32, stored_key);
    std::string without_proof = "c=biws,r=" + combined_nonce;
    std::string auth_message = client_first_bare + "," + text + "," + without_proof;
    uint8_t signature[32];
    HMAC(EVP_sha256(), stored_key, 32, reinterpret_cast<const uint8_t*>(auth_message.data()),
         auth_message.size(), signature, &length);
    uint8_t proof[32];
    for (int k = 0; k < 32; ++k) {
      proof[k] = client_key[k] ^ signature[k];
    }
    return without_proof + ",p=" + Base64(proof, 32);
  }
};

absl::Span<const uint8_t> Bytes(const std::string& text) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

std::string PayloadOf(const BsonView& reply) {
  absl::Span<const uint8_t> payload = *reply.Find("payload")->AsBinary();
  return std::string(payload.begin(), payload.end());
}

class StandinAuthTest : public ::testing::Test {
 protected:
  StandinAuthTest() : standin_(Options()) {}

  static StandinOptions Options() {
    StandinOptions options;
    options.auth_user = "app";
    options.auth_password = "secret";
    return options;
  }

  BsonView Run(Document command, int64_t connection = 7) {
    commands_.push_back(std::move(command));
    CommandRequest request;
    request.body = *BsonView::Parse(commands_.back());
    request.connection_id = connection;
    replies_.push_back(standin_.Run(request));
    return *BsonView::Parse(replies_.back());
  }

  static double Ok(const BsonView& reply) { return *reply.Find("ok")->AsDouble(); }
  static int64_t Code(const BsonView& reply) { return reply.Find("code")->AsInt64().value_or(0); }

  Document Find() {
    return BsonBuilder().AppendString("find", "c").AppendString("$db", "t").Finish();
  }

  Standin standin_;
  std::vector<Document> commands_;
  std::vector<Document> replies_;
};

TEST_F(StandinAuthTest, CommandsNeedAuthenticationThenSaslStartAndContinueGrantIt) {
  BsonView refused = Run(Find());
  EXPECT_EQ(Ok(refused), 0.0);
  EXPECT_EQ(Code(refused), 13);  // Unauthorized

  ScramClient client{"app", "secret"};
  BsonView started = Run(BsonBuilder()
                             .AppendInt32("saslStart", 1)
                             .AppendString("mechanism", "SCRAM-SHA-256")
                             .AppendBinary("payload", 0, Bytes(client.First()))
                             .AppendString("$db", "admin")
                             .Finish());
  ASSERT_EQ(Ok(started), 1.0);
  EXPECT_FALSE(*started.Find("done")->AsBool());
  int32_t id = *started.Find("conversationId")->AsInt32();
  std::string final_message = client.Final(PayloadOf(started));
  // Without skipEmptyExchange the server's signature comes with done:false, and an empty
  // step ends the conversation (MongoDB before 4.4).
  BsonView proved = Run(BsonBuilder()
                            .AppendInt32("saslContinue", 1)
                            .AppendInt32("conversationId", id)
                            .AppendBinary("payload", 0, Bytes(final_message))
                            .AppendString("$db", "admin")
                            .Finish());
  ASSERT_EQ(Ok(proved), 1.0);
  EXPECT_TRUE(PayloadOf(proved).starts_with("v="));
  EXPECT_FALSE(*proved.Find("done")->AsBool());
  EXPECT_EQ(Ok(Run(Find())), 0.0);
  BsonView done = Run(BsonBuilder()
                          .AppendInt32("saslContinue", 1)
                          .AppendInt32("conversationId", id)
                          .AppendBinary("payload", 0, {})
                          .AppendString("$db", "admin")
                          .Finish());
  ASSERT_EQ(Ok(done), 1.0);
  EXPECT_TRUE(*done.Find("done")->AsBool());
  EXPECT_EQ(Ok(Run(Find())), 1.0);
  // Authentication belongs to the connection.
  EXPECT_EQ(Code(Run(Find(), 8)), 13);
  standin_.ForgetConnection(7);
  EXPECT_EQ(Code(Run(Find())), 13);
}

TEST_F(StandinAuthTest, SpeculativeAuthenticationInHelloAndWrongPassword) {
  ScramClient client{"app", "wrong"};
  BsonView hello = Run(BsonBuilder()
                           .AppendInt32("hello", 1)
                           .AppendString("saslSupportedMechs", "admin.app")
                           .StartDocument("speculativeAuthenticate")
                           .AppendInt32("saslStart", 1)
                           .AppendString("mechanism", "SCRAM-SHA-256")
                           .AppendBinary("payload", 0, Bytes(client.First()))
                           .StartDocument("options")
                           .AppendBool("skipEmptyExchange", true)
                           .EndDocument()
                           .AppendString("db", "admin")
                           .EndDocument()
                           .AppendString("$db", "admin")
                           .Finish());
  ASSERT_EQ(Ok(hello), 1.0);
  BsonView mechs = *hello.Find("saslSupportedMechs")->AsDocument();
  EXPECT_EQ(mechs.size(), 1u);
  EXPECT_EQ(*mechs.Find("0")->AsString(), "SCRAM-SHA-256");
  BsonView speculative = *hello.Find("speculativeAuthenticate")->AsDocument();
  int32_t id = *speculative.Find("conversationId")->AsInt32();
  BsonView refused =
      Run(BsonBuilder()
              .AppendInt32("saslContinue", 1)
              .AppendInt32("conversationId", id)
              .AppendBinary("payload", 0, Bytes(client.Final(PayloadOf(speculative))))
              .AppendString("$db", "admin")
              .Finish());
  EXPECT_EQ(Ok(refused), 0.0);
  EXPECT_EQ(Code(refused), 18);  // AuthenticationFailed
  EXPECT_EQ(*refused.Find("errmsg")->AsString(), "Authentication failed.");
  EXPECT_EQ(Code(Run(Find())), 13);

  // The right password, speculatively, with skipEmptyExchange: done at the second step.
  ScramClient right{"app", "secret"};
  BsonView again = Run(BsonBuilder()
                           .AppendInt32("hello", 1)
                           .StartDocument("speculativeAuthenticate")
                           .AppendInt32("saslStart", 1)
                           .AppendString("mechanism", "SCRAM-SHA-256")
                           .AppendBinary("payload", 0, Bytes(right.First()))
                           .StartDocument("options")
                           .AppendBool("skipEmptyExchange", true)
                           .EndDocument()
                           .AppendString("db", "admin")
                           .EndDocument()
                           .AppendString("$db", "admin")
                           .Finish());
  BsonView first = *again.Find("speculativeAuthenticate")->AsDocument();
  BsonView finished =
      Run(BsonBuilder()
              .AppendInt32("saslContinue", 1)
              .AppendInt32("conversationId", *first.Find("conversationId")->AsInt32())
              .AppendBinary("payload", 0, Bytes(right.Final(PayloadOf(first))))
              .AppendString("$db", "admin")
              .Finish());
  ASSERT_EQ(Ok(finished), 1.0);
  EXPECT_TRUE(*finished.Find("done")->AsBool());
  EXPECT_EQ(Ok(Run(Find())), 1.0);
}

TEST_F(StandinAuthTest, UnknownUserAndOtherMechanismsAreRefused) {
  BsonView hello = Run(BsonBuilder()
                           .AppendInt32("hello", 1)
                           .AppendString("saslSupportedMechs", "admin.nobody")
                           .AppendString("$db", "admin")
                           .Finish());
  EXPECT_FALSE(hello.Find("saslSupportedMechs").has_value());
  ScramClient nobody{"nobody", "secret"};
  BsonView refused = Run(BsonBuilder()
                             .AppendInt32("saslStart", 1)
                             .AppendString("mechanism", "SCRAM-SHA-256")
                             .AppendBinary("payload", 0, Bytes(nobody.First()))
                             .AppendString("$db", "admin")
                             .Finish());
  EXPECT_EQ(Code(refused), 18);
  ScramClient client{"app", "secret"};
  BsonView sha1 = Run(BsonBuilder()
                          .AppendInt32("saslStart", 1)
                          .AppendString("mechanism", "SCRAM-SHA-1")
                          .AppendBinary("payload", 0, Bytes(client.First()))
                          .AppendString("$db", "admin")
                          .Finish());
  EXPECT_EQ(Code(sha1), 334);  // MechanismUnavailable
}

}  // namespace
}  // namespace sidecar::support
