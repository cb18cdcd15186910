// The takeover's parts without a sidecar around them: its messages, descriptor passing over
// a SOCK_SEQPACKET pair, and both sides of the conversation over a real socket file, with
// the running side on a loop of its own thread.
#include "proxy/server/takeover.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <cstdlib>
#include <string>
#include <thread>

#include "proxy/server/descriptor_passing.h"
#include "proxy/server/takeover_wire.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

TEST(TakeoverWireTest, StateSurvivesItsRoundTrip) {
  HandoverState state{Mode::kPreferTls, ModeSource::kFlag, "--sslMode", 2, 4242, "0.1.0"};
  absl::StatusOr<Message> message = DecodeMessage(EncodeState(state));
  ASSERT_TRUE(message.ok()) << message.status();
  absl::StatusOr<HandoverState> back = DecodeState(*message);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->mode, Mode::kPreferTls);
  EXPECT_EQ(back->mode_source, ModeSource::kFlag);
  EXPECT_EQ(back->mode_flag, "--sslMode");
  EXPECT_EQ(back->restarts, 2);
  EXPECT_EQ(back->pid, 4242);
  EXPECT_EQ(back->version, "0.1.0");
}

TEST(TakeoverWireTest, StateWithoutModeOrWithAnUnknownOneIsRefused) {
  EXPECT_FALSE(DecodeState(*DecodeMessage("state\nrestarts 1")).ok());
  absl::StatusOr<HandoverState> bad = DecodeState(*DecodeMessage("state\nmode tlsPlease"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("mode"));
}

TEST(TakeoverWireTest, KeysOfANewerSidecarAreIgnored) {
  absl::StatusOr<HandoverState> state =
      DecodeState(*DecodeMessage("state\nmode allowTLS\nsomethingNew 7"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->mode, Mode::kAllowTls);
}

TEST(TakeoverWireTest, SocketsMustNameExactlyTheDescriptorsThatCame) {
  std::vector<SocketLabel> labels = {{SocketKind::kLock, "127.0.0.1:27017"},
                                     {SocketKind::kIngress, "127.0.0.1:27017"},
                                     {SocketKind::kEgress, "127.0.0.2:27017"}};
  absl::StatusOr<Message> message = DecodeMessage(EncodeSockets(labels));
  ASSERT_TRUE(message.ok());
  absl::StatusOr<std::vector<SocketLabel>> back = DecodeSockets(*message, 3);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ((*back)[0].kind, SocketKind::kLock);
  EXPECT_EQ((*back)[2].kind, SocketKind::kEgress);
  EXPECT_EQ((*back)[2].address, "127.0.0.2:27017");
  absl::StatusOr<std::vector<SocketLabel>> short_of_one = DecodeSockets(*message, 2);
  ASSERT_FALSE(short_of_one.ok());
  EXPECT_THAT(short_of_one.status().message(), HasSubstr("3 sockets named but 2 descriptors"));
}

TEST(TakeoverWireTest, GarbageIsRefusedWithAReason) {
  EXPECT_FALSE(DecodeMessage("GET / HTTP/1.1").ok());
  EXPECT_FALSE(DecodeMessage("state\nnospace").ok());
  EXPECT_FALSE(DecodeSockets(*DecodeMessage("sockets\nlistener x"), 1).ok());
  EXPECT_EQ(ErrorText(*DecodeMessage(EncodeError("no, because"))), "no, because");
}

// Table over the counts of loops before and after: every socket polled, every loop busy.
TEST(ShareListenersTest, EverySocketIsPolledWhateverTheCountsOfLoops) {
  for (size_t sockets : {1u, 2u, 3u, 4u, 8u, 13u}) {
    for (size_t workers : {1u, 2u, 3u, 4u, 16u}) {
      std::vector<std::vector<size_t>> shares = ShareListeners(sockets, workers);
      ASSERT_EQ(shares.size(), workers);
      std::vector<int> polled(sockets, 0);
      for (const std::vector<size_t>& share : shares) {
        EXPECT_FALSE(share.empty()) << sockets << " sockets, " << workers << " workers";
        for (size_t j : share) {
          ASSERT_LT(j, sockets);
          ++polled[j];
        }
      }
      for (size_t j = 0; j < sockets; ++j) {
        EXPECT_GE(polled[j], 1) << "socket " << j << " of " << sockets << ", " << workers
                                << " workers";
        if (sockets >= workers) {
          EXPECT_EQ(polled[j], 1) << "a socket polled twice while others could take it";
        }
      }
    }
  }
}

TEST(TakeoverSocketPathTest, SitsBesideTheControlSocket) {
  EXPECT_EQ(TakeoverSocketPath("/run/tls-sidecar/27017.sock"),
            "/run/tls-sidecar/27017.takeover.sock");
  EXPECT_EQ(TakeoverSocketPath("/tmp/ctl"), "/tmp/ctl.takeover");
}

// A pipe whose write end travels: what is written through the received copy arrives.
TEST(DescriptorPassingTest, DescriptorsArriveWithTheirPacketAndWork) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd left(pair[0]), right(pair[1]);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  int sent[] = {write_end.get(), write_end.get()};
  ASSERT_TRUE(SendPacket(left.get(), "first", sent).ok());
  ASSERT_TRUE(SendPacket(left.get(), "second", {}).ok());
  absl::StatusOr<Packet> first = ReceivePacket(right.get());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->data, "first");
  ASSERT_EQ(first->fds.size(), 2u);
  EXPECT_NE(first->fds[0].get(), write_end.get());
  ASSERT_EQ(write(first->fds[1].get(), "x", 1), 1);
  char byte = 0;
  ASSERT_EQ(read(read_end.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  absl::StatusOr<Packet> second = ReceivePacket(right.get());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->data, "second");
  EXPECT_TRUE(second->fds.empty());
  left = UniqueFd();
  EXPECT_TRUE(absl::IsUnavailable(ReceivePacket(right.get()).status()));
}

TEST(DescriptorPassingTest, TooManyDescriptorsForOnePacketAreRefused) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd left(pair[0]), right(pair[1]);
  std::vector<int> many(kMaxDescriptorsPerPacket + 1, left.get());
  EXPECT_FALSE(SendPacket(left.get(), "x", many).ok());
}

TEST(DescriptorPassingTest, PeerUidIsThisProcesssOwn) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd left(pair[0]), right(pair[1]);
  absl::StatusOr<uid_t> uid = PeerUid(left.get());
  ASSERT_TRUE(uid.ok());
  EXPECT_EQ(*uid, geteuid());
  EXPECT_TRUE(MayTakeOver(geteuid(), geteuid()));
  EXPECT_TRUE(MayTakeOver(0, 1000));
  EXPECT_FALSE(MayTakeOver(1001, 1000));
}

UniqueFd ListenOnLoopback() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(listen(fd.get(), 16), 0);
  return fd;
}

uint16_t LocalPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// The running side on the test's loop, as on the sidecar's main loop; the new process's
// blocking calls on a thread of their own.
class SourceFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/takeover-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    path_ = dir_ + "/t.takeover.sock";
    uv_loop_init(&loop_);
  }
  void TearDown() override {
    source_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
    rmdir(dir_.c_str());
  }
  void Start(TakeoverSource::Hooks hooks) {
    auto source = TakeoverSource::Create(&loop_, path_, std::move(hooks));
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
  }
  // RunNewProcess runs `body` on a thread while the loop turns, until the body is done.
  template <typename F>
  void RunNewProcess(F body) {
    std::atomic<bool> done{false};
    std::thread thread([&] {
      body();
      done = true;
    });
    while (!done) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      usleep(1000);
    }
    thread.join();
  }

  std::string dir_;
  std::string path_;
  uv_loop_t loop_{};
  std::unique_ptr<TakeoverSource> source_;
};

TEST_F(SourceFixture, HandsOverStateAndSocketsThenStopsOnRequest) {
  UniqueFd listener = ListenOnLoopback();
  UniqueFd other = ListenOnLoopback();
  int stops = 0;
  TakeoverSource::Hooks hooks;
  hooks.offer = [&]() -> absl::StatusOr<TakeoverSource::Offer> {
    TakeoverSource::Offer offer;
    offer.state = {Mode::kRequireTls, ModeSource::kFile, "", 1, 99, "0.1.0"};
    offer.labels = {{SocketKind::kIngress, "a"}, {SocketKind::kEgress, "b"}};
    offer.fds = {listener.get(), other.get()};
    return offer;
  };
  hooks.stop = [&] { ++stops; };
  Start(std::move(hooks));
  std::optional<TakeoverClient> client;
  absl::StatusOr<ReceivedHandover> handover = absl::UnknownError("not run");
  RunNewProcess([&] {
    absl::StatusOr<TakeoverClient> connected = TakeoverClient::Connect(path_);
    ASSERT_TRUE(connected.ok()) << connected.status();
    client.emplace(*std::move(connected));
    handover = client->Receive();
  });
  ASSERT_TRUE(handover.ok()) << handover.status();
  EXPECT_EQ(handover->state.mode, Mode::kRequireTls);
  EXPECT_EQ(handover->state.restarts, 1);
  ASSERT_EQ(handover->sockets.size(), 2u);
  // The same listening sockets, not new ones: same port, and a connection queued on the
  // original is accepted through the copy.
  EXPECT_EQ(LocalPort(handover->sockets[0].fd.get()), LocalPort(listener.get()));
  EXPECT_EQ(handover->sockets[1].label.kind, SocketKind::kEgress);
  UniqueFd dialer(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(LocalPort(listener.get()));
  ASSERT_EQ(connect(dialer.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  UniqueFd accepted(accept4(handover->sockets[0].fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(accepted.get(), 0);
  EXPECT_EQ(stops, 0);  // nothing changes for the old side before "stop"
  absl::Status stopped = absl::UnknownError("not run");
  RunNewProcess([&] { stopped = client->Stop(); });
  ASSERT_TRUE(stopped.ok()) << stopped;
  EXPECT_EQ(stops, 1);
  EXPECT_NE(access(path_.c_str(), F_OK), 0) << "the path is left free for the successor";
}

TEST_F(SourceFixture, ARefusedOfferReachesTheNewProcessAndChangesNothing) {
  int stops = 0;
  TakeoverSource::Hooks hooks;
  hooks.offer = []() -> absl::StatusOr<TakeoverSource::Offer> {
    return absl::FailedPreconditionError("this sidecar is shutting down");
  };
  hooks.stop = [&] { ++stops; };
  Start(std::move(hooks));
  absl::StatusOr<ReceivedHandover> handover = absl::UnknownError("not run");
  RunNewProcess([&] {
    absl::StatusOr<TakeoverClient> client = TakeoverClient::Connect(path_);
    ASSERT_TRUE(client.ok()) << client.status();
    handover = client->Receive();
  });
  ASSERT_FALSE(handover.ok());
  EXPECT_THAT(handover.status().message(), HasSubstr("refused: this sidecar is shutting down"));
  EXPECT_EQ(stops, 0);
  // Still listening for a later takeover.
  EXPECT_EQ(access(path_.c_str(), F_OK), 0);
}

TEST(TakeoverClientTest, NoSidecarAtThePathIsSaidPlainly) {
  absl::StatusOr<TakeoverClient> client = TakeoverClient::Connect("/nonexistent/x.sock");
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(client.status().message(), HasSubstr("cannot reach a running sidecar"));
}

}  // namespace
}  // namespace sidecar::proxy
