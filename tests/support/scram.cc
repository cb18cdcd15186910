#include "tests/support/scram.h"

#include <openssl/base64.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "tests/support/bson_builder.h"

namespace sidecar::support {
namespace {

using protocol::BsonElement;
using protocol::BsonView;

constexpr std::string_view kMechanism = "SCRAM-SHA-256";
constexpr std::string_view kDatabase = "admin";
// Error codes as mongod names them (src/mongo/base/error_codes.yml).
constexpr int kBadValue = 2;
constexpr int kAuthenticationFailed = 18;
constexpr int kProtocolError = 17;
constexpr int kNoSuchKey = 4;
constexpr int kMechanismUnavailable = 334;
// mongod's scramSHA256IterationCount default; drivers refuse fewer than 4096.
constexpr int kIterations = 15000;
constexpr size_t kSaltBytes = 28;
constexpr size_t kNonceBytes = 24;

using Key = std::array<uint8_t, SHA256_DIGEST_LENGTH>;

// Check aborts when a libcrypto call failed: they fail only when memory runs out, and a
// stand-in that cannot compute a key cannot answer anything right.
void Check(int rc, const char* what) {
  if (rc != 1) {
    std::fprintf(stderr, "mongod_standin: %s failed\n", what);
    std::abort();
  }
}

std::string Base64(const uint8_t* data, size_t size) {
  size_t encoded = 0;
  EVP_EncodedLength(&encoded, size);  // includes the NUL EVP_EncodeBlock writes
  std::string out(encoded, '\0');
  size_t written = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), data, size);
  out.resize(written);
  return out;
}

std::optional<std::vector<uint8_t>> Unbase64(std::string_view text) {
  size_t max = 0;
  if (!EVP_DecodedLength(&max, text.size())) {
    return std::nullopt;
  }
  std::vector<uint8_t> out(max);
  size_t written = 0;
  if (!EVP_DecodeBase64(out.data(), &written, out.size(),
                        reinterpret_cast<const uint8_t*>(text.data()), text.size())) {
    return std::nullopt;
  }
  out.resize(written);
  return out;
}

Key Hmac(const Key& key, std::string_view message) {
  Key out{};
  unsigned int length = 0;
  Check(HMAC(EVP_sha256(), key.data(), key.size(), reinterpret_cast<const uint8_t*>(message.data()),
             message.size(), out.data(), &length) != nullptr
            ? 1
            : 0,
        "HMAC");
  return out;
}

Key Sha256(const Key& data) {
  Key out{};
  SHA256(data.data(), data.size(), out.data());
  return out;
}

// Attribute returns the value of "k=value" at the start of `part`, or nullopt.
std::optional<std::string_view> Attribute(std::string_view part, char name) {
  if (part.size() < 2 || part[0] != name || part[1] != '=') {
    return std::nullopt;
  }
  return part.substr(2);
}

std::vector<std::string_view> SplitCommas(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) {
      return parts;
    }
    start = comma + 1;
  }
}

// Unescape decodes a saslname (RFC 5802 §5.1): "=2C" is ',' and "=3D" is '='; any other
// '=' is malformed.
std::optional<std::string> Unescape(std::string_view name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '=') {
      out.push_back(name[i]);
      continue;
    }
    std::string_view code = name.substr(i + 1, 2);
    if (code == "2C") {
      out.push_back(',');
    } else if (code == "3D") {
      out.push_back('=');
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

std::string RandomBase64(size_t bytes) {
  std::vector<uint8_t> random(bytes);
  Check(RAND_bytes(random.data(), random.size()), "RAND_bytes");
  return Base64(random.data(), random.size());
}

std::vector<uint8_t> Failure(int code, std::string_view code_name, std::string_view errmsg) {
  return BsonBuilder()
      .AppendDouble("ok", 0.0)
      .AppendString("errmsg", errmsg)
      .AppendInt32("code", code)
      .AppendString("codeName", code_name)
      .Finish();
}

std::vector<uint8_t> AuthenticationFailed() {
  // mongod says no more than this to the client, whatever went wrong, so that a reply
  // cannot tell an unknown user from a wrong password.
  return Failure(kAuthenticationFailed, "AuthenticationFailed", "Authentication failed.");
}

absl::Span<const uint8_t> Bytes(std::string_view text) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

std::optional<std::string_view> Payload(const BsonView& body) {
  std::optional<BsonElement> element = body.Find("payload");
  if (!element) {
    return std::nullopt;
  }
  if (std::optional<absl::Span<const uint8_t>> binary = element->AsBinary()) {
    return std::string_view(reinterpret_cast<const char*>(binary->data()), binary->size());
  }
  // Some shells send the payload as a (base64) string; the tests' drivers do not.
  return std::nullopt;
}

}  // namespace

ScramCredential ScramCredential::Derive(std::string_view user, std::string_view password,
                                        std::vector<uint8_t> salt, int iterations) {
  ScramCredential credential;
  credential.user = std::string(user);
  credential.salt = std::move(salt);
  credential.iterations = iterations;
  Key salted{};
  Check(PKCS5_PBKDF2_HMAC(password.data(), password.size(), credential.salt.data(),
                          credential.salt.size(), iterations, EVP_sha256(), salted.size(),
                          salted.data()),
        "PKCS5_PBKDF2_HMAC");
  credential.stored_key = Sha256(Hmac(salted, "Client Key"));
  credential.server_key = Hmac(salted, "Server Key");
  OPENSSL_cleanse(salted.data(), salted.size());
  return credential;
}

ScramServerConversation::ScramServerConversation(const ScramCredential* credential,
                                                 std::string server_nonce)
    : credential_(credential), server_nonce_(std::move(server_nonce)) {}

absl::StatusOr<std::string> ScramServerConversation::Start(std::string_view client_first) {
  if (started_) {
    return absl::InvalidArgumentError("the conversation has already started");
  }
  started_ = true;
  // gs2-header: "n" (no channel binding; "y" would mean the client supports it but thinks
  // the server does not, "p=" that it wants it), an empty authzid, then the bare message.
  if (!client_first.starts_with("n,,")) {
    return absl::InvalidArgumentError(
        "client-first-message must start with \"n,,\" (no channel binding, no authzid)");
  }
  client_first_bare_ = std::string(client_first.substr(3));
  std::vector<std::string_view> parts = SplitCommas(client_first_bare_);
  if (parts.size() < 2) {
    return absl::InvalidArgumentError("client-first-message needs n= and r=");
  }
  std::optional<std::string_view> name = Attribute(parts[0], 'n');
  std::optional<std::string_view> nonce = Attribute(parts[1], 'r');
  if (!name || !nonce || nonce->empty()) {
    return absl::InvalidArgumentError("client-first-message needs n= and r=");
  }
  std::optional<std::string> user = Unescape(*name);
  if (!user) {
    return absl::InvalidArgumentError("malformed user name");
  }
  if (*user != credential_->user) {
    return absl::UnauthenticatedError("unknown user");
  }
  nonce_ = std::string(*nonce) + server_nonce_;
  server_first_ = "r=" + nonce_ +
                  ",s=" + Base64(credential_->salt.data(), credential_->salt.size()) +
                  ",i=" + std::to_string(credential_->iterations);
  return server_first_;
}

absl::StatusOr<std::string> ScramServerConversation::Finish(std::string_view client_final) {
  if (!started_ || finished_ || nonce_.empty()) {
    return absl::InvalidArgumentError("client-final-message out of order");
  }
  finished_ = true;
  size_t proof_at = client_final.rfind(",p=");
  if (proof_at == std::string_view::npos) {
    return absl::InvalidArgumentError("client-final-message has no proof");
  }
  std::string_view without_proof = client_final.substr(0, proof_at);
  std::vector<std::string_view> parts = SplitCommas(without_proof);
  if (parts.size() < 2) {
    return absl::InvalidArgumentError("client-final-message needs c= and r=");
  }
  std::optional<std::string_view> binding = Attribute(parts[0], 'c');
  std::optional<std::string_view> nonce = Attribute(parts[1], 'r');
  // "biws" is base64("n,,"): the gs2 header again, as RFC 5802 §7 requires.
  if (!binding || *binding != "biws") {
    return absl::InvalidArgumentError("channel binding must be c=biws");
  }
  if (!nonce || *nonce != nonce_) {
    return absl::InvalidArgumentError("nonce differs from the one of this conversation");
  }
  std::optional<std::vector<uint8_t>> proof = Unbase64(client_final.substr(proof_at + 3));
  if (!proof || proof->size() != SHA256_DIGEST_LENGTH) {
    return absl::InvalidArgumentError("malformed proof");
  }
  std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); it is right when its hash is
  // StoredKey (RFC 5802 §3).
  Key signature = Hmac(credential_->stored_key, auth_message);
  Key client_key{};
  for (size_t i = 0; i < client_key.size(); ++i) {
    client_key[i] = (*proof)[i] ^ signature[i];
  }
  Key stored = Sha256(client_key);
  if (CRYPTO_memcmp(stored.data(), credential_->stored_key.data(), stored.size()) != 0) {
    return absl::UnauthenticatedError("wrong proof");
  }
  Key server_signature = Hmac(credential_->server_key, auth_message);
  return "v=" + Base64(server_signature.data(), server_signature.size());
}

ScramAuthenticator::ScramAuthenticator(std::string_view user, std::string_view password) {
  std::vector<uint8_t> salt(kSaltBytes);
  Check(RAND_bytes(salt.data(), salt.size()), "RAND_bytes");
  credential_ = ScramCredential::Derive(user, password, std::move(salt), kIterations);
}

bool ScramAuthenticator::Handles(std::string_view command) {
  return command == "saslStart" || command == "saslContinue";
}

std::vector<uint8_t> ScramAuthenticator::Begin(int64_t connection, std::string_view db,
                                               const BsonView& start, bool* ok) {
  *ok = false;
  std::optional<BsonElement> mechanism = start.Find("mechanism");
  std::optional<std::string_view> name = mechanism ? mechanism->AsString() : std::nullopt;
  if (!name) {
    return Failure(kBadValue, "BadValue", "saslStart needs a mechanism");
  }
  if (*name != kMechanism) {
    return Failure(kMechanismUnavailable, "MechanismUnavailable",
                   std::string("Received authentication for mechanism ") + std::string(*name) +
                       " which is not enabled");
  }
  std::optional<std::string_view> payload = Payload(start);
  if (!payload) {
    return Failure(kBadValue, "BadValue", "saslStart needs a binary payload");
  }
  Session& session = sessions_[connection];
  session = Session();
  session.conversation =
      std::make_unique<ScramServerConversation>(&credential_, RandomBase64(kNonceBytes));
  session.conversation_id = next_conversation_id_++;
  std::optional<BsonElement> options = start.Find("options");
  if (options) {
    std::optional<BsonView> view = options->AsDocument();
    std::optional<BsonElement> skip = view ? view->Find("skipEmptyExchange") : std::nullopt;
    session.skip_empty_exchange = skip && skip->IsTrue();
  }
  if (db != kDatabase) {
    sessions_.erase(connection);
    return AuthenticationFailed();
  }
  absl::StatusOr<std::string> server_first = session.conversation->Start(*payload);
  if (!server_first.ok()) {
    sessions_.erase(connection);
    if (server_first.status().code() == absl::StatusCode::kUnauthenticated) {
      return AuthenticationFailed();
    }
    return Failure(kBadValue, "BadValue", std::string(server_first.status().message()));
  }
  *ok = true;
  return BsonBuilder()
      .AppendInt32("conversationId", session.conversation_id)
      .AppendBool("done", false)
      .AppendBinary("payload", 0, Bytes(*server_first))
      .Finish();
}

std::vector<uint8_t> ScramAuthenticator::Run(int64_t connection, std::string_view command,
                                             std::string_view db, const BsonView& body) {
  auto with_ok = [](const std::vector<uint8_t>& fields) {
    BsonBuilder writer;
    if (absl::StatusOr<BsonView> view = BsonView::Parse(fields); view.ok()) {
      for (const BsonElement& element : *view) {
        writer.AppendElement(element);
      }
    }
    return writer.AppendDouble("ok", 1.0).Finish();
  };
  if (command == "saslStart") {
    bool ok = false;
    std::vector<uint8_t> reply = Begin(connection, db, body, &ok);
    return ok ? with_ok(reply) : reply;
  }
  // saslContinue
  auto found = sessions_.find(connection);
  std::optional<BsonElement> id = body.Find("conversationId");
  if (found == sessions_.end() || !found->second.conversation || !id ||
      id->AsInt64() != found->second.conversation_id) {
    return Failure(kNoSuchKey, "NoSuchKey", "No SASL session state found");
  }
  Session& session = found->second;
  std::optional<std::string_view> payload = Payload(body);
  if (!payload) {
    return Failure(kBadValue, "BadValue", "saslContinue needs a binary payload");
  }
  if (session.awaiting_empty_step) {
    // The client acknowledges the server-final-message with an empty step (MongoDB before
    // skipEmptyExchange); the conversation ends here.
    if (!payload->empty()) {
      sessions_.erase(found);
      return Failure(kProtocolError, "ProtocolError", "expected an empty SASL step");
    }
    session.awaiting_empty_step = false;
    session.authenticated = true;
    session.conversation.reset();
    return BsonBuilder()
        .AppendInt32("conversationId", session.conversation_id)
        .AppendBool("done", true)
        .AppendBinary("payload", 0, {})
        .AppendDouble("ok", 1.0)
        .Finish();
  }
  absl::StatusOr<std::string> server_final = session.conversation->Finish(*payload);
  if (!server_final.ok()) {
    sessions_.erase(found);
    return AuthenticationFailed();
  }
  bool done = session.skip_empty_exchange;
  if (done) {
    session.authenticated = true;
    session.conversation.reset();
  } else {
    session.awaiting_empty_step = true;
  }
  return BsonBuilder()
      .AppendInt32("conversationId", session.conversation_id)
      .AppendBool("done", done)
      .AppendBinary("payload", 0, Bytes(*server_final))
      .AppendDouble("ok", 1.0)
      .Finish();
}

void ScramAuthenticator::AnswerHello(int64_t connection, const BsonView& body, BsonBuilder& reply) {
  std::optional<BsonElement> mechs = body.Find("saslSupportedMechs");
  std::optional<std::string_view> asked = mechs ? mechs->AsString() : std::nullopt;
  // As mongod: the list is given only for a user that exists ("db.user").
  if (asked && *asked == std::string(kDatabase) + "." + credential_.user) {
    reply.StartArray("saslSupportedMechs").AppendString("0", kMechanism).EndArray();
  }
  std::optional<BsonElement> speculative = body.Find("speculativeAuthenticate");
  std::optional<BsonView> start = speculative ? speculative->AsDocument() : std::nullopt;
  if (!start) {
    return;
  }
  std::optional<BsonElement> db = start->Find("db");
  bool ok = false;
  std::vector<uint8_t> fields =
      Begin(connection, db ? db->AsString().value_or("") : "", *start, &ok);
  // A speculative step that fails is left out of the reply, as mongod does: the driver
  // then authenticates with saslStart and gets the error there.
  if (ok) {
    if (absl::StatusOr<BsonView> view = BsonView::Parse(fields); view.ok()) {
      reply.AppendDocument("speculativeAuthenticate", *view);
    }
  }
}

bool ScramAuthenticator::Authenticated(int64_t connection) const {
  auto found = sessions_.find(connection);
  return found != sessions_.end() && found->second.authenticated;
}

void ScramAuthenticator::Forget(int64_t connection) { sessions_.erase(connection); }

}  // namespace sidecar::support
