// SCRAM-SHA-256 for the stand-in mongod (mongod_standin --auth USER:PASSWORD), so that tests
// can show that drivers authenticate through the sidecar exactly as they do against mongod.
//
// Two layers, both pure (bytes in, bytes out; no sockets):
//  - ScramServerConversation is the server side of one RFC 5802 exchange with RFC 7677's
//    hash (SHA-256), without channel binding, as MongoDB runs it: the password is used as
//    given (MongoDB SASLprep's it; the tests use ASCII passwords, for which SASLprep is the
//    identity).
//  - ScramAuthenticator is MongoDB's command layer over it: saslStart / saslContinue, the
//    saslSupportedMechs and speculativeAuthenticate fields of hello, and which connection
//    has authenticated. One user, in the `admin` database.
//
// Like Standin, everything here runs on the stand-in's one loop thread; nothing is
// thread-safe.
#ifndef SIDECAR_TESTS_SUPPORT_SCRAM_H_
#define SIDECAR_TESTS_SUPPORT_SCRAM_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/bson.h"
#include "tests/support/bson_builder.h"

namespace sidecar::support {

// ScramCredential is what a server stores for a user (RFC 5802 §3): never the password.
struct ScramCredential {
  std::string user;
  std::vector<uint8_t> salt;
  int iterations = 0;
  std::array<uint8_t, 32> stored_key{};
  std::array<uint8_t, 32> server_key{};

  // Derive computes SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations) and
  // the keys from it.
  static ScramCredential Derive(std::string_view user, std::string_view password,
                                std::vector<uint8_t> salt, int iterations);
};

// ScramServerConversation runs one exchange. `credential` is borrowed and outlives the
// conversation; `server_nonce` is the server's part of the nonce (printable, no comma).
// Errors are kInvalidArgument for a malformed message and kUnauthenticated for a wrong user
// or proof; after an error the conversation is over.
class ScramServerConversation {
 public:
  ScramServerConversation(const ScramCredential* credential, std::string server_nonce);

  // Start takes the client-first-message ("n,,n=user,r=nonce") and returns the
  // server-first-message ("r=...,s=...,i=...").
  absl::StatusOr<std::string> Start(std::string_view client_first);
  // Finish takes the client-final-message ("c=biws,r=...,p=...") and returns the
  // server-final-message ("v=...") when the proof is right.
  absl::StatusOr<std::string> Finish(std::string_view client_final);

 private:
  const ScramCredential* credential_;
  std::string server_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // the client's nonce followed by the server's
  bool started_ = false;
  bool finished_ = false;
};

// ScramAuthenticator answers MongoDB's authentication commands for one user of `admin`.
class ScramAuthenticator {
 public:
  ScramAuthenticator(std::string_view user, std::string_view password);

  // Handles reports whether `command` is one this class answers (saslStart, saslContinue).
  static bool Handles(std::string_view command);
  // Run answers saslStart or saslContinue from `connection`, in database `db`. Failures
  // are mongod's: {ok: 0, code: 18, codeName: "AuthenticationFailed"} for a wrong user or
  // password, 334 MechanismUnavailable for a mechanism other than SCRAM-SHA-256.
  std::vector<uint8_t> Run(int64_t connection, std::string_view command, std::string_view db,
                           const protocol::BsonView& body);
  // AnswerHello adds to a hello reply what the hello `body` asked for: saslSupportedMechs
  // ("admin.<user>") and the first step of speculativeAuthenticate.
  void AnswerHello(int64_t connection, const protocol::BsonView& body, BsonBuilder& reply);
  // Authenticated reports whether `connection` completed an exchange.
  bool Authenticated(int64_t connection) const;
  // Forget drops what is kept for a closed connection.
  void Forget(int64_t connection);

 private:
  struct Session {
    std::unique_ptr<ScramServerConversation> conversation;
    int32_t conversation_id = 0;
    bool skip_empty_exchange = false;
    bool awaiting_empty_step = false;  // server-final sent, done:false; one empty step left
    bool authenticated = false;
  };

  // Begin runs the first step of a saslStart-shaped document (the command or the hello's
  // speculativeAuthenticate field); returns the reply fields or an error reply.
  std::vector<uint8_t> Begin(int64_t connection, std::string_view db,
                             const protocol::BsonView& start, bool* ok);

  ScramCredential credential_;
  std::map<int64_t, Session> sessions_;
  int32_t next_conversation_id_ = 1;
};

}  // namespace sidecar::support

#endif  // SIDECAR_TESTS_SUPPORT_SCRAM_H_
