// The data path driven whole (see data_path_fixture.h): the SIGTERM drain, egress, and the
// accept limits.
#include "tests/proxy/data_path_fixture.h"

namespace sidecar::proxy::data_path {
namespace {

// The SIGTERM drain (SPEC §10), as Server drives it: DrainConnections on every worker.

TEST_F(DataPathTest, DrainClosesAnIdleConnectionAtOnce) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  worker_->DrainConnections();
  ASSERT_TRUE(RunUntil([&] { return client->eof && upstream->eof; }, milliseconds(2000)));
  EXPECT_TRUE(client->received.empty());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);  // a clean end between requests, as mongod's shutdown
  EXPECT_EQ(Active("plaintext"), 0);
}

TEST_F(DataPathTest, DrainClosesAnInFlightConnectionAfterTheReply) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(5, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  worker_->DrainConnections();
  // The request is in flight: the connection waits for its reply.
  RunFor(milliseconds(200));
  EXPECT_FALSE(client->eof);
  EXPECT_FALSE(upstream->eof);
  EXPECT_EQ(Connections(), 1u);
  // Half the reply still holds it open; its last byte closes it.
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply.substr(0, reply.size() / 2);
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= reply.size() / 2; }));
  RunFor(milliseconds(100));
  EXPECT_FALSE(client->eof);
  upstream->pending = reply.substr(reply.size() / 2);
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, DrainDeadlineClosesBetweenMessagesCountedAsShutdown) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(6, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  worker_->DrainConnections();
  RunFor(milliseconds(50));
  ASSERT_EQ(Connections(), 1u);  // waiting for the reply
  // drainSeconds is over and the reply has not started: the request gets no more time.
  worker_->OnDrainDeadline();
  ASSERT_TRUE(RunUntil([&] { return client->eof && upstream->eof; }));
  EXPECT_TRUE(client->received.empty());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kShutdown), 1);
}

TEST_F(DataPathTest, DrainDeadlineWaitsForTheEndOfAMessageInProgress) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(7, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= request.size(); }));
  worker_->DrainConnections();
  std::string reply = OpMsgCommand(0, 100 * 1024);
  upstream->pending = reply.substr(0, 1000);
  ASSERT_TRUE(RunUntil([&] { return client->received.size() >= 1000; }));
  // Past the deadline in the middle of the reply: it is finished, never cut.
  worker_->OnDrainDeadline();
  RunFor(milliseconds(100));
  EXPECT_FALSE(client->eof);
  upstream->pending = reply.substr(1000);
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kShutdown), 1);
}

// ---------------------------------------------------------------------------------------
// Egress: the local mongod dials a peer through the sidecar.

TEST_F(DataPathTest, EgressInPlaintextModeConnectsAndForwardsBothWays) {
  Start({.mode = Mode::kAllowTls, .egress = true});  // egress originates TLS from preferTLS
  Peer& local = Connect(/*egress=*/true);
  std::string hello = OpMsgHello(21);
  local.pending = hello;  // mongod may speak before the peer is connected
  Peer* peer = AcceptUpstream();
  ASSERT_NE(peer, nullptr);
  ASSERT_TRUE(RunUntil([&] { return peer->received.size() >= hello.size(); }));
  EXPECT_EQ(peer->received, hello);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});
  std::string reply = OpMsgCommand(0, 50 * 1024);
  peer->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return local.received.size() >= reply.size(); }));
  EXPECT_EQ(local.received, reply);
  EXPECT_EQ(EgressAccepted("plaintext"), 1);
  EXPECT_EQ(Active("plaintext", "egress"), 1);
  local.ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return peer->eof; }));
  peer->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return local.eof; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Active("plaintext", "egress"), 0);
  EXPECT_EQ(RejectedTotal(), 0);
}

TEST_F(DataPathTest, EgressInPreferTlsHandshakesWithThePeerThenForwards) {
  Start({.mode = Mode::kPreferTls, .egress = true});
  Peer& local = Connect(/*egress=*/true);
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kConnecting});
  std::string hello = OpMsgHello(22);
  local.pending = hello;
  Peer* peer_socket = AcceptUpstream();
  ASSERT_NE(peer_socket, nullptr);
  bssl::UniquePtr<SSL_CTX> server_context = ServerContext(pki_->server);
  tls_storage_.push_back(
      std::make_unique<TlsClient>(*peer_socket, server_context.get(), /*server=*/true));
  TlsClient& peer = *tls_storage_.back();
  tls_clients_.push_back(&peer);
  ASSERT_TRUE(RunUntil([&] { return peer.received.size() >= hello.size() || peer.failed; }));
  EXPECT_EQ(peer.received, hello);  // decrypted by the peer: it went out as TLS
  EXPECT_EQ(States(), std::vector<Connection::State>{Connection::State::kProxying});
  std::string reply = OpMsgCommand(0, 50 * 1024);
  peer.pending = reply;
  ASSERT_TRUE(RunUntil([&] { return local.received.size() >= reply.size(); }));
  EXPECT_EQ(local.received, reply);  // plaintext to the local mongod
  EXPECT_EQ(EgressAccepted("tls"), 1);
  EXPECT_EQ(Metric("tls_sidecar_tls_handshakes_total", {{"direction", "egress"}}), 1);
}

TEST_F(DataPathTest, EgressPeerRefusedClosesTheLocalConnection) {
  Start({.mode = Mode::kPreferTls, .egress = true, .upstream_refuses = true});
  Peer& local = Connect(/*egress=*/true);
  ASSERT_TRUE(RunUntil([&] { return local.eof || local.error != 0; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kEgressPeerUnavailable), 1);
}

// Out of descriptors, the worker stops accepting and retries on a timer (SPEC §10): the
// client waits in the listen backlog and is served once a descriptor is free, rather than
// being accepted and dropped (libuv's spare-descriptor trick) or spun on.
TEST_F(DataPathTest, OutOfDescriptorsPausesAcceptingAndServesTheClientAfter) {
  Start({.mode = Mode::kAllowTls});
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // The lowest free descriptor number becomes the limit: no new descriptor can be made.
  int lowest_free = dup(fd);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  rlimit exhausted = saved;
  exhausted.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &exhausted), 0);
  sockaddr_in address = Loopback(port_);
  int connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  peers_.push_back(std::make_unique<Peer>(fd));
  Peer& client = *peers_.back();
  RunFor(milliseconds(300));
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_EQ(connected, 0);
  EXPECT_FALSE(client.eof || client.error != 0) << "the waiting client was dropped";
  EXPECT_EQ(Connections(), 0u);

  // A descriptor is free again: the retry accepts the client, which is then served.
  ASSERT_TRUE(RunUntil([&] { return Connections() == 1 || client.eof || client.error != 0; }));
  EXPECT_EQ(Connections(), 1u);
  std::string hello = OpMsgHello(41);
  client.pending = hello;
  Peer* upstream = AcceptUpstream();
  ASSERT_NE(upstream, nullptr);
  ASSERT_TRUE(RunUntil([&] { return upstream->received.size() >= hello.size(); }));
  EXPECT_EQ(upstream->received, hello);
  EXPECT_EQ(RejectedTotal(), 0);
}

// limits.maxConnections counts clients only (SPEC §5): idle clients filling it must not
// refuse the local mongod's connection to a peer, or a client flood cuts replication.
TEST_F(DataPathTest, ClientsAtMaxConnectionsDoNotRefuseEgress) {
  Start({.mode = Mode::kAllowTls, .egress = true, .max_connections = 5});
  for (int i = 0; i < 5; ++i) {
    Connect();
  }
  ASSERT_EQ(Connections(), 5u);
  Peer& refused = Connect();  // the sixth client is over the limit
  ASSERT_TRUE(RunUntil([&] { return refused.eof || refused.error != 0; }));
  EXPECT_EQ(Rejected(CloseReason::kMaxConnections), 1);

  Peer& local = Connect(/*egress=*/true);
  std::string hello = OpMsgHello(31);
  local.pending = hello;
  Peer* peer = AcceptUpstream();
  ASSERT_NE(peer, nullptr) << "the egress connection was not dialled through";
  ASSERT_TRUE(RunUntil([&] { return peer->received.size() >= hello.size(); }));
  EXPECT_EQ(peer->received, hello);
  EXPECT_FALSE(local.eof);
  EXPECT_EQ(Connections(), 6u);
  EXPECT_EQ(RejectedTotal(), 1);  // the sixth client only
}

// limits.maxEgressConnections is enforced on its own and counted under its own reason.
TEST_F(DataPathTest, MaxEgressConnectionsRefusesTheNextEgressConnectionCounted) {
  Start({.mode = Mode::kAllowTls, .egress = true, .max_egress_connections = 1});
  Peer& first = Connect(/*egress=*/true);
  Peer& second = Connect(/*egress=*/true);
  ASSERT_TRUE(RunUntil([&] { return second.eof || second.error != 0; }));
  EXPECT_TRUE(second.received.empty());
  EXPECT_FALSE(first.eof);
  EXPECT_EQ(Connections(), 1u);
  EXPECT_EQ(Rejected(CloseReason::kMaxEgressConnections), 1);
  EXPECT_EQ(RejectedTotal(), 1);
  // Clients are not held to the egress limit.
  Connect();
  EXPECT_EQ(Connections(), 2u);
}

TEST_F(DataPathTest, EgressTlsHandshakeFailureHasNoPlaintextFallback) {
  Start({.mode = Mode::kRequireTls, .egress = true});
  Peer& local = Connect(/*egress=*/true);
  local.pending = OpMsgHello(23);
  Peer* peer_socket = AcceptUpstream();
  ASSERT_NE(peer_socket, nullptr);
  // The peer presents a certificate from a CA the sidecar does not trust.
  auto other_pki = test_support::TestPki::Create();
  ASSERT_TRUE(other_pki.ok());
  bssl::UniquePtr<SSL_CTX> server_context = ServerContext((*other_pki)->server);
  tls_storage_.push_back(
      std::make_unique<TlsClient>(*peer_socket, server_context.get(), /*server=*/true));
  TlsClient& peer = *tls_storage_.back();
  tls_clients_.push_back(&peer);
  ASSERT_TRUE(RunUntil([&] { return local.eof || local.error != 0; }));
  EXPECT_TRUE(peer.received.empty());  // not one byte of mongod's went out
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kEgressHandshakeFailed), 1);
}

}  // namespace
}  // namespace sidecar::proxy::data_path
