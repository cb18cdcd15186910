#include "proxy/config/runtime_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

TEST(RuntimeDirectoryTest, SystemdsRuntimeDirectoryComesFirst) {
  RuntimeEnvironment env;
  env.runtime_directory = "/run/sidecar-a:/run/other";
  env.xdg_runtime_dir = "/run/user/1000";
  env.euid = 1000;
  EXPECT_EQ(RuntimeDirectoryFor(env), "/run/sidecar-a");
  env.euid = 0;
  EXPECT_EQ(RuntimeDirectoryFor(env), "/run/sidecar-a");
}

TEST(RuntimeDirectoryTest, RootUsesRunThenUsersTheirXdgRuntimeDirThenTheirHome) {
  RuntimeEnvironment env;
  env.xdg_runtime_dir = "/run/user/1000";
  env.home = "/home/op";
  env.euid = 0;
  EXPECT_EQ(RuntimeDirectoryFor(env), "/run/tls-sidecar");
  env.euid = 1000;
  EXPECT_EQ(RuntimeDirectoryFor(env), "/run/user/1000/tls-sidecar");
  env.xdg_runtime_dir.reset();
  EXPECT_EQ(RuntimeDirectoryFor(env), "/home/op/.tls-sidecar");
}

TEST(RuntimeDirectoryTest, NeverAFixedNameInTmp) {
  RuntimeEnvironment env;
  for (uid_t uid : {0u, 1000u}) {
    env.euid = uid;
    EXPECT_FALSE(RuntimeDirectoryFor(env).starts_with("/tmp")) << uid;
  }
}

TEST(RuntimeDirectoryTest, TheDefaultSocketIsNamedAfterThePort) {
  ASSERT_EQ(setenv("RUNTIME_DIRECTORY", "/run/unit-dir", 1), 0);
  EXPECT_EQ(DefaultControlSocketPath(27017), "/run/unit-dir/27017.sock");
  ASSERT_EQ(unsetenv("RUNTIME_DIRECTORY"), 0);
}

class PrepareRuntimeDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/runtime_dir_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    parent_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(parent_); }

  static mode_t ModeOf(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(lstat(path.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  std::string parent_;
};

TEST_F(PrepareRuntimeDirectoryTest, CreatesAMissingDirectoryClosedToOthers) {
  std::string dir = parent_ + "/tls-sidecar";
  ASSERT_TRUE(PrepareRuntimeDirectory(dir).ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
  // Again: an existing directory of ours is fine as it is.
  ASSERT_TRUE(PrepareRuntimeDirectory(dir).ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
}

TEST_F(PrepareRuntimeDirectoryTest, ClosesOneOfOursThatOthersCouldWriteOrRead) {
  std::string dir = parent_ + "/tls-sidecar";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  ASSERT_TRUE(PrepareRuntimeDirectory(dir).ok());
  EXPECT_EQ(ModeOf(dir), 0750u);
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);  // systemd's RuntimeDirectoryMode= default
  ASSERT_TRUE(PrepareRuntimeDirectory(dir).ok());
  EXPECT_EQ(ModeOf(dir), 0750u);
}

TEST_F(PrepareRuntimeDirectoryTest, RefusesASymbolicLinkOrAFile) {
  std::string target = parent_ + "/elsewhere";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  std::string link = parent_ + "/tls-sidecar";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  absl::Status status = PrepareRuntimeDirectory(link);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("not a directory"));
}

TEST_F(PrepareRuntimeDirectoryTest, RefusesADirectoryOfAnotherUser) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root to make a directory that belongs to another user";
  }
  std::string dir = parent_ + "/tls-sidecar";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(chown(dir.c_str(), 65534, 65534), 0);
  absl::Status status = PrepareRuntimeDirectory(dir);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("belongs to uid 65534"));
}

}  // namespace
}  // namespace sidecar::proxy
