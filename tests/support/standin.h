// Standin is the state and the command set of the stand-in mongod (see mongod_standin.cc for
// what the stand-in is and why it exists): in-memory databases of collections of BSON
// documents, open cursors, and the commands that pymongo, the Node.js driver and mongosh
// send to connect and do CRUD.
//
// It is pure: commands in, reply documents out; no sockets. One Standin serves every
// connection of the process from a single loop thread; nothing here is thread-safe.
#ifndef SIDECAR_TESTS_SUPPORT_STANDIN_H_
#define SIDECAR_TESTS_SUPPORT_STANDIN_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "protocol/bson.h"
#include "tests/support/scram.h"

namespace sidecar::support {

using Document = std::vector<uint8_t>;  // one BSON document, owned

struct StandinOptions {
  // When not empty, hello advertises a one-member replica set of this name whose only host
  // is `advertised_address` (the address the stand-in listens on).
  std::string repl_set;
  std::string advertised_address = "127.0.0.1:27017";
  // When `auth_user` is not empty, clients must authenticate as this user of `admin` with
  // SCRAM-SHA-256 (scram.h) before any command but the handshake's and authentication's.
  std::string auth_user;
  std::string auth_password;
};

// CommandRequest is one command as the wire carried it. Views borrow the message bytes,
// which the caller keeps alive during Standin::Run.
struct CommandRequest {
  protocol::BsonView body;  // OP_MSG section 0, or the OP_QUERY query document
  // OP_MSG kind-1 sections: identifier ("documents", "updates", "deletes") and documents.
  std::vector<std::pair<std::string_view, std::vector<protocol::BsonView>>> sequences;
  bool legacy = false;        // arrived as OP_QUERY; `db` then comes from the namespace
  std::string legacy_db;      // the database of the OP_QUERY namespace ("admin" of admin.$cmd)
  int64_t connection_id = 0;  // for hello's connectionId
  std::string peer;           // the client's "host:port", for whatsmyuri
};

class Standin {
 public:
  explicit Standin(StandinOptions options);

  // Run executes one command and returns the reply document. Failures are replies too, as
  // mongod sends them: {ok: 0, errmsg, code, codeName}.
  Document Run(const CommandRequest& request);

  // CommandName is the name of the command in `body` (its first key), "" when empty.
  static std::string_view CommandName(const protocol::BsonView& body);

  // ForgetConnection drops what is kept for a connection that closed (its authentication).
  void ForgetConnection(int64_t connection_id);

 private:
  struct Cursor {
    std::string ns;                   // "db.collection"
    std::vector<Document> documents;  // what is left to return
    size_t next = 0;
  };
  using Collection = std::vector<Document>;  // insertion order
  using Database = std::map<std::string, Collection, std::less<>>;

  Document Hello(const CommandRequest& request, std::string_view name);
  Document BuildInfo();
  Document Insert(std::string_view db, const CommandRequest& request);
  Document Find(std::string_view db, const protocol::BsonView& body);
  Document GetMore(std::string_view db, const protocol::BsonView& body);
  Document KillCursors(const protocol::BsonView& body);
  Document Delete(std::string_view db, const CommandRequest& request);
  Document Update(std::string_view db, const CommandRequest& request);
  Document Count(std::string_view db, const protocol::BsonView& body);
  Document Aggregate(std::string_view db, const protocol::BsonView& body);
  Document ListDatabases();
  Document ListCollections(std::string_view db, const protocol::BsonView& body);
  Document ListIndexes(std::string_view db, const protocol::BsonView& body);
  Document Create(std::string_view db, const protocol::BsonView& body);
  Document Drop(std::string_view db, const protocol::BsonView& body);

  // Returns the first batch reply ({cursor: {firstBatch, id, ns}, ok: 1}) of `documents`,
  // keeping the rest in a new cursor unless `single_batch`.
  Document CursorReply(std::string ns, std::vector<Document> documents, int64_t batch_size,
                       bool single_batch);
  // Documents of the command's kind-1 sequence `name`, or of its body array `name`.
  static std::vector<protocol::BsonView> Statements(const CommandRequest& request,
                                                    std::string_view name);
  Collection* FindCollection(std::string_view db, std::string_view name);
  Document NewObjectIdDocument(const protocol::BsonView& document);

  StandinOptions options_;
  std::unique_ptr<ScramAuthenticator> auth_;  // null without authentication
  std::map<std::string, Database, std::less<>> databases_;
  std::map<int64_t, Cursor> cursors_;
  int64_t next_cursor_id_ = 1000;
  uint32_t object_id_counter_ = 0;
  uint8_t object_id_process_[5] = {};
};

// Debian's Abseil has its own string_view, distinct from std::string_view, so the stand-in
// joins strings with this instead of absl::StrCat.
inline void AppendPiece(std::string& out, std::string_view piece) { out.append(piece); }
inline void AppendPiece(std::string& out, absl::string_view piece) {
  out.append(piece.data(), piece.size());
}
inline void AppendPiece(std::string& out, const char* piece) { out.append(piece); }
inline void AppendPiece(std::string& out, const std::string& piece) { out.append(piece); }
template <typename Number>
requires std::is_arithmetic_v<Number>
void AppendPiece(std::string& out, Number number) {
  if constexpr (std::is_floating_point_v<Number>) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%g", static_cast<double>(number));
    out.append(buffer);
  } else {
    out.append(std::to_string(number));
  }
}
template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (AppendPiece(out, pieces), ...);
  return out;
}
inline bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.starts_with(prefix);
}
inline bool Contains(std::string_view text, char c) {
  return text.find(c) != std::string_view::npos;
}

// ErrorReply builds {ok: 0, errmsg, code, codeName}.
Document ErrorReply(int code, std::string_view code_name, std::string_view errmsg);

// Matches reports whether `document` matches `filter`: top-level fields compared for
// equality (numbers across types), or with $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin,
// $exists; also $and / $or of such filters. *error is set (and false returned) for
// anything else, so an unsupported query is a visible failure rather than a wrong answer.
bool Matches(const protocol::BsonView& document, const protocol::BsonView& filter,
             std::string* error);

// CompareValues orders two values as MongoDB's sort does for the types the stand-in
// supports: numbers numerically, then strings, documents, arrays, binary, ObjectId,
// booleans, dates, by type first. Returns <0, 0 or >0.
int CompareValues(const protocol::BsonElement& a, const protocol::BsonElement& b);

}  // namespace sidecar::support

#endif  // SIDECAR_TESTS_SUPPORT_STANDIN_H_
