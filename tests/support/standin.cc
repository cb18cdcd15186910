#include "tests/support/standin.h"
#include "tests/support/bson_builder.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <set>

namespace sidecar::support {
namespace {

using protocol::BsonElement;
using protocol::BsonType;
using protocol::BsonView;

// What the stand-in claims to be: MongoDB 6.0 (wire version 17), recent enough for every
// driver the tests use and old enough that none of them needs what the stand-in lacks.
constexpr int32_t kMaxWireVersion = 17;
constexpr std::string_view kVersion = "6.0.0";
constexpr int32_t kMaxBsonObjectSize = 16 * 1024 * 1024;
constexpr int32_t kMaxMessageSizeBytes = 48000000;
constexpr int32_t kMaxWriteBatchSize = 100000;
constexpr int64_t kDefaultFirstBatch = 101;
// A batch stops growing past this many bytes, well under kMaxMessageSizeBytes.
constexpr size_t kMaxBatchBytes = 8 * 1024 * 1024;

// Error codes as mongod names them (src/mongo/base/error_codes.yml).
constexpr int kBadValue = 2;
constexpr int kFailedToParse = 9;
constexpr int kUnauthorized = 13;
constexpr int kTypeMismatch = 14;
constexpr int kNamespaceNotFound = 26;
constexpr int kCursorNotFound = 43;
constexpr int kNamespaceExists = 48;
constexpr int kCommandNotFound = 59;
constexpr int kImmutableField = 66;
constexpr int kDuplicateKey = 11000;
constexpr int kUnrecognizedStage = 40324;

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// View parses a document the stand-in itself stored or built; those are always valid.
BsonView View(const Document& document) {
  absl::StatusOr<BsonView> view = BsonView::Parse(document);
  return view.ok() ? *view : BsonView();
}

// Members is the document or array an element holds, by value: range-for over a
// dereferenced temporary optional would iterate a destroyed view.
BsonView Members(const BsonElement& element) { return element.AsDocument().value_or(BsonView()); }

Document OkReply() { return BsonBuilder().AppendDouble("ok", 1.0).Finish(); }

std::optional<std::string_view> StringField(const BsonView& body, std::string_view key) {
  std::optional<BsonElement> element = body.Find(key);
  return element ? element->AsString() : std::nullopt;
}

int64_t IntField(const BsonView& body, std::string_view key, int64_t fallback) {
  std::optional<BsonElement> element = body.Find(key);
  if (!element) {
    return fallback;
  }
  return element->AsInt64().value_or(fallback);
}

bool FlagField(const BsonView& body, std::string_view key) {
  std::optional<BsonElement> element = body.Find(key);
  return element && element->IsTrue();
}

BsonView DocumentField(const BsonView& body, std::string_view key) {
  std::optional<BsonElement> element = body.Find(key);
  if (!element) {
    return BsonView();
  }
  return element->AsDocument().value_or(BsonView());
}

int TypeRank(BsonType type) {
  switch (type) {
    case BsonType::kMinKey:
      return 1;
    case BsonType::kNull:
    case BsonType::kUndefined:
      return 2;
    case BsonType::kDouble:
    case BsonType::kInt32:
    case BsonType::kInt64:
    case BsonType::kDecimal128:
      return 3;
    case BsonType::kString:
    case BsonType::kSymbol:
      return 4;
    case BsonType::kDocument:
      return 5;
    case BsonType::kArray:
      return 6;
    case BsonType::kBinary:
      return 7;
    case BsonType::kObjectId:
      return 8;
    case BsonType::kBool:
      return 9;
    case BsonType::kDateTime:
      return 10;
    case BsonType::kTimestamp:
      return 11;
    case BsonType::kRegex:
      return 12;
    case BsonType::kMaxKey:
      return 14;
    default:
      return 13;
  }
}

int CompareBytes(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  size_t n = std::min(a.size(), b.size());
  if (n > 0) {
    if (int c = std::memcmp(a.data(), b.data(), n); c != 0) {
      return c < 0 ? -1 : 1;
    }
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

template <typename T>
int Three(T a, T b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

bool Equal(const BsonElement& a, const BsonElement& b) { return CompareValues(a, b) == 0; }

// ElementMatches applies one filter value (a literal or an operator document) to the
// field's element, absent when the document lacks the field.
bool ElementMatches(const std::optional<BsonElement>& field, const BsonElement& condition,
                    std::string* error);

bool LiteralMatches(const std::optional<BsonElement>& field, const BsonElement& literal) {
  if (!field) {
    // {f: null} matches documents without f, as in MongoDB.
    return literal.IsNull();
  }
  if (Equal(*field, literal)) {
    return true;
  }
  // {tags: "a"} matches {tags: ["a", "b"]}.
  if (field->type() == BsonType::kArray && literal.type() != BsonType::kArray) {
    for (const BsonElement& item : Members(*field)) {
      if (Equal(item, literal)) {
        return true;
      }
    }
  }
  return false;
}

bool IsOperatorDocument(const BsonElement& element) {
  if (element.type() != BsonType::kDocument) {
    return false;
  }
  std::optional<BsonElement> first = element.AsDocument()->First();
  return first && StartsWith(first->key(), "$");
}

bool ElementMatches(const std::optional<BsonElement>& field, const BsonElement& condition,
                    std::string* error) {
  if (!IsOperatorDocument(condition)) {
    return LiteralMatches(field, condition);
  }
  for (const BsonElement& op : Members(condition)) {
    std::string_view name = op.key();
    bool ok;
    if (name == "$eq") {
      ok = LiteralMatches(field, op);
    } else if (name == "$ne") {
      ok = !LiteralMatches(field, op);
    } else if (name == "$gt" || name == "$gte" || name == "$lt" || name == "$lte") {
      ok = false;
      if (field && TypeRank(field->type()) == TypeRank(op.type())) {
        int c = CompareValues(*field, op);
        ok = (name == "$gt" && c > 0) || (name == "$gte" && c >= 0) || (name == "$lt" && c < 0) ||
             (name == "$lte" && c <= 0);
      }
    } else if (name == "$in" || name == "$nin") {
      if (op.type() != BsonType::kArray) {
        *error = Cat(name, " needs an array");
        return false;
      }
      bool any = false;
      for (const BsonElement& item : Members(op)) {
        any = any || LiteralMatches(field, item);
      }
      ok = name == "$in" ? any : !any;
    } else if (name == "$exists") {
      ok = field.has_value() == op.IsTrue();
    } else {
      *error = Cat("the stand-in mongod does not support the query operator ", name);
      return false;
    }
    if (!ok) {
      return false;
    }
  }
  return true;
}

// EnsureId returns the document with an _id first: as is when it has one, else with a new
// ObjectId prepended (what drivers expect mongod to do for them).
using IdMaker = std::function<void(uint8_t out[12])>;

Document WithId(const BsonView& document, const IdMaker& make_id) {
  if (document.Find("_id")) {
    return Document(document.bytes().begin(), document.bytes().end());
  }
  uint8_t oid[12];
  make_id(oid);
  BsonBuilder writer;
  writer.AppendObjectId("_id", std::span<const uint8_t, 12>(oid, 12));
  for (const BsonElement& element : document) {
    writer.AppendElement(element);
  }
  return writer.Finish();
}

// ApplyUpdate returns `original` changed by `update` (a replacement document or $set /
// $unset / $inc / $setOnInsert), or sets *error. Top-level fields only.
std::optional<Document> ApplyUpdate(const BsonView& original, const BsonView& update,
                                    bool inserting, std::string* error, int* code) {
  std::optional<BsonElement> original_id = original.Find("_id");
  std::optional<BsonElement> first = update.First();
  if (!first || !StartsWith(first->key(), "$")) {
    // Replacement: the new document keeps the original _id.
    std::optional<BsonElement> new_id = update.Find("_id");
    if (original_id && new_id && !Equal(*original_id, *new_id)) {
      *error = "Performing an update on the path '_id' would modify the immutable field '_id'";
      *code = kImmutableField;
      return std::nullopt;
    }
    BsonBuilder writer;
    if (original_id) {
      writer.AppendElement(*original_id);
    } else if (new_id) {
      writer.AppendElement(*new_id);
    }
    for (const BsonElement& element : update) {
      if (element.key() != "_id") {
        writer.AppendElement(element);
      }
    }
    return writer.Finish();
  }

  std::map<std::string, BsonElement, std::less<>> set;
  std::map<std::string, BsonElement, std::less<>> inc;
  std::set<std::string, std::less<>> unset;
  for (const BsonElement& op : update) {
    std::optional<BsonView> fields = op.AsDocument();
    if (!fields || op.type() != BsonType::kDocument) {
      *error = Cat("Modifiers operate on fields but we found ", op.key(), " without a document");
      *code = kFailedToParse;
      return std::nullopt;
    }
    for (const BsonElement& field : *fields) {
      if (Contains(field.key(), '.')) {
        *error = Cat("the stand-in mongod updates top-level fields only, not ", field.key());
        *code = kBadValue;
        return std::nullopt;
      }
      if (op.key() == "$set" || (op.key() == "$setOnInsert" && inserting)) {
        set.insert_or_assign(std::string(field.key()), field);
      } else if (op.key() == "$setOnInsert") {
        continue;
      } else if (op.key() == "$unset") {
        unset.insert(std::string(field.key()));
      } else if (op.key() == "$inc") {
        if (!field.IsNumber()) {
          *error = Cat("Cannot increment with non-numeric argument: ", field.key());
          *code = kTypeMismatch;
          return std::nullopt;
        }
        inc.insert_or_assign(std::string(field.key()), field);
      } else {
        *error = Cat("Unknown modifier: ", op.key());
        *code = kFailedToParse;
        return std::nullopt;
      }
    }
  }

  auto append_sum = [&](BsonBuilder& writer, std::string_view key,
                        const std::optional<BsonElement>& current, const BsonElement& delta) {
    bool doubles =
        delta.type() == BsonType::kDouble || (current && current->type() == BsonType::kDouble);
    if (doubles) {
      double base = current ? current->AsDouble().value_or(0) : 0;
      writer.AppendDouble(key, base + *delta.AsDouble());
      return;
    }
    int64_t sum = *delta.AsInt64() + (current ? current->AsInt64().value_or(0) : 0);
    bool int32 = delta.type() == BsonType::kInt32 &&
                 (!current || current->type() == BsonType::kInt32) && sum >= INT32_MIN &&
                 sum <= INT32_MAX;
    if (int32) {
      writer.AppendInt32(key, static_cast<int32_t>(sum));
    } else {
      writer.AppendInt64(key, sum);
    }
  };

  BsonBuilder writer;
  std::set<std::string, std::less<>> written;
  for (const BsonElement& element : original) {
    std::string_view key = element.key();
    written.insert(std::string(key));
    if (unset.contains(key)) {
      continue;
    }
    if (auto it = set.find(key); it != set.end()) {
      if (key == "_id" && !Equal(element, it->second)) {
        *error = "Performing an update on the path '_id' would modify the immutable field '_id'";
        *code = kImmutableField;
        return std::nullopt;
      }
      writer.AppendElement(key, it->second);
    } else if (auto it = inc.find(key); it != inc.end()) {
      if (!element.IsNumber()) {
        *error = Cat("Cannot apply $inc to a value of non-numeric type: ", key);
        *code = kTypeMismatch;
        return std::nullopt;
      }
      append_sum(writer, key, element, it->second);
    } else {
      writer.AppendElement(element);
    }
  }
  for (const auto& [key, value] : set) {
    if (!written.contains(key)) {
      writer.AppendElement(key, value);
    }
  }
  for (const auto& [key, delta] : inc) {
    if (!written.contains(key) && !set.contains(key)) {
      append_sum(writer, key, std::nullopt, delta);
    }
  }
  return writer.Finish();
}

// SortDocuments orders documents by a sort specification {field: 1 | -1, ...}.
bool SortDocuments(std::vector<Document>& documents, const BsonView& sort, std::string* error) {
  std::vector<std::pair<std::string, int>> keys;
  for (const BsonElement& key : sort) {
    std::optional<int64_t> direction = key.AsInt64();
    if (!direction || (*direction != 1 && *direction != -1)) {
      *error = Cat("the stand-in mongod sorts by 1 or -1 only, not by ", key.key());
      return false;
    }
    keys.emplace_back(std::string(key.key()), static_cast<int>(*direction));
  }
  Document null_holder = BsonBuilder().AppendNull("v").Finish();
  BsonElement null_value = *View(null_holder).First();
  std::stable_sort(documents.begin(), documents.end(), [&](const Document& a, const Document& b) {
    BsonView va = View(a);
    BsonView vb = View(b);
    for (const auto& [field, direction] : keys) {
      BsonElement ea = va.Find(field).value_or(null_value);
      BsonElement eb = vb.Find(field).value_or(null_value);
      if (int c = CompareValues(ea, eb); c != 0) {
        return c * direction < 0;
      }
    }
    return false;
  });
  return true;
}

std::string Namespace(std::string_view db, std::string_view collection) {
  return Cat(db, ".", collection);
}

}  // namespace

Document ErrorReply(int code, std::string_view code_name, std::string_view errmsg) {
  return BsonBuilder()
      .AppendDouble("ok", 0.0)
      .AppendString("errmsg", errmsg)
      .AppendInt32("code", code)
      .AppendString("codeName", code_name)
      .Finish();
}

int CompareValues(const BsonElement& a, const BsonElement& b) {
  int rank_a = TypeRank(a.type());
  int rank_b = TypeRank(b.type());
  if (rank_a != rank_b) {
    return rank_a < rank_b ? -1 : 1;
  }
  switch (a.type()) {
    case BsonType::kDouble:
    case BsonType::kInt32:
    case BsonType::kInt64:
    case BsonType::kDecimal128: {
      std::optional<int64_t> ia = a.type() == BsonType::kDouble ? std::nullopt : a.AsInt64();
      std::optional<int64_t> ib = b.type() == BsonType::kDouble ? std::nullopt : b.AsInt64();
      if (ia && ib) {
        return Three(*ia, *ib);
      }
      return Three(a.AsDouble().value_or(0), b.AsDouble().value_or(0));
    }
    case BsonType::kString:
    case BsonType::kSymbol: {
      std::string_view sa = a.AsString().value_or("");
      std::string_view sb = b.AsString().value_or("");
      return sa < sb ? -1 : (sb < sa ? 1 : 0);
    }
    case BsonType::kBool:
      return Three(a.AsBool().value_or(false), b.AsBool().value_or(false));
    case BsonType::kDateTime:
      return Three(a.AsDateTime().value_or(0), b.AsDateTime().value_or(0));
    case BsonType::kNull:
    case BsonType::kUndefined:
    case BsonType::kMinKey:
    case BsonType::kMaxKey:
      return 0;
    default:
      // Documents, arrays, binary, ObjectId, timestamps, regexes: by their encoding, which
      // is equality-exact and a stable order (field order matters, as in MongoDB).
      return CompareBytes(a.value_bytes(), b.value_bytes());
  }
}

bool Matches(const BsonView& document, const BsonView& filter, std::string* error) {
  for (const BsonElement& condition : filter) {
    std::string_view key = condition.key();
    if (key == "$and" || key == "$or" || key == "$nor") {
      if (condition.type() != BsonType::kArray) {
        *error = Cat(key, " needs an array");
        return false;
      }
      bool any = false;
      bool all = true;
      for (const BsonElement& clause : Members(condition)) {
        std::optional<BsonView> sub = clause.AsDocument();
        if (!sub || clause.type() != BsonType::kDocument) {
          *error = Cat(key, " entries must be documents");
          return false;
        }
        bool match = Matches(document, *sub, error);
        if (!error->empty()) {
          return false;
        }
        any = any || match;
        all = all && match;
      }
      bool ok = key == "$and" ? all : (key == "$or" ? any : !any);
      if (!ok) {
        return false;
      }
      continue;
    }
    if (StartsWith(key, "$") || Contains(key, '.')) {
      *error = Cat("the stand-in mongod matches top-level fields only, not ", key);
      return false;
    }
    if (!ElementMatches(document.Find(key), condition, error)) {
      return false;
    }
  }
  return true;
}

Standin::Standin(StandinOptions options) : options_(std::move(options)) {
  std::random_device random;
  for (uint8_t& byte : object_id_process_) {
    byte = static_cast<uint8_t>(random());
  }
  object_id_counter_ = random() & 0xFFFFFF;
  if (!options_.auth_user.empty()) {
    auth_ = std::make_unique<ScramAuthenticator>(options_.auth_user, options_.auth_password);
  }
}

void Standin::ForgetConnection(int64_t connection_id) {
  if (auth_) {
    auth_->Forget(connection_id);
  }
}

std::string_view Standin::CommandName(const BsonView& body) {
  std::optional<BsonElement> first = body.First();
  return first ? first->key() : std::string_view();
}

Document Standin::NewObjectIdDocument(const BsonView& document) {
  return WithId(document, [this](uint8_t out[12]) {
    // ObjectId: 4-byte big-endian seconds, 5 bytes per process, 3-byte counter.
    uint32_t seconds = static_cast<uint32_t>(NowMillis() / 1000);
    out[0] = seconds >> 24;
    out[1] = seconds >> 16;
    out[2] = seconds >> 8;
    out[3] = seconds;
    std::memcpy(out + 4, object_id_process_, 5);
    uint32_t counter = object_id_counter_++ & 0xFFFFFF;
    out[9] = counter >> 16;
    out[10] = counter >> 8;
    out[11] = counter;
  });
}

Document Standin::Run(const CommandRequest& request) {
  const BsonView& body = request.body;
  std::string_view name = CommandName(body);
  std::string db(request.legacy ? request.legacy_db : StringField(body, "$db").value_or(""));
  if (name.empty()) {
    return ErrorReply(kFailedToParse, "FailedToParse", "empty command document");
  }
  if (db.empty()) {
    return ErrorReply(kFailedToParse, "FailedToParse", Cat("command ", name, " has no $db"));
  }

  if (name == "hello" || name == "isMaster" || name == "ismaster") {
    return Hello(request, name);
  }
  if (auth_) {
    if (ScramAuthenticator::Handles(name)) {
      return auth_->Run(request.connection_id, name, db, body);
    }
    // What mongod lets an unauthenticated connection run, of the commands the stand-in has.
    bool open = name == "ping" || name == "buildInfo" || name == "buildinfo" ||
                name == "endSessions" || name == "logout" || name == "whatsmyuri";
    if (!open && !auth_->Authenticated(request.connection_id)) {
      return ErrorReply(kUnauthorized, "Unauthorized",
                        Cat("command ", name, " requires authentication"));
    }
  }
  if (name == "ping" || name == "endSessions" || name == "killSessions" ||
      name == "refreshSessions" || name == "logout") {
    return OkReply();
  }
  if (name == "buildInfo" || name == "buildinfo") {
    return BuildInfo();
  }
  if (name == "insert") {
    return Insert(db, request);
  }
  if (name == "find") {
    return Find(db, body);
  }
  if (name == "getMore") {
    return GetMore(db, body);
  }
  if (name == "killCursors") {
    return KillCursors(body);
  }
  if (name == "delete") {
    return Delete(db, request);
  }
  if (name == "update") {
    return Update(db, request);
  }
  if (name == "count") {
    return Count(db, body);
  }
  if (name == "aggregate") {
    return Aggregate(db, body);
  }
  if (name == "listDatabases") {
    return ListDatabases();
  }
  if (name == "listCollections") {
    return ListCollections(db, body);
  }
  if (name == "listIndexes") {
    return ListIndexes(db, body);
  }
  if (name == "create") {
    return Create(db, body);
  }
  if (name == "drop") {
    return Drop(db, body);
  }
  if (name == "dropDatabase") {
    databases_.erase(db);
    return BsonBuilder().AppendString("dropped", db).AppendDouble("ok", 1.0).Finish();
  }
  if (name == "whatsmyuri") {
    return BsonBuilder().AppendString("you", request.peer).AppendDouble("ok", 1.0).Finish();
  }
  if (name == "getLog") {
    // mongosh reads the startup warnings when it connects; there are none.
    if (StringField(body, "getLog") == "*") {
      return BsonBuilder()
          .StartArray("names")
          .AppendString("0", "global")
          .AppendString("1", "startupWarnings")
          .EndArray()
          .AppendDouble("ok", 1.0)
          .Finish();
    }
    return BsonBuilder()
        .AppendInt32("totalLinesWritten", 0)
        .StartArray("log")
        .EndArray()
        .AppendDouble("ok", 1.0)
        .Finish();
  }
  if (name == "getParameter") {
    BsonBuilder writer;
    if (body.Find("featureCompatibilityVersion")) {
      writer.StartDocument("featureCompatibilityVersion")
          .AppendString("version", "6.0")
          .EndDocument();
    }
    return writer.AppendDouble("ok", 1.0).Finish();
  }
  if (name == "getCmdLineOpts") {
    return BsonBuilder()
        .StartArray("argv")
        .AppendString("0", "mongod")
        .EndArray()
        .StartDocument("parsed")
        .EndDocument()
        .AppendDouble("ok", 1.0)
        .Finish();
  }
  if (name == "connectionStatus") {
    return BsonBuilder()
        .StartDocument("authInfo")
        .StartArray("authenticatedUsers")
        .EndArray()
        .StartArray("authenticatedUserRoles")
        .EndArray()
        .EndDocument()
        .AppendDouble("ok", 1.0)
        .Finish();
  }
  if (name == "hostInfo") {
    return BsonBuilder()
        .StartDocument("system")
        .AppendDateTime("currentTime", NowMillis())
        .AppendString("hostname", "mongod-standin")
        .AppendInt32("cpuAddrSize", 64)
        .AppendInt32("numCores", 1)
        .EndDocument()
        .StartDocument("os")
        .AppendString("type", "Linux")
        .AppendString("name", "mongod stand-in")
        .EndDocument()
        .StartDocument("extra")
        .EndDocument()
        .AppendDouble("ok", 1.0)
        .Finish();
  }
  return ErrorReply(kCommandNotFound, "CommandNotFound", Cat("no such command: '", name, "'"));
}

Document Standin::Hello(const CommandRequest& request, std::string_view name) {
  const BsonView& body = request.body;
  BsonBuilder writer;
  if (FlagField(body, "helloOk")) {
    writer.AppendBool("helloOk", true);
  }
  // hello says isWritablePrimary; isMaster, and every legacy OP_QUERY, says ismaster.
  if (name == "hello" && !request.legacy) {
    writer.AppendBool("isWritablePrimary", true);
  } else {
    writer.AppendBool("ismaster", true);
  }
  if (!options_.repl_set.empty()) {
    const std::string& me = options_.advertised_address;
    static constexpr uint8_t kElectionId[12] = {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1};
    writer.StartArray("hosts")
        .AppendString("0", me)
        .EndArray()
        .AppendString("setName", options_.repl_set)
        .AppendInt32("setVersion", 1)
        .AppendBool("secondary", false)
        .AppendString("primary", me)
        .AppendString("me", me)
        .AppendObjectId("electionId", std::span<const uint8_t, 12>(kElectionId, 12));
  }
  if (auth_) {
    auth_->AnswerHello(request.connection_id, body, writer);
  }
  // No topologyVersion: drivers then poll with plain hellos instead of the awaitable
  // (long-polling) hello, which the stand-in does not implement.
  writer.AppendInt32("maxBsonObjectSize", kMaxBsonObjectSize)
      .AppendInt32("maxMessageSizeBytes", kMaxMessageSizeBytes)
      .AppendInt32("maxWriteBatchSize", kMaxWriteBatchSize)
      .AppendDateTime("localTime", NowMillis())
      .AppendInt32("logicalSessionTimeoutMinutes", 30)
      .AppendInt64("connectionId", request.connection_id)
      .AppendInt32("minWireVersion", 0)
      .AppendInt32("maxWireVersion", kMaxWireVersion)
      .AppendBool("readOnly", false)
      .AppendDouble("ok", 1.0);
  return writer.Finish();
}

Document Standin::BuildInfo() {
  return BsonBuilder()
      .AppendString("version", kVersion)
      .AppendString("gitVersion", "0000000000000000000000000000000000000000")
      .StartArray("modules")
      .EndArray()
      .AppendString("allocator", "system")
      .AppendString("javascriptEngine", "none")
      .AppendString("sysInfo", "deprecated")
      .StartArray("versionArray")
      .AppendInt32("0", 6)
      .AppendInt32("1", 0)
      .AppendInt32("2", 0)
      .AppendInt32("3", 0)
      .EndArray()
      .StartDocument("openssl")
      .AppendString("running", "disabled")
      .AppendString("compiled", "disabled")
      .EndDocument()
      .AppendInt32("bits", 64)
      .AppendBool("debug", false)
      .AppendInt32("maxBsonObjectSize", kMaxBsonObjectSize)
      .StartArray("storageEngines")
      .AppendString("0", "ephemeralForTest")
      .EndArray()
      .AppendDouble("ok", 1.0)
      .Finish();
}

std::vector<BsonView> Standin::Statements(const CommandRequest& request, std::string_view name) {
  for (const auto& [identifier, documents] : request.sequences) {
    if (identifier == name) {
      return documents;
    }
  }
  std::vector<BsonView> statements;
  std::optional<BsonElement> array = request.body.Find(name);
  if (array && array->type() == BsonType::kArray) {
    for (const BsonElement& item : Members(*array)) {
      if (std::optional<BsonView> document = item.AsDocument();
          document && item.type() == BsonType::kDocument) {
        statements.push_back(*document);
      }
    }
  }
  return statements;
}

Standin::Collection* Standin::FindCollection(std::string_view db, std::string_view name) {
  auto database = databases_.find(db);
  if (database == databases_.end()) {
    return nullptr;
  }
  auto collection = database->second.find(name);
  return collection == database->second.end() ? nullptr : &collection->second;
}

Document Standin::Insert(std::string_view db, const CommandRequest& request) {
  std::string collection_name(StringField(request.body, "insert").value_or(""));
  if (collection_name.empty()) {
    return ErrorReply(kBadValue, "BadValue", "insert needs a collection name");
  }
  bool ordered = !request.body.Find("ordered") || FlagField(request.body, "ordered");
  Collection& collection = databases_[std::string(db)][collection_name];
  int32_t inserted = 0;
  BsonBuilder errors;
  int32_t error_count = 0;
  int32_t index = 0;
  for (const BsonView& statement : Statements(request, "documents")) {
    Document document = NewObjectIdDocument(statement);
    BsonElement id = *View(document).Find("_id");
    bool duplicate = std::any_of(collection.begin(), collection.end(), [&](const Document& d) {
      std::optional<BsonElement> other = View(d).Find("_id");
      return other && Equal(*other, id);
    });
    if (duplicate) {
      errors.StartDocument(std::to_string(error_count++))
          .AppendInt32("index", index)
          .AppendInt32("code", kDuplicateKey)
          .AppendString("errmsg", Cat("E11000 duplicate key error collection: ",
                                      Namespace(db, collection_name), " index: _id_ dup key"))
          .EndDocument();
      if (ordered) {
        break;
      }
    } else {
      collection.push_back(std::move(document));
      ++inserted;
    }
    ++index;
  }
  BsonBuilder reply;
  reply.AppendInt32("n", inserted);
  if (error_count > 0) {
    Document error_array = errors.Finish();
    reply.AppendArray("writeErrors", View(error_array));
  }
  return reply.AppendDouble("ok", 1.0).Finish();
}

Document Standin::CursorReply(std::string ns, std::vector<Document> documents, int64_t batch_size,
                              bool single_batch) {
  int64_t limit = batch_size < 0 ? kDefaultFirstBatch : batch_size;
  BsonBuilder writer;
  writer.StartDocument("cursor").StartArray("firstBatch");
  size_t next = 0;
  size_t bytes = 0;
  while (next < documents.size() && static_cast<int64_t>(next) < limit && bytes < kMaxBatchBytes) {
    bytes += documents[next].size();
    writer.AppendDocument(writer.NextArrayKey(), View(documents[next]));
    ++next;
  }
  writer.EndArray();
  int64_t id = 0;
  if (!single_batch && next < documents.size()) {
    id = next_cursor_id_++;
    cursors_[id] = Cursor{ns, std::move(documents), next};
  }
  return writer.AppendInt64("id", id)
      .AppendString("ns", ns)
      .EndDocument()
      .AppendDouble("ok", 1.0)
      .Finish();
}

Document Standin::Find(std::string_view db, const BsonView& body) {
  std::string collection_name(StringField(body, "find").value_or(""));
  std::string error;
  std::vector<Document> matched;
  BsonView filter = DocumentField(body, "filter");
  if (const Collection* collection = FindCollection(db, collection_name)) {
    for (const Document& document : *collection) {
      if (Matches(View(document), filter, &error)) {
        matched.push_back(document);
      }
      if (!error.empty()) {
        return ErrorReply(kBadValue, "BadValue", error);
      }
    }
  }
  if (!SortDocuments(matched, DocumentField(body, "sort"), &error)) {
    return ErrorReply(kBadValue, "BadValue", error);
  }
  int64_t skip = std::max<int64_t>(0, IntField(body, "skip", 0));
  matched.erase(matched.begin(), matched.begin() + std::min<size_t>(skip, matched.size()));
  int64_t limit = IntField(body, "limit", 0);
  bool single_batch = FlagField(body, "singleBatch");
  if (limit < 0) {  // a negative limit is the legacy spelling of "one batch of -limit"
    limit = -limit;
    single_batch = true;
  }
  if (limit > 0 && static_cast<size_t>(limit) < matched.size()) {
    matched.resize(limit);
  }
  return CursorReply(Namespace(db, collection_name), std::move(matched),
                     IntField(body, "batchSize", -1), single_batch);
}

Document Standin::GetMore(std::string_view db, const BsonView& body) {
  int64_t id = IntField(body, "getMore", 0);
  auto it = cursors_.find(id);
  if (it == cursors_.end()) {
    return ErrorReply(kCursorNotFound, "CursorNotFound", Cat("cursor id ", id, " not found"));
  }
  Cursor& cursor = it->second;
  int64_t batch_size = IntField(body, "batchSize", 0);
  BsonBuilder writer;
  writer.StartDocument("cursor").StartArray("nextBatch");
  size_t bytes = 0;
  int64_t count = 0;
  while (cursor.next < cursor.documents.size() && (batch_size <= 0 || count < batch_size) &&
         bytes < kMaxBatchBytes) {
    bytes += cursor.documents[cursor.next].size();
    writer.AppendDocument(writer.NextArrayKey(), View(cursor.documents[cursor.next]));
    ++cursor.next;
    ++count;
  }
  writer.EndArray();
  std::string ns = cursor.ns;
  if (cursor.next >= cursor.documents.size()) {
    cursors_.erase(it);
    id = 0;
  }
  return writer.AppendInt64("id", id)
      .AppendString("ns", ns)
      .EndDocument()
      .AppendDouble("ok", 1.0)
      .Finish();
}

Document Standin::KillCursors(const BsonView& body) {
  BsonBuilder killed;
  BsonBuilder not_found;
  std::optional<BsonElement> ids = body.Find("cursors");
  if (ids && ids->type() == BsonType::kArray) {
    for (const BsonElement& id : Members(*ids)) {
      int64_t value = id.AsInt64().value_or(0);
      BsonBuilder& target = cursors_.erase(value) ? killed : not_found;
      target.AppendInt64(target.NextArrayKey(), value);
    }
  }
  Document killed_array = killed.Finish();
  Document not_found_array = not_found.Finish();
  return BsonBuilder()
      .AppendArray("cursorsKilled", View(killed_array))
      .AppendArray("cursorsNotFound", View(not_found_array))
      .StartArray("cursorsAlive")
      .EndArray()
      .StartArray("cursorsUnknown")
      .EndArray()
      .AppendDouble("ok", 1.0)
      .Finish();
}

Document Standin::Delete(std::string_view db, const CommandRequest& request) {
  std::string collection_name(StringField(request.body, "delete").value_or(""));
  Collection* collection = FindCollection(db, collection_name);
  int32_t deleted = 0;
  std::string error;
  for (const BsonView& statement : Statements(request, "deletes")) {
    if (collection == nullptr) {
      break;
    }
    BsonView query = DocumentField(statement, "q");
    int64_t limit = IntField(statement, "limit", 0);
    for (auto it = collection->begin(); it != collection->end();) {
      if (Matches(View(*it), query, &error)) {
        it = collection->erase(it);
        ++deleted;
        if (limit == 1) {
          break;
        }
      } else {
        if (!error.empty()) {
          return ErrorReply(kBadValue, "BadValue", error);
        }
        ++it;
      }
    }
  }
  return BsonBuilder().AppendInt32("n", deleted).AppendDouble("ok", 1.0).Finish();
}

Document Standin::Update(std::string_view db, const CommandRequest& request) {
  std::string collection_name(StringField(request.body, "update").value_or(""));
  Collection& collection = databases_[std::string(db)][collection_name];
  int32_t matched = 0;
  int32_t modified = 0;
  BsonBuilder upserted;
  int32_t upserted_count = 0;
  int32_t index = 0;
  for (const BsonView& statement : Statements(request, "updates")) {
    BsonView query = DocumentField(statement, "q");
    std::optional<BsonElement> u = statement.Find("u");
    if (!u || u->type() != BsonType::kDocument) {
      return ErrorReply(kFailedToParse, "FailedToParse",
                        "the stand-in mongod takes update documents, not pipelines");
    }
    BsonView update = *u->AsDocument();
    bool multi = FlagField(statement, "multi");
    std::string error;
    int code = kBadValue;
    bool any = false;
    for (Document& document : collection) {
      if (!Matches(View(document), query, &error)) {
        if (!error.empty()) {
          return ErrorReply(kBadValue, "BadValue", error);
        }
        continue;
      }
      any = true;
      ++matched;
      std::optional<Document> changed =
          ApplyUpdate(View(document), update, /*inserting=*/false, &error, &code);
      if (!changed) {
        return ErrorReply(code, code == kImmutableField ? "ImmutableField" : "BadValue", error);
      }
      if (*changed != document) {
        document = std::move(*changed);
        ++modified;
      }
      if (!multi) {
        break;
      }
    }
    if (!any && FlagField(statement, "upsert")) {
      // The new document starts from the query's equality fields, as in MongoDB.
      BsonBuilder base;
      for (const BsonElement& field : query) {
        if (!StartsWith(field.key(), "$") && !IsOperatorDocument(field)) {
          base.AppendElement(field);
        }
      }
      Document base_document = base.Finish();
      std::optional<Document> changed =
          ApplyUpdate(View(base_document), update, /*inserting=*/true, &error, &code);
      if (!changed) {
        return ErrorReply(code, "BadValue", error);
      }
      Document inserted = NewObjectIdDocument(View(*changed));
      upserted.StartDocument(upserted.NextArrayKey())
          .AppendInt32("index", index)
          .AppendElement(*View(inserted).Find("_id"))
          .EndDocument();
      ++upserted_count;
      collection.push_back(std::move(inserted));
    }
    ++index;
  }
  BsonBuilder reply;
  reply.AppendInt32("n", matched + upserted_count).AppendInt32("nModified", modified);
  if (upserted_count > 0) {
    Document upserted_array = upserted.Finish();
    reply.AppendArray("upserted", View(upserted_array));
  }
  return reply.AppendDouble("ok", 1.0).Finish();
}

Document Standin::Count(std::string_view db, const BsonView& body) {
  std::string collection_name(StringField(body, "count").value_or(""));
  int64_t n = 0;
  std::string error;
  if (const Collection* collection = FindCollection(db, collection_name)) {
    for (const Document& document : *collection) {
      n += Matches(View(document), DocumentField(body, "query"), &error) ? 1 : 0;
      if (!error.empty()) {
        return ErrorReply(kBadValue, "BadValue", error);
      }
    }
  }
  n = std::max<int64_t>(0, n - std::max<int64_t>(0, IntField(body, "skip", 0)));
  if (int64_t limit = IntField(body, "limit", 0); limit > 0) {
    n = std::min(n, limit);
  }
  return BsonBuilder().AppendInt64("n", n).AppendDouble("ok", 1.0).Finish();
}

Document Standin::Aggregate(std::string_view db, const BsonView& body) {
  std::optional<BsonElement> target = body.Find("aggregate");
  std::string collection_name(target ? target->AsString().value_or("") : "");
  std::vector<Document> documents;
  if (const Collection* collection = FindCollection(db, collection_name)) {
    documents = *collection;
  }
  std::optional<BsonElement> pipeline = body.Find("pipeline");
  if (!pipeline || pipeline->type() != BsonType::kArray) {
    return ErrorReply(kFailedToParse, "FailedToParse", "aggregate needs a pipeline array");
  }
  std::string error;
  for (const BsonElement& stage_element : Members(*pipeline)) {
    std::optional<BsonView> stage = stage_element.AsDocument();
    std::optional<BsonElement> spec = stage ? stage->First() : std::nullopt;
    if (!spec) {
      return ErrorReply(kFailedToParse, "FailedToParse", "empty pipeline stage");
    }
    std::string_view name = spec->key();
    if (name == "$match") {
      std::vector<Document> kept;
      for (Document& document : documents) {
        if (Matches(View(document), spec->AsDocument().value_or(BsonView()), &error)) {
          kept.push_back(std::move(document));
        }
        if (!error.empty()) {
          return ErrorReply(kBadValue, "BadValue", error);
        }
      }
      documents = std::move(kept);
    } else if (name == "$skip") {
      size_t skip =
          std::min<size_t>(std::max<int64_t>(0, spec->AsInt64().value_or(0)), documents.size());
      documents.erase(documents.begin(), documents.begin() + skip);
    } else if (name == "$limit") {
      size_t limit = std::max<int64_t>(0, spec->AsInt64().value_or(0));
      if (limit < documents.size()) {
        documents.resize(limit);
      }
    } else if (name == "$sort") {
      if (!SortDocuments(documents, spec->AsDocument().value_or(BsonView()), &error)) {
        return ErrorReply(kBadValue, "BadValue", error);
      }
    } else if (name == "$count") {
      std::string field(spec->AsString().value_or("count"));
      int64_t n = static_cast<int64_t>(documents.size());
      documents.clear();
      if (n > 0) {
        documents.push_back(BsonBuilder().AppendInt32(field, static_cast<int32_t>(n)).Finish());
      }
    } else if (name == "$group") {
      // Only the grouping drivers use for countDocuments: {_id: <constant>, n: {$sum: k}}.
      BsonView group = spec->AsDocument().value_or(BsonView());
      BsonBuilder result;
      for (const BsonElement& field : group) {
        if (field.key() == "_id") {
          if (field.AsString() && StartsWith(*field.AsString(), "$")) {
            return ErrorReply(kBadValue, "BadValue",
                              "the stand-in mongod groups by a constant _id only");
          }
          result.AppendElement(field);
          continue;
        }
        std::optional<BsonView> accumulator = field.AsDocument();
        std::optional<BsonElement> sum = accumulator ? accumulator->Find("$sum") : std::nullopt;
        if (!sum || !sum->IsNumber()) {
          return ErrorReply(kBadValue, "BadValue",
                            "the stand-in mongod groups with {$sum: <number>} only");
        }
        result.AppendInt64(field.key(),
                           static_cast<int64_t>(documents.size()) * sum->AsInt64().value_or(1));
      }
      bool empty = documents.empty();
      documents.clear();
      if (!empty) {
        documents.push_back(result.Finish());
      }
    } else {
      return ErrorReply(kUnrecognizedStage, "Location40324",
                        Cat("Unrecognized pipeline stage name: '", name, "'"));
    }
  }
  std::string ns =
      collection_name.empty() ? Cat(db, ".$cmd.aggregate") : Namespace(db, collection_name);
  return CursorReply(ns, std::move(documents),
                     IntField(DocumentField(body, "cursor"), "batchSize", -1), false);
}

Document Standin::ListDatabases() {
  BsonBuilder writer;
  writer.StartArray("databases");
  for (const auto& [name, database] : databases_) {
    if (database.empty()) {
      continue;
    }
    writer.StartDocument(writer.NextArrayKey())
        .AppendString("name", name)
        .AppendInt64("sizeOnDisk", 0)
        .AppendBool("empty", false)
        .EndDocument();
  }
  return writer.EndArray()
      .AppendInt64("totalSize", 0)
      .AppendInt64("totalSizeMb", 0)
      .AppendDouble("ok", 1.0)
      .Finish();
}

Document Standin::ListCollections(std::string_view db, const BsonView& body) {
  std::vector<Document> infos;
  std::string error;
  if (auto database = databases_.find(db); database != databases_.end()) {
    for (const auto& [name, collection] : database->second) {
      Document info = BsonBuilder()
                          .AppendString("name", name)
                          .AppendString("type", "collection")
                          .StartDocument("options")
                          .EndDocument()
                          .StartDocument("info")
                          .AppendBool("readOnly", false)
                          .EndDocument()
                          .Finish();
      if (Matches(View(info), DocumentField(body, "filter"), &error)) {
        infos.push_back(std::move(info));
      }
      if (!error.empty()) {
        return ErrorReply(kBadValue, "BadValue", error);
      }
    }
  }
  return CursorReply(Cat(db, ".$cmd.listCollections"), std::move(infos), -1, true);
}

Document Standin::ListIndexes(std::string_view db, const BsonView& body) {
  std::string collection_name(StringField(body, "listIndexes").value_or(""));
  if (FindCollection(db, collection_name) == nullptr) {
    return ErrorReply(kNamespaceNotFound, "NamespaceNotFound",
                      Cat("ns does not exist: ", Namespace(db, collection_name)));
  }
  std::vector<Document> indexes;
  indexes.push_back(BsonBuilder()
                        .AppendInt32("v", 2)
                        .StartDocument("key")
                        .AppendInt32("_id", 1)
                        .EndDocument()
                        .AppendString("name", "_id_")
                        .Finish());
  return CursorReply(Namespace(db, collection_name), std::move(indexes), -1, true);
}

Document Standin::Create(std::string_view db, const BsonView& body) {
  std::string collection_name(StringField(body, "create").value_or(""));
  Database& database = databases_[std::string(db)];
  if (database.contains(collection_name)) {
    return ErrorReply(kNamespaceExists, "NamespaceExists",
                      Cat("Collection ", Namespace(db, collection_name), " already exists."));
  }
  database[collection_name];
  return OkReply();
}

Document Standin::Drop(std::string_view db, const BsonView& body) {
  std::string collection_name(StringField(body, "drop").value_or(""));
  auto database = databases_.find(db);
  if (database == databases_.end() || !database->second.erase(collection_name)) {
    return ErrorReply(kNamespaceNotFound, "NamespaceNotFound", "ns not found");
  }
  return BsonBuilder()
      .AppendString("ns", Namespace(db, collection_name))
      .AppendInt32("nIndexesWas", 1)
      .AppendDouble("ok", 1.0)
      .Finish();
}

}  // namespace sidecar::support
