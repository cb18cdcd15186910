#include "proxy/server/port_lock.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

// A port nobody listens on now: bound to 0 and released.
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

sockaddr_storage Ipv4(const char* ip, uint16_t port) {
  sockaddr_storage storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(port);
  inet_pton(AF_INET, ip, &v4->sin_addr);
  return storage;
}

TEST(PortLockTest, ASecondClaimOfTheSameAddressNamesTheHolder) {
  uint16_t port = FreePort();
  absl::StatusOr<PortLock> first = PortLock::Claim(Ipv4("127.0.0.1", port));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<PortLock> second = PortLock::Claim(Ipv4("127.0.0.1", port));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(),
            absl::StrCat("127.0.0.1:", port, " is already in use (by another tls-sidecar, pid ",
                         getpid(), ")"));
}

TEST(PortLockTest, OtherAddressesWithTheSamePortAreFree) {
  uint16_t port = FreePort();
  absl::StatusOr<PortLock> first = PortLock::Claim(Ipv4("127.0.0.1", port));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<PortLock> other = PortLock::Claim(Ipv4("127.0.0.2", port));
  EXPECT_TRUE(other.ok()) << other.status();
}

TEST(PortLockTest, ReleasedWithItsOwnerEvenWhenTheOwnerIsKilled) {
  uint16_t port = FreePort();
  {
    absl::StatusOr<PortLock> lock = PortLock::Claim(Ipv4("127.0.0.1", port));
    ASSERT_TRUE(lock.ok()) << lock.status();
  }
  EXPECT_TRUE(PortLock::Claim(Ipv4("127.0.0.1", port)).ok());

  // A process that dies without any clean-up leaves nothing stale behind.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<PortLock> lock = PortLock::Claim(Ipv4("127.0.0.1", port));
    char ok = lock.ok() ? '1' : '0';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, '1');
  absl::StatusOr<PortLock> while_alive = PortLock::Claim(Ipv4("127.0.0.1", port));
  ASSERT_FALSE(while_alive.ok());
  EXPECT_THAT(while_alive.status().message(), HasSubstr(absl::StrCat("pid ", child)));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(ready[0]);
  close(ready[1]);
  EXPECT_TRUE(PortLock::Claim(Ipv4("127.0.0.1", port)).ok());
}

TEST(PortLockTest, AnotherProgramListeningIsAddressAlreadyInUse) {
  uint16_t port = FreePort();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_storage address = Ipv4("127.0.0.1", port);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(sockaddr_in)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  absl::StatusOr<PortLock> lock = PortLock::Claim(address);
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().message(),
            absl::StrCat("cannot listen on 127.0.0.1:", port, ": Address already in use"));
  close(fd);
}

TEST(PortLockTest, PortZeroNeedsNoClaim) {
  EXPECT_TRUE(PortLock::Claim(Ipv4("127.0.0.1", 0)).ok());
  EXPECT_TRUE(PortLock::Claim(Ipv4("127.0.0.1", 0)).ok());
}

}  // namespace
}  // namespace sidecar::proxy
