// mongod_standin: a stand-in for mongod, for tests, the quickstart and benchmarks.
//
// There is no mongod package for the platform tls-sidecar is built and tested on, yet the
// end-to-end tests must run real clients (pymongo, the Node.js driver, mongosh) through the
// sidecar to a server that speaks MongoDB's wire protocol. This program is that server: a
// single-threaded libuv loop that answers OP_MSG and legacy OP_QUERY commands from
// in-memory collections (Standin, in standin.h), built on the project's own protocol/
// library. It implements what those clients need to connect and do CRUD, and says so when
// asked for anything else (CommandNotFound, or a BadValue naming the unsupported part); it
// persists nothing and has no authentication.
//
// With --echo it is instead a byte-for-byte echo server with backpressure and half-close
// (it echoes until the client's FIN, then sends its own), for the byte-level tests.
//
//   mongod_standin [--bind 127.0.0.1] [--port 27017 | --port 0] [--replSet NAME] [--echo]
//                  [--verbose]
//
// It prints "listening on HOST:PORT" on stdout once it accepts connections (with --port 0 the
// port is the one the kernel picked); requests are logged on stderr with --verbose.
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/numbers.h"
#include "protocol/bson.h"
#include "protocol/wire.h"
#include "tests/support/standin.h"

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
  bool echo = false;
  bool verbose = false;
};

class Connection;

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
  int64_t next_connection_id = 1;
  int32_t next_request_id = 1;
  bool stopping = false;
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
    while (!closing_) {
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
      Document reply = RunLogged(request, "OP_MSG");
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
};

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
  std::set<Connection*> open = server->connections;
  for (Connection* connection : open) {
    connection->Close();
  }
}

[[noreturn]] void Usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: mongod_standin [--bind ADDR] [--port N] [--replSet NAME] [--echo] "
               "[--verbose]\n"
               "  A wire-protocol stand-in for mongod, for tests: in-memory CRUD for pymongo,\n"
               "  the Node.js driver and mongosh. --port 0 picks a free port. --echo echoes\n"
               "  bytes instead of answering commands.\n");
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
  standin_options.advertised_address = Cat(host, ":", port);
  server.standin = std::make_unique<Standin>(std::move(standin_options));

  for (uv_signal_t* signal : {&server.sigterm, &server.sigint}) {
    uv_signal_init(server.loop, signal);
    signal->data = &server;
  }
  auto on_signal = [](uv_signal_t* signal, int) { Stop(static_cast<Server*>(signal->data)); };
  uv_signal_start(&server.sigterm, on_signal, SIGTERM);
  uv_signal_start(&server.sigint, on_signal, SIGINT);

  std::printf("listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  uv_run(server.loop, UV_RUN_DEFAULT);
  uv_loop_close(server.loop);
  return 0;
}

}  // namespace
}  // namespace sidecar::support

int main(int argc, char** argv) { return sidecar::support::Main(argc, argv); }
