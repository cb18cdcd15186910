// The data path driven whole, with real sockets on 127.0.0.1 (see data_path_fixture.h):
// admission and forwarding, TLS, half-close, backpressure, refusals and the end of sniffing.
// Nothing here reaches into Connection: the tests see what a client and mongod see, plus the
// metrics, the client table and Connection::state() through Worker::ForEachConnection.
// Which rows of the transition table each test reaches: connection_transitions_test.cc.
#include "tests/proxy/data_path_fixture.h"

namespace sidecar::proxy::data_path {
namespace {


TEST_F(DataPathTest, PlaintextIsAdmittedAndForwardedBothWays) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  std::string hello = OpMsgHello(1);
  client.pending = hello;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
  EXPECT_EQ(upstream->received, hello);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});

  std::string reply = OpMsgReply(1);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size(); }));
  EXPECT_EQ(client.received, reply);

  // More requests and replies, larger than a chunk, go through intact both ways.
  std::string request = OpMsgCommand(2, 200 * 1024);
  client.pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size() + request.size(); }));
  EXPECT_EQ(upstream->received, hello + request);
  std::string big_reply = OpMsgCommand(0, 300 * 1024);
  upstream->pending = big_reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size() + big_reply.size(); }));
  EXPECT_EQ(client.received, reply + big_reply);

  EXPECT_EQ(Accepted("plaintext"), 1);
  EXPECT_EQ(Active("plaintext"), 1);
  EXPECT_EQ(Accepted("tls"), 0);
  worker_->PublishBytes();
  EXPECT_EQ(
      Metric("tls_sidecar_bytes_total",
             {{"direction", "ingress"}, {"transport", "plaintext"}, {"flow", "client_to_server"}}),
      hello.size() + request.size());
  EXPECT_EQ(
      Metric("tls_sidecar_bytes_total",
             {{"direction", "ingress"}, {"transport", "plaintext"}, {"flow", "server_to_client"}}),
      reply.size() + big_reply.size());
  // The hello named the client: it is listed as a plaintext client.
  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].application, "datapath");
  EXPECT_EQ(rows[0].transport, Transport::kPlaintext);
  EXPECT_EQ(rows[0].active, 1);

  client.Close();
  upstream->Close();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("plaintext"), 0);
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, PlaintextFirstMessageSplitAtEveryByte) {
  Start({.mode = Mode::kPreferTls});
  const std::string hello = OpMsgHello(3);
  for (size_t split = 1; split < hello.size(); ++split) {
    SCOPED_TRACE(testing::Message() << "split at " << split);
    Peer& client = Connect();
    client.pending = hello.substr(0, split);
    // The sidecar reads the first part alone (which decides nothing before 16 bytes, and
    // MongoDB from then on) before the rest is sent.
    ASSERT_TRUE(RunUntil([&] { return client.pending.empty() && LoopIdle(); }));
    client.pending = hello.substr(split);
    Peer* upstream = AcceptUpstream();
    ASSERT_NE(upstream, nullptr);
    ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
    EXPECT_EQ(upstream->received, hello);
    upstream->pending = OpMsgReply(3);
    ASSERT_TRUE(RunUntil([&] { return client.received.size() >= OpMsgReply(3).size(); }));
    EXPECT_EQ(client.received, OpMsgReply(3));
    client.Close();
    upstream->Close();
    ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  }
  EXPECT_EQ(Accepted("plaintext"), hello.size() - 1);
  EXPECT_EQ(RejectedTotal(), 0);
}

// ---------------------------------------------------------------------------------------
// TLS.

TEST_F(DataPathTest, TlsHandshakeThenBytesBothWays) {
  Start({.mode = Mode::kPreferTls});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  ASSERT_TRUE(RunUntil([&] { return client.handshake_done() || client.failed; }));
  ASSERT_TRUE(client.handshake_done());
  std::string hello = OpMsgHello(4);
  client.pending = hello;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
  EXPECT_EQ(upstream->received, hello);  // plaintext upstream
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size(); }));
  EXPECT_EQ(client.received, reply);

  EXPECT_EQ(Accepted("tls"), 1);
  EXPECT_EQ(Active("tls"), 1);
  EXPECT_EQ(Accepted("plaintext"), 0);
  EXPECT_EQ(Metric("tls_sidecar_tls_sni_total", {{"match", "certificate"}}), 1);
  client_socket.Close();
  upstream->Close();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("tls"), 0);
}

TEST_F(DataPathTest, TlsHandshakeFailureClosesTheConnection) {
  Start({.mode = Mode::kRequireTls});
  Peer& client_socket = Connect();
  // A client that trusts another CA refuses the sidecar's certificate with an alert.
  auto other_pki = test_support::TestPki::Create();
  ASSERT_TRUE(other_pki.ok());
  bssl::UniquePtr<SSL_CTX> distrusting =
      test_support::NewClientContext((*other_pki)->ca.cert_pem, "", TLS1_2_VERSION, TLS1_3_VERSION);
  tls_storage_.push_back(std::make_unique<TlsClient>(client_socket, distrusting.get()));
  TlsClient& client = *tls_storage_.back();
  tls_clients_.push_back(&client);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_TRUE(client.failed);
  EXPECT_EQ(Rejected(CloseReason::kHandshakeFailed), 1);
  EXPECT_EQ(Accepted("tls"), 0);
}

TEST_F(DataPathTest, HandshakeTimeoutClosesTheConnection) {
  Start({.mode = Mode::kAllowTls, .handshake_timeout_ms = 200});
  Peer& client_socket = Connect();
  // The ClientHello arrives, then the client goes silent.
  client_socket.pending = ClientHelloBytes(client_context_);
  ASSERT_TRUE(RunUntil(
      [&] { return States() == std::vector<Connection::State>{Connection::State::kHandshaking}; }));
  ASSERT_TRUE(RunUntil([&] { return client_socket.eof || client_socket.error != 0; }));
  EXPECT_TRUE(AllClosed());
  EXPECT_EQ(Rejected(CloseReason::kHandshakeTimeout), 1);
  EXPECT_EQ(Accepted("tls"), 0);
}

TEST_F(DataPathTest, TlsCloseNotifyBecomesFinUpstreamAndRepliesStillDelivered) {
  Start({.mode = Mode::kRequireTls});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  std::string request = OpMsgHello(5);
  client.pending = request;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));

  // close_notify from the client: the sidecar passes a FIN to mongod...
  ASSERT_EQ(SSL_shutdown(client.ssl.get()), 0);  // sent ours, theirs not yet received
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  EXPECT_EQ(upstream->received, request);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kHalfClosed});
  // ...and the reply still reaches the client, followed by the sidecar's close_notify once
  // mongod has finished too.
  std::string reply = OpMsgCommand(0, 70 * 1024);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client.received.size() >= reply.size(); }));
  EXPECT_EQ(client.received, reply);
  upstream->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return client.close_notify_received || client.failed; }));
  EXPECT_TRUE(client.close_notify_received);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Active("tls"), 0);
}

TEST_F(DataPathTest, TlsInDisabledIsAnsweredWithAnAlert) {
  Start({.mode = Mode::kDisabled});
  Peer& client = Connect();
  client.pending = ClientHelloBytes(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  auto alert = protocol::TlsHandshakeFailureAlert();
  EXPECT_EQ(client.received, std::string(alert.begin(), alert.end()));
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kTlsInDisabled), 1);
  EXPECT_EQ(Accepted("tls"), 0);
  EXPECT_EQ(Accepted("plaintext"), 0);
}

// ---------------------------------------------------------------------------------------
// Half-close.

TEST_F(DataPathTest, ClientHalfCloseIsPassedUpstreamAndRepliesStillFlow) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(2, 1000);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return client->pending.empty(); }));
  client->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  EXPECT_EQ(upstream->received, request);  // the FIN comes after every byte
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kHalfClosed});
  EXPECT_FALSE(client->eof);
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= reply.size(); }));
  EXPECT_EQ(client->received, reply);
  upstream->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Active("plaintext"), 0);
}

TEST_F(DataPathTest, UpstreamHalfCloseIsPassedToClientAndRequestsStillFlow) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string reply = OpMsgReply(2);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return upstream->pending.empty(); }));
  upstream->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kHalfClosed});
  EXPECT_FALSE(upstream->eof);
  std::string request = OpMsgCommand(3, 100 * 1024);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  EXPECT_EQ(upstream->received, request);
  client->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, UpstreamResetClosesTheClient) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  upstream->Reset();
  ASSERT_TRUE(RunUntil([&] { return client->eof || client->error != 0; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("plaintext"), 0);
  EXPECT_EQ(RejectedTotal(), 0);  // the peers ended it, the sidecar refused nothing
}

TEST_F(DataPathTest, TlsClientTalksToTheStandInThroughTheSidecar) {
  Start({.mode = Mode::kRequireTls});
  support::Standin standin(support::StandinOptions{});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  client.pending = OpMsgHello(31);
  support::BsonBuilder insert;
  insert.AppendString("insert", "things").AppendString("$db", "test").StartArray("documents");
  insert.StartDocument("0")
      .AppendInt32("_id", 1)
      .AppendString("name", "document-through-the-sidecar")
      .EndDocument();
  std::vector<uint8_t> insert_body = insert.Finish();
  client.pending += AsString(protocol::BuildOpMsg(32, 0, insert_body));
  protocol::BsonWriter find;
  find.AppendString("find", "things").AppendString("$db", "test");
  std::vector<uint8_t> find_body = find.Finish();
  client.pending += AsString(protocol::BuildOpMsg(33, 0, find_body));
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  int answered = 0;
  ASSERT_TRUE(RunUntil([&] {
    answered += AnswerWithStandin(standin, *upstream);
    return answered == 3 || client.failed;
  }));
  // Three replies, in order, each whole and successful; the find sees the insert.
  std::vector<int32_t> response_to;
  std::string last_body;
  ASSERT_TRUE(RunUntil([&] {
    std::string rest = client.received;
    response_to.clear();
    while (rest.size() >= protocol::kHeaderSize) {
      auto frame = protocol::FrameMessage(
          absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(rest.data()), rest.size()));
      if (frame.status != protocol::ParseStatus::kDone) {
        break;
      }
      response_to.push_back(frame.header.response_to);
      last_body = rest.substr(0, frame.size);
      rest.erase(0, frame.size);
    }
    return response_to.size() == 3;
  }));
  EXPECT_EQ(response_to, (std::vector<int32_t>{31, 32, 33}));
  EXPECT_NE(last_body.find("document-through-the-sidecar"), std::string::npos);
  EXPECT_EQ(Accepted("tls"), 1);
  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].transport, Transport::kTls);
  EXPECT_EQ(rows[0].application, "datapath");
}

// ---------------------------------------------------------------------------------------
// Backpressure.

TEST_F(DataPathTest, ClientThatDoesNotReadPausesUpstreamWithBoundedQueue) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  client->reading = false;

  // mongod sends 32 MiB (a recognisable pattern) to a client that reads nothing: far more
  // than the kernel buffers of three loopback sockets hold (about 8 MiB here), so the
  // sidecar's own queue is what fills.
  constexpr size_t kTotal = 32 * 1024 * 1024;
  std::string stream(kTotal, '\0');
  for (size_t i = 0; i < kTotal; ++i) {
    stream[i] = static_cast<char>((i * 131) >> 7);
  }
  upstream->pending = stream;
  // The sidecar stops reading mongod: mongod's writes stop making progress for a while.
  // Counted in loop turns as well as in time, so that a test thread starved by a loaded
  // machine is not taken for a sidecar that stopped reading.
  size_t last_left = kTotal;
  int turns_without_progress = 0;
  Clock::time_point last_progress = Clock::now();
  ASSERT_TRUE(RunUntil([&] {
    if (upstream->Left() != last_left) {
      last_left = upstream->Left();
      last_progress = Clock::now();
      turns_without_progress = 0;
    }
    return ++turns_without_progress > 20 && Clock::now() - last_progress > milliseconds(300);
  }));
  EXPECT_GT(upstream->Left(), 0u) << "everything fit in kernel buffers";

  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  // Held inside the sidecar: at most the high-water mark plus the chunk that crossed it, and
  // enough that the bound, not the kernel, is what stopped it.
  EXPECT_LE(rows[0].max_queued_to_client, static_cast<int64_t>(kHighWater + kChunkCapacity));
  EXPECT_GE(rows[0].max_queued_to_client, static_cast<int64_t>(kHighWater));

  // The client reads again: everything arrives, in order, and mongod's writes go through.
  client->reading = true;
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= kTotal; }));
  EXPECT_TRUE(client->received == stream) << "bytes lost or reordered under backpressure";
  EXPECT_TRUE(upstream->pending.empty());
  rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_LE(rows[0].max_queued_to_client, static_cast<int64_t>(kHighWater + kChunkCapacity));
}

// ---------------------------------------------------------------------------------------
// Refusals answered with a MongoDB error reply.

TEST_F(DataPathTest, RequireTlsAnswersOpMsgHelloWithTlsRequiredError) {
  Start({.mode = Mode::kRequireTls});
  Peer& client = Connect();
  client.pending = OpMsgHello(11);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kSslHandshakeFailedCode);
  EXPECT_EQ(response_to, 11);
  EXPECT_NE(errmsg.find("requires TLS"), std::string::npos) << errmsg;
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kPlaintextInRequireTls), 1);
  EXPECT_EQ(Accepted("plaintext"), 0);
  // The refused client is listed as such (SPEC §6) and counted by its hello's names.
  auto rows = shared_->clients.Snapshot();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, ClientState::kRefused);
  EXPECT_EQ(rows[0].application, "datapath");
  EXPECT_EQ(Metric("tls_sidecar_plaintext_client_refusals_total", {{"application", "datapath"}}),
            1);
}

TEST_F(DataPathTest, RequireTlsAnswersOpQueryHelloWithOpReplyError) {
  Start({.mode = Mode::kRequireTls});
  Peer& client = Connect();
  client.pending = OpQueryHello(12);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(client.received.data()),
                                   client.received.size());
  ASSERT_GE(client.received.size(), protocol::kHeaderSize);
  EXPECT_EQ(protocol::FrameMessage(bytes).header.op_code,
            static_cast<int32_t>(protocol::OpCode::kReply));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kSslHandshakeFailedCode);
  EXPECT_EQ(response_to, 12);
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kPlaintextInRequireTls), 1);
}

TEST_F(DataPathTest, UpstreamRefusedIsAnsweredToPlaintext) {
  Start({.mode = Mode::kAllowTls, .upstream_refuses = true});
  Peer& client = Connect();
  client.pending = OpMsgHello(13);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kHostUnreachableCode);
  EXPECT_EQ(response_to, 13);
  EXPECT_NE(errmsg.find("upstream"), std::string::npos) << errmsg;
  EXPECT_NE(errmsg.find("connection refused"), std::string::npos) << errmsg;
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kUpstreamUnavailable), 1);
  EXPECT_EQ(Metric("tls_sidecar_upstream_connect_failures_total", {}), 1);
  EXPECT_EQ(Active("plaintext"), 0);
}

TEST_F(DataPathTest, UpstreamRefusedIsAnsweredOverTls) {
  Start({.mode = Mode::kRequireTls, .upstream_refuses = true});
  Peer& client_socket = Connect();
  TlsClient& client = NewTlsClient(client_socket);
  ASSERT_TRUE(RunUntil([&] { return client.handshake_done() || client.failed; }));
  ASSERT_TRUE(client.handshake_done());
  client.pending = OpMsgHello(14);
  ASSERT_TRUE(
      RunUntil([&] { return client.eof || client.close_notify_received || client.failed; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kHostUnreachableCode);
  EXPECT_EQ(response_to, 14);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kUpstreamUnavailable), 1);
  EXPECT_EQ(Metric("tls_sidecar_upstream_connect_failures_total", {}), 1);
  EXPECT_EQ(Active("tls"), 0);
}

TEST_F(DataPathTest, HttpOnTheNativePortIsAnswered) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_EQ(client.received, std::string(protocol::HttpOnNativePortResponse()));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kHttpOnNativePort), 1);
}

// ---------------------------------------------------------------------------------------
// Sniffing ends.

TEST_F(DataPathTest, SniffTimeoutClosesASilentClient) {
  Start({.mode = Mode::kAllowTls, .sniff_timeout_ms = 200});
  Peer& client = Connect();
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kSniffing});
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_TRUE(client.received.empty());
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kSniffTimeout), 1);
}

TEST_F(DataPathTest, GarbageFirstBytesAreClosed) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = "this is not mongodb, nor TLS";
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_TRUE(client.received.empty());
  EXPECT_FALSE(UpstreamDialled());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kInvalidFirstBytes), 1);
  EXPECT_EQ(Accepted("plaintext"), 0);
}

TEST_F(DataPathTest, ClientLeavingBeforeSniffIsSniffEof) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = std::string("\x10\x00", 2);  // too little to decide
  ASSERT_TRUE(RunUntil([&] { return client.pending.empty(); }));
  client.ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kSniffEof), 1);
  EXPECT_FALSE(UpstreamDialled());
}

}  // namespace
}  // namespace sidecar::proxy::data_path
