// mongod_standin: a stand-in for mongod, for tests, the quickstart and benchmarks.
//
// There is no mongod package for the platform tls-sidecar is built and tested on, yet the
// end-to-end tests must run real clients (pymongo, the Node.js driver, mongosh) through the
// sidecar to a server that speaks MongoDB's wire protocol. This program is that server: a
// single-threaded libuv loop that answers OP_MSG and legacy OP_QUERY commands from
// in-memory collections (Standin, in standin.h), built on the project's own protocol/
// library. It implements what those clients need to connect and do CRUD, and says so when
// asked for anything else (CommandNotFound, or a BadValue naming the unsupported part); it
// persists nothing. Without --auth it has no authentication; with --auth USER:PASSWORD
// clients must authenticate as USER of `admin` with SCRAM-SHA-256 (scram.h), the mechanism
// and the exchanges (saslStart/saslContinue, hello's speculativeAuthenticate) of mongod 4.4+.
// Like mongod with enableTestCommands, it answers {sleep: 1, millis: N} N ms later, for tests
// that need a request in flight.
//
// With --echo it is instead a byte-for-byte echo server with backpressure and half-close
// (it echoes until the client's FIN, then sends its own), for the byte-level tests.
//
// With --peer HOST:PORT (repeatable; HOST an IPv4 or IPv6 literal) it also plays a replica
// set member's outgoing traffic, so that tests have inter-node traffic to carry: it keeps
// one "replication" connection to each peer (reconnecting every 100 ms while it cannot),
// sends a hello every 100 ms and inserts a stream of documents into the peer's `repl`
// collection, and counts what fails. Each new connection begins with a hello (with
// internalClient, as mongod's handshake). A request lost because the connection closed under
// it is retried once on the next connection, as mongod's heartbeats are; it is a failure only
// when the retry fails too. The counts are printed on stdout as one JSON line on SIGUSR1
// and at exit (every link together, and each under "peers" by its --peer name), and
// answered by the `replStats` command (every link together). With --replSet, --advertise
// HOST:PORT is the member's name in hello, e.g. the address of the sidecar in front of it.
//
//   mongod_standin [--bind 127.0.0.1] [--port 27017 | --port 0] [--replSet NAME] [--echo]
//                  [--advertise HOST:PORT] [--peer HOST:PORT]... [--auth USER:PASSWORD]
//                  [--verbose]
//
// It prints "listening on HOST:PORT" on stdout once it accepts connections (with --port 0 the
// port is the one the kernel picked); requests are logged on stderr with --verbose.
#include <uv.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "protocol/bson.h"
#include "protocol/wire.h"
#include "tests/support/standin.h"
#include "tests/support/bson_builder.h"

namespace sidecar::support {
namespace {

namespace protocol = ::sidecar::protocol;

// Echo mode stops reading a client once this much is queued for writing to it, and resumes
// below kEchoLowWater, so memory stays bounded whatever the client does.
constexpr size_t kEchoHighWater = 4 << 20;
constexpr size_t kEchoLowWater = 1 << 20;
constexpr size_t kReadBufferSize = 256 << 10;

struct Options {
  std::string bind = "127.0.0.1";
  int port = 27017;
  std::string repl_set;
  std::string advertise;  // --advertise HOST:PORT: the member's name in hello (default: bind)
  bool echo = false;
  bool verbose = false;
  std::vector<std::string> peers;  // --peer HOST:PORT
  std::string auth_user;           // --auth USER:PASSWORD
  std::string auth_password;
};

class Connection;
class PeerLink;

// ReplStats are the counts of the replication traffic to every peer together.
struct ReplStats {
  int64_t connects = 0;          // replication connections established
  int64_t reconnects = 0;        // established ones that closed and were made again
  int64_t hellos_ok = 0;         // heartbeats answered ok:1
  int64_t inserts_ok = 0;        // documents the peer acknowledged
  int64_t connect_failures = 0;  // attempts to connect that failed
  int64_t errors = 0;            // replies with ok:0
  int64_t timeouts = 0;          // requests unanswered for kPeerRequestTimeoutMs
  int64_t lost = 0;              // requests lost with their connection, and lost again on retry
  int64_t retried = 0;           // requests lost with their connection and sent again

  int64_t failures() const { return connect_failures + errors + timeouts + lost; }
  std::string Json() const {
    return Cat("{\"connects\":", connects, ",\"reconnects\":", reconnects,
               ",\"hellosOk\":", hellos_ok, ",\"insertsOk\":", inserts_ok,
               ",\"connectFailures\":", connect_failures, ",\"errors\":", errors,
               ",\"timeouts\":", timeouts, ",\"lost\":", lost, ",\"retried\":", retried,
               ",\"failures\":", failures(), "}");
  }
};

// Server owns the listener, the signal handlers and every open connection; all of it runs on
// the one default loop.
struct Server {
  uv_loop_t* loop = nullptr;
  Options options;
  std::unique_ptr<Standin> standin;
  uv_tcp_t listener;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  std::set<Connection*> connections;
  std::vector<std::unique_ptr<PeerLink>> peers;
  ReplStats repl;
  uv_signal_t sigusr1;
  int64_t next_connection_id = 1;
  int32_t next_request_id = 1;
  bool stopping = false;
  std::string standin_address;  // "host:port" it listens on, named in replicated documents
};

// Connection is one accepted client. It is heap-allocated, owns its uv_tcp_t and frees itself
// in the close callback, which libuv runs after every pending write's callback.
class Connection {
 public:
  Connection(Server* server) : server_(server), read_buffer_(kReadBufferSize) {
    tcp_.data = this;
    id_ = server->next_connection_id++;
  }

  uv_tcp_t* tcp() { return &tcp_; }

  void Start() {
    sockaddr_storage address;
    int length = sizeof(address);
    if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      char host[64] = {};
      if (address.ss_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&address);
        uv_ip4_name(in, host, sizeof(host));
        peer_ = Cat(host, ":", ntohs(in->sin_port));
      } else {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
        uv_ip6_name(in6, host, sizeof(host));
        peer_ = Cat("[", host, "]:", ntohs(in6->sin6_port));
      }
    }
    uv_tcp_nodelay(&tcp_, 1);
    ResumeReading();
  }

  // Close begins closing; the object is freed by the close callback. Idempotent.
  void Close() {
    if (closing_) {
      return;
    }
    closing_ = true;
    server_->connections.erase(this);
    if (server_->standin) {
      server_->standin->ForgetConnection(id_);
    }
    if (sleep_timer_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(sleep_timer_),
               [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
      sleep_timer_ = nullptr;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
             [](uv_handle_t* handle) { delete static_cast<Connection*>(handle->data); });
  }

 private:
  struct WriteRequest {
    uv_write_t request;
    std::vector<uint8_t> bytes;
    Connection* connection;
  };

  void ResumeReading() {
    if (reading_ || closing_ || eof_) {
      return;
    }
    int rc = uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp_),
        [](uv_handle_t* handle, size_t, uv_buf_t* buf) {
          auto* self = static_cast<Connection*>(handle->data);
          *buf = uv_buf_init(reinterpret_cast<char*>(self->read_buffer_.data()),
                             self->read_buffer_.size());
        },
        [](uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
          static_cast<Connection*>(stream->data)->OnRead(nread);
        });
    if (rc != 0) {
      Close();
      return;
    }
    reading_ = true;
  }

  void PauseReading() {
    if (reading_) {
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
      reading_ = false;
    }
  }

  size_t QueuedBytes() {
    return uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&tcp_));
  }

  void OnRead(ssize_t nread) {
    if (nread == UV_EOF) {
      eof_ = true;
      PauseReading();
      if (server_->options.echo) {
        ShutdownThenClose();
      } else {
        Close();
      }
      return;
    }
    if (nread < 0) {
      Close();
      return;
    }
    if (nread == 0) {
      return;
    }
    if (server_->options.echo) {
      Write(std::vector<uint8_t>(read_buffer_.begin(), read_buffer_.begin() + nread));
      if (QueuedBytes() > kEchoHighWater) {
        PauseReading();
      }
      return;
    }
    input_.insert(input_.end(), read_buffer_.begin(), read_buffer_.begin() + nread);
    ProcessMessages();
  }

  // ShutdownThenClose sends our FIN after everything queued, then closes: the echo of a
  // half-closed client ends only once all of it has been written back.
  void ShutdownThenClose() {
    shutdown_.data = this;
    int rc = uv_shutdown(
        &shutdown_, reinterpret_cast<uv_stream_t*>(&tcp_),
        [](uv_shutdown_t* request, int) { static_cast<Connection*>(request->data)->Close(); });
    if (rc != 0) {
      Close();
    }
  }

  void Write(std::vector<uint8_t> bytes) {
    if (closing_) {
      return;
    }
    auto* write = new WriteRequest{{}, std::move(bytes), this};
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()), write->bytes.size());
    int rc = uv_write(&write->request, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1,
                      [](uv_write_t* request, int status) {
                        auto* write = reinterpret_cast<WriteRequest*>(request);
                        Connection* self = write->connection;
                        delete write;
                        if (status == UV_ECANCELED) {
                          return;  // closing: the connection may not be touched any more
                        }
                        if (status < 0) {
                          self->Close();
                          return;
                        }
                        if (self->server_->options.echo && self->QueuedBytes() < kEchoLowWater) {
                          self->ResumeReading();
                        }
                      });
    if (rc != 0) {
      delete write;
      Close();
    }
  }

  void ProcessMessages() {
    size_t offset = 0;
    while (!closing_ && sleep_timer_ == nullptr) {
      absl::Span<const uint8_t> rest = absl::MakeConstSpan(input_).subspan(offset);
      protocol::Frame frame = protocol::FrameMessage(rest);
      if (frame.status == protocol::ParseStatus::kNeedMore) {
        break;
      }
      if (frame.status == protocol::ParseStatus::kError) {
        Log(Cat("bad framing: ", frame.error));
        Close();
        return;
      }
      HandleMessage(rest.first(frame.size), frame.header);
      offset += frame.size;
    }
    if (!closing_) {
      input_.erase(input_.begin(), input_.begin() + offset);
    }
  }

  void HandleMessage(absl::Span<const uint8_t> message, const protocol::MsgHeader& header) {
    CommandRequest request;
    request.connection_id = id_;
    request.peer = peer_;
    if (header.op_code == static_cast<int32_t>(protocol::OpCode::kMsg)) {
      absl::StatusOr<protocol::OpMsg> msg = protocol::ParseOpMsg(message);
      absl::StatusOr<protocol::BsonView> body =
          msg.ok() ? protocol::BsonView::Parse(msg->body)
                   : absl::StatusOr<protocol::BsonView>(msg.status());
      if (!body.ok()) {
        Log(Cat("bad OP_MSG: ", body.status().message()));
        Close();
        return;
      }
      request.body = *body;
      for (const protocol::DocumentSequence& sequence : msg->sequences) {
        std::vector<protocol::BsonView> documents;
        for (absl::Span<const uint8_t> bytes : sequence.documents) {
          absl::StatusOr<protocol::BsonView> document = protocol::BsonView::Parse(bytes);
          if (document.ok()) {
            documents.push_back(*document);
          }
        }
        request.sequences.emplace_back(sequence.identifier, std::move(documents));
      }
      if (Standin::CommandName(request.body) == "sleep" &&
          (msg->flag_bits & protocol::kMsgMoreToCome) == 0) {
        SleepThenReply(request.body, header.request_id);
        return;
      }
      Document reply = Standin::CommandName(request.body) == "replStats"
                           ? ReplStatsReply()
                           : RunLogged(request, "OP_MSG");
      if ((msg->flag_bits & protocol::kMsgMoreToCome) == 0) {
        Write(protocol::BuildOpMsg(server_->next_request_id++, header.request_id, reply));
      }
      return;
    }
    if (header.op_code == static_cast<int32_t>(protocol::OpCode::kQuery)) {
      absl::StatusOr<protocol::OpQuery> query = protocol::ParseOpQuery(message);
      absl::StatusOr<protocol::BsonView> document =
          query.ok() ? protocol::BsonView::Parse(query->query)
                     : absl::StatusOr<protocol::BsonView>(query.status());
      if (!document.ok()) {
        Log(Cat("bad OP_QUERY: ", document.status().message()));
        Close();
        return;
      }
      std::string_view ns = query->full_collection_name;
      size_t dot = ns.find('.');
      if (dot == std::string_view::npos || ns.substr(dot + 1) != "$cmd") {
        // Legacy queries on collections were removed in MongoDB 5.1/6.0; answer as it does.
        constexpr int32_t kQueryFailure = 2;
        Document error = ErrorReply(5739101, "Location5739101",
                                    "OP_QUERY is no longer supported except for commands");
        Write(protocol::BuildOpReply(server_->next_request_id++, header.request_id, error,
                                     kQueryFailure));
        return;
      }
      request.legacy = true;
      request.legacy_db = std::string(ns.substr(0, dot));
      request.body = *document;
      // Old drivers wrap the command with read preferences: {$query: {...}, $readPreference}.
      for (std::string_view wrapper : {"$query", "query"}) {
        std::optional<protocol::BsonElement> inner = request.body.Find(wrapper);
        if (inner && inner->type() == protocol::BsonType::kDocument &&
            request.body.First()->key() == wrapper) {
          request.body = *inner->AsDocument();
          break;
        }
      }
      Document reply = RunLogged(request, "OP_QUERY");
      Write(protocol::BuildOpReply(server_->next_request_id++, header.request_id, reply));
      return;
    }
    Log(Cat("unsupported opcode ", protocol::OpCodeName(header.op_code), " (", header.op_code,
            "): closing"));
    Close();
  }

  // SleepThenReply answers mongod's test command {sleep: 1, millis: N} N ms later (a slow
  // request, for the shutdown tests). As mongod answers one request at a time per
  // connection, nothing more is read from this connection until the reply is written.
  void SleepThenReply(const protocol::BsonView& body, int32_t request_id) {
    std::optional<protocol::BsonElement> millis = body.Find("millis");
    int64_t ms = millis ? millis->AsInt64().value_or(-1) : 1000;  // mongod: 1 s by default
    if (ms < 0) {
      Write(protocol::BuildOpMsg(server_->next_request_id++, request_id,
                                 ErrorReply(2, "BadValue", "sleep: millis must be a number")));
      return;
    }
    Log(Cat("OP_MSG sleep ", ms, " ms"));
    sleep_timer_ = new uv_timer_t;
    uv_timer_init(server_->loop, sleep_timer_);
    sleep_timer_->data = this;
    sleep_request_id_ = request_id;
    uv_timer_start(
        sleep_timer_,
        [](uv_timer_t* timer) {
          auto* self = static_cast<Connection*>(timer->data);
          uv_close(reinterpret_cast<uv_handle_t*>(timer),
                   [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
          self->sleep_timer_ = nullptr;
          self->Write(protocol::BuildOpMsg(self->server_->next_request_id++,
                                           self->sleep_request_id_,
                                           BsonBuilder().AppendDouble("ok", 1).Finish()));
          self->ProcessMessages();  // what arrived meanwhile
        },
        static_cast<uint64_t>(ms), 0);
  }

  Document ReplStatsReply() {
    const ReplStats& r = server_->repl;
    BsonBuilder writer;
    writer.AppendInt64("peers", static_cast<int64_t>(server_->peers.size()))
        .AppendInt64("connects", r.connects)
        .AppendInt64("reconnects", r.reconnects)
        .AppendInt64("hellosOk", r.hellos_ok)
        .AppendInt64("insertsOk", r.inserts_ok)
        .AppendInt64("connectFailures", r.connect_failures)
        .AppendInt64("errors", r.errors)
        .AppendInt64("timeouts", r.timeouts)
        .AppendInt64("lost", r.lost)
        .AppendInt64("retried", r.retried)
        .AppendInt64("failures", r.failures())
        .AppendDouble("ok", 1);
    return writer.Finish();
  }

  Document RunLogged(const CommandRequest& request, std::string_view opcode) {
    Document reply = server_->standin->Run(request);
    if (server_->options.verbose) {
      absl::StatusOr<protocol::BsonView> view = protocol::BsonView::Parse(reply);
      std::optional<protocol::BsonElement> ok = view.ok() ? view->Find("ok") : std::nullopt;
      std::optional<protocol::BsonElement> errmsg = view.ok() ? view->Find("errmsg") : std::nullopt;
      Log(Cat(opcode, " ", Standin::CommandName(request.body), " -> ok ",
              ok ? ok->AsDouble().value_or(0) : 0, " ",
              errmsg ? errmsg->AsString().value_or("") : ""));
    }
    return reply;
  }

  void Log(std::string_view line) {
    if (server_->options.verbose) {
      std::fprintf(stderr, "[mongod_standin] conn%lld %s: %.*s\n", static_cast<long long>(id_),
                   peer_.c_str(), static_cast<int>(line.size()), line.data());
    }
  }

  Server* server_;
  uv_tcp_t tcp_;
  uv_shutdown_t shutdown_;
  std::vector<uint8_t> read_buffer_;
  std::vector<uint8_t> input_;  // received bytes not yet framed into a whole message
  int64_t id_;
  std::string peer_;
  bool reading_ = false;
  bool eof_ = false;
  bool closing_ = false;
  uv_timer_t* sleep_timer_ = nullptr;  // a sleep command's reply is due (SleepThenReply)
  int32_t sleep_request_id_ = 0;
};

// --- replication traffic to peers (--peer) ------------------------------------------------

constexpr uint64_t kPeerIntervalMs = 100;
constexpr uint64_t kPeerRequestTimeoutMs = 3000;
// More unanswered requests than this on one connection: wait instead of piling on.
constexpr size_t kPeerMaxPending = 8;

// PeerLink is the replication connection to one peer: a timer that every kPeerIntervalMs
// connects when there is no connection, or sends a hello and an insert when there is. The
// socket lives in a heap PeerSocket freed by its close callback; a closed socket's late
// callbacks find `link` null and do nothing.
class PeerLink {
 public:
  PeerLink(Server* server, std::string name, const sockaddr_storage& address)
      : server_(server), name_(std::move(name)), address_(address) {}

  void Start() {
    uv_timer_init(server_->loop, &timer_);
    timer_.data = this;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<PeerLink*>(t->data)->OnTick(); }, 0,
        kPeerIntervalMs);
  }

  const std::string& name() const { return name_; }
  // stats are this link's counts; Server::repl has those of every link together.
  const ReplStats& stats() const { return stats_; }

  // Stop closes the timer and the connection; requests in flight are not counted.
  void Stop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    pending_.clear();
    retry_.clear();
    CloseSocket();
  }

 private:
  struct PeerSocket {
    uv_tcp_t tcp;
    uv_connect_t connect;
    PeerLink* link;
    bool connected = false;
    bool greeted = false;  // its first request, a hello, is sent
    uint64_t started_ms = 0;
    std::vector<uint8_t> read_buffer = std::vector<uint8_t>(64 << 10);
    std::vector<uint8_t> input;
  };
  struct Request {
    bool hello = false;
    Document body;
    bool retried = false;  // this is its second attempt
    uint64_t sent_ms = 0;
  };
  struct WriteRequest {
    uv_write_t request;
    std::vector<uint8_t> bytes;
    PeerSocket* socket;
  };

  uint64_t Now() const { return uv_now(server_->loop); }

  // Count adds n to one count of this link and of the whole server.
  void Count(int64_t ReplStats::*field, int64_t n = 1) {
    stats_.*field += n;
    server_->repl.*field += n;
  }

  void Log(std::string_view line) {
    if (server_->options.verbose) {
      std::fprintf(stderr, "[mongod_standin] peer %s: %.*s\n", name_.c_str(),
                   static_cast<int>(line.size()), line.data());
    }
  }

  void OnTick() {
    if (socket_ == nullptr) {
      Connect();
      return;
    }
    if (!socket_->connected) {
      if (Now() - socket_->started_ms > kPeerRequestTimeoutMs) {
        Count(&ReplStats::connect_failures);
        Log("connect timed out");
        CloseSocket();
      }
      return;
    }
    for (const auto& [id, request] : pending_) {
      if (Now() - request.sent_ms > kPeerRequestTimeoutMs) {
        Count(&ReplStats::timeouts, static_cast<int64_t>(pending_.size()));
        Log("requests timed out: reconnecting");
        pending_.clear();
        Lost();
        return;
      }
    }
    // As mongod's, every new connection begins with a hello (with internalClient), before
    // the requests to send again: the peer sees a member's handshake first.
    if (!socket_->greeted) {
      socket_->greeted = true;
      Send(Request{true, HelloBody()});
    }
    while (!retry_.empty()) {
      Request request = std::move(retry_.front());
      retry_.pop_front();
      Send(std::move(request));
    }
    if (pending_.size() < kPeerMaxPending) {
      Send(Request{true, HelloBody()});
      Send(Request{false, InsertBody()});
    }
  }

  Document HelloBody() {
    BsonBuilder writer;
    writer.AppendInt32("hello", 1)
        .StartDocument("internalClient")
        .AppendInt32("minWireVersion", 0)
        .AppendInt32("maxWireVersion", 17)
        .EndDocument()
        .AppendString("$db", "admin");
    return writer.Finish();
  }

  Document InsertBody() {
    BsonBuilder writer;
    writer.AppendString("insert", "repl")
        .StartArray("documents")
        .StartDocument("0")
        .AppendString("from", server_->standin_address)
        .AppendString("to", name_)
        .AppendInt64("seq", next_seq_++)
        .EndDocument()
        .EndArray()
        .AppendBool("ordered", true)
        .AppendString("$db", "repl");
    return writer.Finish();
  }

  void Connect() {
    auto* socket = new PeerSocket();
    socket->link = this;
    socket->tcp.data = socket;
    socket->connect.data = socket;
    socket->started_ms = Now();
    uv_tcp_init(server_->loop, &socket->tcp);
    socket_ = socket;
    int rc =
        uv_tcp_connect(&socket->connect, &socket->tcp, reinterpret_cast<const sockaddr*>(&address_),
                       [](uv_connect_t* request, int status) {
                         auto* socket = static_cast<PeerSocket*>(request->data);
                         if (socket->link != nullptr) {
                           socket->link->OnConnected(status);
                         }
                       });
    if (rc != 0) {
      Count(&ReplStats::connect_failures);
      CloseSocket();
    }
  }

  void OnConnected(int status) {
    if (status != 0) {
      Count(&ReplStats::connect_failures);
      Log(Cat("connect failed: ", uv_strerror(status)));
      CloseSocket();
      return;
    }
    socket_->connected = true;
    Count(&ReplStats::connects);
    uv_tcp_nodelay(&socket_->tcp, 1);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&socket_->tcp),
        [](uv_handle_t* handle, size_t, uv_buf_t* buf) {
          auto* socket = static_cast<PeerSocket*>(handle->data);
          *buf = uv_buf_init(reinterpret_cast<char*>(socket->read_buffer.data()),
                             socket->read_buffer.size());
        },
        [](uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
          auto* socket = static_cast<PeerSocket*>(stream->data);
          if (socket->link != nullptr) {
            socket->link->OnRead(nread);
          }
        });
  }

  void Send(Request request) {
    int32_t id = server_->next_request_id++;
    auto* write = new WriteRequest{{}, protocol::BuildOpMsg(id, 0, request.body), socket_};
    request.sent_ms = Now();
    pending_.emplace(id, std::move(request));
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()), write->bytes.size());
    int rc = uv_write(&write->request, reinterpret_cast<uv_stream_t*>(&socket_->tcp), &buf, 1,
                      [](uv_write_t* request, int status) {
                        auto* write = reinterpret_cast<WriteRequest*>(request);
                        PeerSocket* socket = write->socket;
                        delete write;
                        if (status < 0 && status != UV_ECANCELED && socket->link != nullptr) {
                          socket->link->Lost();
                        }
                      });
    if (rc != 0) {
      delete write;
      Lost();
    }
  }

  void OnRead(ssize_t nread) {
    if (nread < 0) {
      Log(Cat("connection closed: ", uv_strerror(static_cast<int>(nread))));
      Lost();
      return;
    }
    PeerSocket* socket = socket_;
    socket->input.insert(socket->input.end(), socket->read_buffer.begin(),
                         socket->read_buffer.begin() + nread);
    size_t offset = 0;
    while (socket_ == socket) {
      absl::Span<const uint8_t> rest = absl::MakeConstSpan(socket->input).subspan(offset);
      protocol::Frame frame = protocol::FrameMessage(rest);
      if (frame.status == protocol::ParseStatus::kNeedMore) {
        break;
      }
      if (frame.status == protocol::ParseStatus::kError) {
        Count(&ReplStats::errors);
        Log(Cat("bad framing from the peer: ", frame.error));
        Lost();
        return;
      }
      OnReply(rest.first(frame.size), frame.header);
      offset += frame.size;
    }
    if (socket_ == socket) {
      socket->input.erase(socket->input.begin(), socket->input.begin() + offset);
    }
  }

  void OnReply(absl::Span<const uint8_t> message, const protocol::MsgHeader& header) {
    auto it = pending_.find(header.response_to);
    if (it == pending_.end()) {
      return;
    }
    Request request = std::move(it->second);
    pending_.erase(it);
    absl::StatusOr<protocol::OpMsg> msg = protocol::ParseOpMsg(message);
    absl::StatusOr<protocol::BsonView> body =
        msg.ok() ? protocol::BsonView::Parse(msg->body)
                 : absl::StatusOr<protocol::BsonView>(msg.status());
    std::optional<protocol::BsonElement> ok = body.ok() ? body->Find("ok") : std::nullopt;
    if (!ok || ok->AsDouble().value_or(0) != 1) {
      Count(&ReplStats::errors);
      Log(Cat(request.hello ? "hello" : "insert", " failed"));
      return;
    }
    Count(request.hello ? &ReplStats::hellos_ok : &ReplStats::inserts_ok);
  }

  // Lost handles a connection that closed or failed: what was in flight is retried once on
  // the next connection (counted lost if it had been retried already).
  void Lost() {
    if (socket_ != nullptr && socket_->connected) {
      Count(&ReplStats::reconnects);
    }
    for (auto& [id, request] : pending_) {
      if (request.retried) {
        Count(&ReplStats::lost);
      } else {
        Count(&ReplStats::retried);
        request.retried = true;
        retry_.push_back(std::move(request));
      }
    }
    pending_.clear();
    CloseSocket();
  }

  void CloseSocket() {
    if (socket_ == nullptr) {
      return;
    }
    socket_->link = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&socket_->tcp),
             [](uv_handle_t* handle) { delete static_cast<PeerSocket*>(handle->data); });
    socket_ = nullptr;
  }

  Server* server_;
  std::string name_;
  sockaddr_storage address_;
  uv_timer_t timer_;
  PeerSocket* socket_ = nullptr;
  std::map<int32_t, Request> pending_;
  std::deque<Request> retry_;
  int64_t next_seq_ = 1;
  ReplStats stats_;
};

// PrintReplStats prints the counts of every link together, and under "peers" those of each
// link by its --peer name: a test can tell which link a failure was on.
void PrintReplStats(Server* server) {
  std::string line = server->repl.Json();
  line.pop_back();  // the closing brace
  line += ",\"peers\":{";
  for (size_t i = 0; i < server->peers.size(); ++i) {
    line += Cat(i == 0 ? "" : ",", "\"", server->peers[i]->name(),
                "\":", server->peers[i]->stats().Json());
  }
  line += "}}";
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void OnConnection(uv_stream_t* listener, int status) {
  auto* server = static_cast<Server*>(listener->data);
  if (status < 0 || server->stopping) {
    return;
  }
  auto* connection = new Connection(server);
  uv_tcp_init(server->loop, connection->tcp());
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(connection->tcp())) != 0) {
    connection->Close();
    return;
  }
  server->connections.insert(connection);
  connection->Start();
}

void Stop(Server* server) {
  if (server->stopping) {
    return;
  }
  server->stopping = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&server->listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->sigterm), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&server->sigusr1), nullptr);
  for (auto& peer : server->peers) {
    peer->Stop();
  }
  std::set<Connection*> open = server->connections;
  for (Connection* connection : open) {
    connection->Close();
  }
}

[[noreturn]] void Usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: mongod_standin [--bind ADDR] [--port N] [--replSet NAME] [--echo] "
               "[--advertise HOST:PORT] [--peer HOST:PORT]... [--auth USER:PASSWORD] "
               "[--verbose]\n"
               "  A wire-protocol stand-in for mongod, for tests: in-memory CRUD for pymongo,\n"
               "  the Node.js driver and mongosh. --port 0 picks a free port. --echo echoes\n"
               "  bytes instead of answering commands. --peer keeps a replication connection\n"
               "  to HOST:PORT (hello every 100 ms, inserts into `repl`) and counts failures:\n"
               "  one JSON line on stdout on SIGUSR1 and at exit, or the replStats command.\n"
               "  --auth requires SCRAM-SHA-256 authentication as USER of admin.\n"
               "  --advertise names the member in hello (hosts, me, primary) with --replSet:\n"
               "  the address clients reach it at, e.g. a sidecar's.\n");
  std::exit(status);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mongod_standin: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--port") {
      std::string_view text = value();
      if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &options.port) ||
          options.port < 0 || options.port > 65535) {
        std::fprintf(stderr, "mongod_standin: --port must be between 0 and 65535\n");
        std::exit(2);
      }
    } else if (arg == "--bind" || arg == "--bind_ip") {
      options.bind = std::string(value());
    } else if (arg == "--replSet") {
      options.repl_set = std::string(value());
    } else if (arg == "--advertise") {
      options.advertise = std::string(value());
    } else if (arg == "--peer") {
      options.peers.push_back(std::string(value()));
    } else if (arg == "--auth") {
      std::string_view text = value();
      size_t colon = text.find(':');
      if (colon == std::string_view::npos || colon == 0) {
        std::fprintf(stderr, "mongod_standin: --auth needs USER:PASSWORD\n");
        std::exit(2);
      }
      options.auth_user = std::string(text.substr(0, colon));
      options.auth_password = std::string(text.substr(colon + 1));
    } else if (arg == "--echo") {
      options.echo = true;
    } else if (arg == "--verbose" || arg == "-v") {
      options.verbose = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage(0);
    } else {
      std::fprintf(stderr, "mongod_standin: unknown option %s\n", argv[i]);
      Usage(2);
    }
  }
  return options;
}

int Main(int argc, char** argv) {
  // A client that vanishes must cost a failed write, not the process.
  std::signal(SIGPIPE, SIG_IGN);
  Server server;
  server.options = ParseOptions(argc, argv);
  server.loop = uv_default_loop();

  sockaddr_storage address = {};
  bool v6 = server.options.bind.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(server.options.bind.c_str(), server.options.port,
                            reinterpret_cast<sockaddr_in6*>(&address))
              : uv_ip4_addr(server.options.bind.c_str(), server.options.port,
                            reinterpret_cast<sockaddr_in*>(&address));
  if (rc != 0) {
    std::fprintf(stderr, "mongod_standin: --bind %s: %s\n", server.options.bind.c_str(),
                 uv_strerror(rc));
    return 2;
  }
  uv_tcp_init(server.loop, &server.listener);
  server.listener.data = &server;
  rc = uv_tcp_bind(&server.listener, reinterpret_cast<sockaddr*>(&address), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server.listener), 1024, OnConnection);
  }
  if (rc != 0) {
    std::fprintf(stderr, "mongod_standin: cannot listen on %s:%d: %s\n",
                 server.options.bind.c_str(), server.options.port, uv_strerror(rc));
    return 1;
  }
  sockaddr_storage bound = {};
  int length = sizeof(bound);
  uv_tcp_getsockname(&server.listener, reinterpret_cast<sockaddr*>(&bound), &length);
  int port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::string host = v6 ? Cat("[", server.options.bind, "]") : server.options.bind;

  StandinOptions standin_options;
  standin_options.repl_set = server.options.repl_set;
  standin_options.auth_user = server.options.auth_user;
  standin_options.auth_password = server.options.auth_password;
  standin_options.advertised_address =
      server.options.advertise.empty() ? Cat(host, ":", port) : server.options.advertise;
  server.standin = std::make_unique<Standin>(std::move(standin_options));

  for (uv_signal_t* signal : {&server.sigterm, &server.sigint}) {
    uv_signal_init(server.loop, signal);
    signal->data = &server;
  }
  auto on_signal = [](uv_signal_t* signal, int) { Stop(static_cast<Server*>(signal->data)); };
  uv_signal_start(&server.sigterm, on_signal, SIGTERM);
  uv_signal_start(&server.sigint, on_signal, SIGINT);

  server.standin_address = Cat(host, ":", port);
  for (const std::string& peer : server.options.peers) {
    sockaddr_storage peer_address = {};
    size_t colon = peer.rfind(':');
    int peer_port = 0;
    std::string peer_host = colon == std::string::npos ? "" : peer.substr(0, colon);
    if (peer_host.size() > 2 && peer_host.front() == '[' && peer_host.back() == ']') {
      peer_host = peer_host.substr(1, peer_host.size() - 2);
    }
    std::string port_text = colon == std::string::npos ? "" : peer.substr(colon + 1);
    bool parsed =
        absl::SimpleAtoi(absl::string_view(port_text.data(), port_text.size()), &peer_port) &&
        peer_port > 0 && peer_port < 65536 &&
        (uv_ip4_addr(peer_host.c_str(), peer_port, reinterpret_cast<sockaddr_in*>(&peer_address)) ==
             0 ||
         uv_ip6_addr(peer_host.c_str(), peer_port,
                     reinterpret_cast<sockaddr_in6*>(&peer_address)) == 0);
    if (!parsed) {
      std::fprintf(stderr, "mongod_standin: --peer %s: expected IP:PORT\n", peer.c_str());
      return 2;
    }
    server.peers.push_back(std::make_unique<PeerLink>(&server, peer, peer_address));
  }
  uv_signal_init(server.loop, &server.sigusr1);
  server.sigusr1.data = &server;
  uv_signal_start(
      &server.sigusr1,
      [](uv_signal_t* signal, int) { PrintReplStats(static_cast<Server*>(signal->data)); },
      SIGUSR1);

  std::printf("listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  for (auto& peer : server.peers) {
    peer->Start();
  }
  uv_run(server.loop, UV_RUN_DEFAULT);
  uv_loop_close(server.loop);
  if (!server.peers.empty()) {
    PrintReplStats(&server);
  }
  return 0;
}

}  // namespace
}  // namespace sidecar::support

int main(int argc, char** argv) { return sidecar::support::Main(argc, argv); }
