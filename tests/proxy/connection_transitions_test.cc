// The transition table of connection_state.h, reached with real sockets: the scenarios below
// reach the rows the other data path tests do not, and TransitionCoverage, once every test
// of the binary has run, checks that every row of kTransitions was reached at least once
// (Connection::Enter counts each change of state; TearDown checks none was illegal).
//
//   row (from -> to)                 reached by (among others)
//   Sniffing -> Handshaking          TlsHandshakeThenBytesBothWays
//   Sniffing -> Proxying             PlaintextIsAdmittedAndForwardedBothWays
//   Sniffing -> Rejecting            RequireTlsAnswersOpMsgHelloWithTlsRequiredError
//   Sniffing -> ClosingAfterFlush    TlsInDisabledIsAnsweredWithAnAlert, HttpOnTheNativePort...,
//                                    DrainClosesAClientThatSentNothingYet
//   Sniffing -> Closing              SniffTimeoutClosesASilentClient, GarbageFirstBytesAreClosed
//   Connecting -> Handshaking        EgressInPreferTlsHandshakesWithThePeerThenForwards
//   Connecting -> Proxying           EgressInPlaintextModeConnectsAndForwardsBothWays
//   Connecting -> ClosingAfterFlush  DrainWhileEgressIsConnectingNeverReachesThePeer
//   Connecting -> Closing            EgressPeerRefusedClosesTheLocalConnection
//   Handshaking -> Proxying          TlsHandshakeThenBytesBothWays, EgressInPreferTls...
//   Handshaking -> Rejecting         UpstreamRefusedDuringTheHandshakeEndsAtTheSniffTimeout
//   Handshaking -> ClosingAfterFlush DrainDuringTheTlsHandshakeClosesTheConnection
//   Handshaking -> Closing           HandshakeTimeoutClosesTheConnection, TlsHandshakeFailure...
//   Proxying -> HalfClosed           ClientHalfCloseIsPassedUpstreamAndRepliesStillFlow
//   Proxying -> Rejecting            UpstreamRefusedIsAnsweredToPlaintext
//   Proxying -> ClosingAfterFlush    DrainClosesAnIdleConnectionAtOnce
//   Proxying -> Closing              UpstreamResetClosesTheClient
//   HalfClosed -> Rejecting          UpstreamRefusedAfterTheClientHalfClosedIsStillAnswered
//   HalfClosed -> ClosingAfterFlush  DrainAfterTheClientHalfClosedWaitsForTheReply
//   HalfClosed -> Closing            UpstreamHalfCloseIsPassedToClientAndRequestsStillFlow
//   Rejecting -> ClosingAfterFlush   RequireTlsAnswersOpMsgHelloWithTlsRequiredError
//   Rejecting -> Closing             RequireTlsClientLeavingMidRequestIsClosedUnanswered
//   ClosingAfterFlush -> Closing     every refusal answered and every drain
#include <cstdio>

#include "tests/proxy/data_path_fixture.h"

namespace sidecar::proxy::data_path {
namespace {

using State = Connection::State;

// TransitionCoverage checks, after the whole binary has run, that each row of the table was
// reached. A run filtered to some tests cannot reach them all, so it is not checked then.
class TransitionCoverage : public ::testing::Environment {
 public:
  void TearDown() override {
    int reached = 0;
    for (const ConnectionTransition& t : kTransitions) {
      uint64_t count = TransitionCount(t.from, t.to);
      std::printf("transition %-18s -> %-18s reached %llu times\n",
                  std::string(ConnectionStateName(t.from)).c_str(),
                  std::string(ConnectionStateName(t.to)).c_str(),
                  static_cast<unsigned long long>(count));
      reached += count > 0 ? 1 : 0;
    }
    std::printf("%d of %zu transitions reached\n", reached, kTransitions.size());
    std::string filter = GTEST_FLAG_GET(filter);
    if (!filter.empty() && filter != "*") {
      std::printf("filtered run (%s): coverage of the table not checked\n", filter.c_str());
      return;
    }
    for (const ConnectionTransition& t : kTransitions) {
      EXPECT_GT(TransitionCount(t.from, t.to), 0u)
          << "no test reaches " << ConnectionStateName(t.from) << " -> "
          << ConnectionStateName(t.to);
    }
    EXPECT_EQ(IllegalTransitionCount(), 0u);
  }
};

[[maybe_unused]] ::testing::Environment* const kCoverage =
    ::testing::AddGlobalTestEnvironment(new TransitionCoverage);

class ConnectionTransitionsTest : public DataPathTest {
 protected:
  // Reached: how many more times `from` -> `to` happened since the test began.
  uint64_t Reached(State from, State to) { return TransitionCount(from, to) - Before(from, to); }
  void SetUp() override {
    for (const ConnectionTransition& t : kTransitions) {
      before_[Key(t.from, t.to)] = TransitionCount(t.from, t.to);
    }
  }

 private:
  static int Key(State from, State to) {
    return static_cast<int>(from) * kConnectionStateCount + static_cast<int>(to);
  }
  uint64_t Before(State from, State to) { return before_[Key(from, to)]; }
  std::map<int, uint64_t> before_;
};

TEST_F(ConnectionTransitionsTest, DrainClosesAClientThatSentNothingYet) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  ASSERT_EQ(States(), std::vector<State>{State::kSniffing});
  worker_->DrainConnections();
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  EXPECT_TRUE(client.received.empty());
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);  // nothing was refused: the sidecar is going away
  EXPECT_EQ(Reached(State::kSniffing, State::kClosingAfterFlush), 1u);
  EXPECT_FALSE(UpstreamDialled());
}

TEST_F(ConnectionTransitionsTest, DrainWhileEgressIsConnectingNeverReachesThePeer) {
  Start({.mode = Mode::kPreferTls, .egress = true});
  Peer& local = Connect(/*egress=*/true);
  ASSERT_EQ(States(), std::vector<State>{State::kConnecting});
  worker_->DrainConnections();
  ASSERT_TRUE(RunUntil([&] { return local.eof || local.error != 0; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Reached(State::kConnecting, State::kClosingAfterFlush), 1u);
  EXPECT_EQ(Reached(State::kConnecting, State::kHandshaking), 0u);
  EXPECT_EQ(Active("tls", "egress"), 0);
}

TEST_F(ConnectionTransitionsTest, DrainDuringTheTlsHandshakeClosesTheConnection) {
  Start({.mode = Mode::kAllowTls});
  Peer& client = Connect();
  client.pending = ClientHelloBytes(client_context_);
  ASSERT_TRUE(RunUntil([&] { return States() == std::vector<State>{State::kHandshaking}; }));
  worker_->DrainConnections();
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Accepted("tls"), 0);
  EXPECT_EQ(Reached(State::kHandshaking, State::kClosingAfterFlush), 1u);
}

TEST_F(ConnectionTransitionsTest, DrainAfterTheClientHalfClosedWaitsForTheReply) {
  Start({.mode = Mode::kAllowTls});
  auto [client_end, upstream_end] = ProxiedPair();
  Peer* client = client_end;
  Peer* upstream = upstream_end;
  ASSERT_NE(upstream, nullptr);
  std::string request = OpMsgCommand(8, 500);
  client->pending = request;
  ASSERT_TRUE(RunUntil([&] { return client->pending.empty(); }));
  client->ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return upstream->eof; }));
  ASSERT_EQ(States(), std::vector<State>{State::kHalfClosed});
  worker_->DrainConnections();
  RunFor(milliseconds(100));
  EXPECT_FALSE(client->eof) << "closed with the reply still owed";
  std::string reply = OpMsgCommand(0, 2000);
  upstream->pending = reply;
  ASSERT_TRUE(RunUntil([&] { return client->eof; }));
  EXPECT_EQ(client->received, reply);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(RejectedTotal(), 0);
  EXPECT_EQ(Reached(State::kHalfClosed, State::kClosingAfterFlush), 1u);
}

TEST_F(ConnectionTransitionsTest, RequireTlsClientLeavingMidRequestIsClosedUnanswered) {
  Start({.mode = Mode::kRequireTls});
  Peer& client = Connect();
  client.pending = OpMsgHello(16).substr(0, 20);  // the header and a little of the body
  ASSERT_TRUE(RunUntil([&] { return States() == std::vector<State>{State::kRejecting}; }));
  client.ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_TRUE(client.received.empty());  // no whole request, nothing to answer
  EXPECT_EQ(Rejected(CloseReason::kPlaintextInRequireTls), 1);
  EXPECT_EQ(Reached(State::kRejecting, State::kClosing), 1u);
  EXPECT_FALSE(UpstreamDialled());
}

// mongod refuses only after the client has sent its request and finished sending: the
// refusal is still answered. To hold the refusal back until then, mongod's accept queue is
// full (its SYN is dropped) until the listener goes away and the retried SYN is refused.
TEST_F(ConnectionTransitionsTest, UpstreamRefusedAfterTheClientHalfClosedIsStillAnswered) {
  Start({.mode = Mode::kAllowTls});
  ASSERT_EQ(listen(upstream_listener_, 0), 0);
  int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in upstream_address = Loopback(BoundPort(upstream_listener_));
  ASSERT_EQ(
      connect(filler, reinterpret_cast<sockaddr*>(&upstream_address), sizeof(upstream_address)), 0);
  Peer& client = Connect();
  client.pending = OpMsgHello(17);
  ASSERT_TRUE(RunUntil([&] { return client.pending.empty(); }));
  client.ShutdownWrite();
  ASSERT_TRUE(RunUntil([&] { return States() == std::vector<State>{State::kHalfClosed}; }));
  close(upstream_listener_);
  upstream_listener_ = -1;
  close(filler);
  ASSERT_TRUE(RunUntil([&] { return client.eof || client.error != 0; }));
  int32_t response_to = 0;
  std::string errmsg;
  EXPECT_EQ(ErrorOf(client.received, &response_to, &errmsg), protocol::kHostUnreachableCode);
  EXPECT_EQ(response_to, 17);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kUpstreamUnavailable), 1);
  EXPECT_EQ(Reached(State::kHalfClosed, State::kRejecting), 1u);
}

// mongod refuses while the client is still shaking hands: the connection is refused at once
// (kRejecting) and waits, under the sniff timer, for a request to answer; this client sends
// none and is closed when the timer fires, counted as upstream_unavailable.
TEST_F(ConnectionTransitionsTest, UpstreamRefusedDuringTheHandshakeEndsAtTheSniffTimeout) {
  Start({.mode = Mode::kAllowTls, .sniff_timeout_ms = 200, .upstream_refuses = true});
  Peer& client = Connect();
  client.pending = ClientHelloBytes(client_context_);  // then silence
  ASSERT_TRUE(RunUntil([&] { return States() == std::vector<State>{State::kRejecting}; }));
  EXPECT_EQ(Reached(State::kHandshaking, State::kRejecting), 1u);
  ASSERT_TRUE(RunUntil([&] { return AllClosed(); }));
  EXPECT_EQ(Rejected(CloseReason::kUpstreamUnavailable), 1);
  EXPECT_EQ(Metric("tls_sidecar_upstream_connect_failures_total", {}), 1);
  EXPECT_EQ(Accepted("tls"), 0);
}

}  // namespace
}  // namespace sidecar::proxy::data_path
