#include "proxy/config/config_file_edit.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/config/config.h"

namespace sidecar::proxy {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
  }
  return lines;
}

// Expects `after` to be `before` with line `index` replaced by `line`.
void ExpectOnlyLineChanged(const std::string& before, const std::string& after, size_t index,
                           const std::string& line) {
  std::vector<std::string> expected = Lines(before);
  ASSERT_LT(index, expected.size());
  expected[index] = line;
  EXPECT_EQ(Lines(after), expected) << after;
  EXPECT_EQ(after.size() - before.size(),
            line.size() - Lines(before)[index].size());  // nothing else grew or shrank
}

std::string Edit(std::string_view text, Mode mode) {
  absl::StatusOr<std::string> out = SetModeInTomlText(text, mode);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

const char kCommented[] =
    "# tls-sidecar on node a\n"
    "[net]\n"
    "port = 27017   # public port\n"
    "\n"
    "[net.tls]\n"
    "  # mode = \"disabled\"   <- the old value\n"
    "  mode   =   \"allowTLS\"    # step 1 of the upgrade\n"
    "  certificateKeyFile = '/etc/s.pem'\n"
    "\n"
    "[[egress.peers]]\n"
    "listen = \"127.0.0.2:27017\"\n"
    "target = \"b:27017\"\n";

TEST(SetModeInTomlTextTest, ChangesOnlyTheValueKeepingCommentsAndSpacing) {
  std::string out = Edit(kCommented, Mode::kPreferTls);
  ExpectOnlyLineChanged(kCommented, out, 6,
                        "  mode   =   \"preferTLS\"    # step 1 of the upgrade");
  absl::StatusOr<Config> config = LoadConfigFromString(out, "s.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, Mode::kPreferTls);
}

TEST(SetModeInTomlTextTest, KeepsLiteralQuotesAndQuotedKeys) {
  const std::string literal = "[net.tls]\nmode='allowSSL'\n";
  ExpectOnlyLineChanged(literal, Edit(literal, Mode::kRequireTls), 1, "mode='requireTLS'");
  const std::string quoted_key = "[net.tls]\n\"mode\" = \"allowTLS\"\n";
  ExpectOnlyLineChanged(quoted_key, Edit(quoted_key, Mode::kDisabled), 1,
                        "\"mode\" = \"disabled\"");
  const std::string quoted_table = "[ \"net\" . 'tls' ]\nmode = \"allowTLS\"\n";
  ExpectOnlyLineChanged(quoted_table, Edit(quoted_table, Mode::kPreferTls), 1,
                        "mode = \"preferTLS\"");
}

TEST(SetModeInTomlTextTest, IgnoresLookalikesInStringsCommentsAndOtherTables) {
  const std::string text =
      "[notes]\n"
      "text = \"\"\"\n"
      "[net.tls]\n"
      "mode = \"disabled\"\n"
      "\"\"\"\n"
      "lit = '''mode = \"x\" '''\n"
      "[control]\n"
      "mode = \"allowTLS\"  # not net.tls\n"
      "[net.tls]\n"
      "CAFile = \"a#b.pem\" # mode = \"x\"\n"
      "mode = \"allowTLS\"\n"
      "array = [\n"
      "  \"mode = 1\", # comment ]\n"
      "]\n";
  ExpectOnlyLineChanged(text, Edit(text, Mode::kRequireTls), 10, "mode = \"requireTLS\"");
}

TEST(SetModeInTomlTextTest, InsertsUnderAnExistingHeader) {
  const std::string text = "[net]\nport = 1\n\n[net.tls]   # TLS\nCAFile = \"ca.pem\"\n";
  EXPECT_EQ(Edit(text, Mode::kAllowTls),
            "[net]\nport = 1\n\n[net.tls]   # TLS\nmode = \"allowTLS\"\nCAFile = \"ca.pem\"\n");
  // A header on the last line, without a newline.
  EXPECT_EQ(Edit("[net.tls]", Mode::kAllowTls), "[net.tls]\nmode = \"allowTLS\"\n");
}

TEST(SetModeInTomlTextTest, AddsTheTableWhenAbsent) {
  EXPECT_EQ(Edit("[net]\nport = 1", Mode::kPreferTls),
            "[net]\nport = 1\n\n[net.tls]\nmode = \"preferTLS\"\n");
  EXPECT_EQ(Edit("", Mode::kPreferTls), "[net.tls]\nmode = \"preferTLS\"\n");
}

TEST(SetModeInTomlTextTest, HandlesInlineTables) {
  const std::string with_mode = "[net]\ntls = { CAFile = \"ca.pem\", mode = \"allowTLS\" }\n";
  ExpectOnlyLineChanged(with_mode, Edit(with_mode, Mode::kPreferTls), 1,
                        "tls = { CAFile = \"ca.pem\", mode = \"preferTLS\" }");
  EXPECT_EQ(Edit("[net]\ntls = { CAFile = \"ca.pem\" }\n", Mode::kPreferTls),
            "[net]\ntls = { mode = \"preferTLS\", CAFile = \"ca.pem\" }\n");
  EXPECT_EQ(Edit("net = { port = 1, tls = {} }\n", Mode::kAllowTls),
            "net = { port = 1, tls = { mode = \"allowTLS\" } }\n");
  const std::string nested = "net = { tls = { mode = 'disabled' } }\n";
  ExpectOnlyLineChanged(nested, Edit(nested, Mode::kAllowTls), 0,
                        "net = { tls = { mode = 'allowTLS' } }");
}

TEST(SetModeInTomlTextTest, HandlesDottedKeys) {
  const std::string root = "net.tls.mode = \"allowTLS\"\nnet.port = 1\n";
  ExpectOnlyLineChanged(root, Edit(root, Mode::kRequireTls), 0, "net.tls.mode = \"requireTLS\"");
  EXPECT_EQ(Edit("[net]\ntls.CAFile = \"ca.pem\"\nport = 1\n", Mode::kAllowTls),
            "[net]\ntls.CAFile = \"ca.pem\"\ntls.mode = \"allowTLS\"\nport = 1\n");
  EXPECT_EQ(Edit("net.tls.CAFile = \"ca.pem\"\n", Mode::kAllowTls),
            "net.tls.CAFile = \"ca.pem\"\nnet.tls.mode = \"allowTLS\"\n");
}

TEST(SetModeInTomlTextTest, KeepsWindowsLineEndings) {
  const std::string text = "[net]\r\nport = 1\r\n[net.tls]\r\nmode = \"allowTLS\"\r\n";
  EXPECT_EQ(Edit(text, Mode::kPreferTls),
            "[net]\r\nport = 1\r\n[net.tls]\r\nmode = \"preferTLS\"\r\n");
  EXPECT_EQ(Edit("[net]\r\nport = 1\r\n", Mode::kPreferTls),
            "[net]\r\nport = 1\r\n\r\n[net.tls]\r\nmode = \"preferTLS\"\r\n");
}

TEST(SetModeInTomlTextTest, RefusesWhatItCannotEditSafely) {
  absl::StatusOr<std::string> out = SetModeInTomlText("[net\nport = 1\n", Mode::kAllowTls);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("does not parse as TOML (line 1"));
  // net is a string: there is no table to put the mode in.
  out = SetModeInTomlText("net = \"x\"\n", Mode::kAllowTls);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("edit the file by hand"));
  // [net.tls] as an array of tables.
  out = SetModeInTomlText("[[net.tls]]\nCAFile = \"x\"\n", Mode::kAllowTls);
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("edit the file by hand"));
}

// Positions come from the parser's source regions: columns count code points, so text
// before the value on the same line may be any UTF-8.
TEST(SetModeInTomlTextTest, FindsTheValueAfterMultiByteText) {
  const std::string text = "[net]\ntls = { CAFile = \"/etc/dépôt/ca.pem\", mode = 'allowTLS' }\n";
  ExpectOnlyLineChanged(text, Edit(text, Mode::kRequireTls), 1,
                        "tls = { CAFile = \"/etc/dépôt/ca.pem\", mode = 'requireTLS' }");
}

TEST(SetModeInTomlTextTest, AMultiLineStringValueBecomesABasicString) {
  EXPECT_EQ(Edit("[net.tls]\nmode = \"\"\"allowTLS\"\"\"\n", Mode::kPreferTls),
            "[net.tls]\nmode = \"preferTLS\"\n");
  EXPECT_EQ(Edit("[net.tls]\nmode = '''allowTLS'''\n", Mode::kPreferTls),
            "[net.tls]\nmode = \"preferTLS\"\n");
}

TEST(SetModeInTomlTextTest, InsertsAfterADottedKeysWholeValue) {
  EXPECT_EQ(
      Edit("[net]\ntls.allowedProtocols = [\n  \"TLS1_2\",\n]\nport = 1\n", Mode::kAllowTls),
      "[net]\ntls.allowedProtocols = [\n  \"TLS1_2\",\n]\ntls.mode = \"allowTLS\"\nport = 1\n");
  // On the last line, without a newline.
  EXPECT_EQ(Edit("net.tls.CAFile = \"ca.pem\"", Mode::kAllowTls),
            "net.tls.CAFile = \"ca.pem\"\nnet.tls.mode = \"allowTLS\"\n");
}

TEST(SetModeInTomlTextTest, ATableOnlyImpliedBySubtablesGetsItsOwnHeader) {
  EXPECT_EQ(Edit("[net.tls.extra]\na = 1\n", Mode::kAllowTls),
            "[net.tls.extra]\na = 1\n\n[net.tls]\nmode = \"allowTLS\"\n");
}

TEST(SetModeInTomlTextTest, InsertsUnderAHeaderWithWindowsLineEndings) {
  EXPECT_EQ(Edit("[net.tls] # TLS\r\nCAFile = \"ca.pem\"\r\n", Mode::kPreferTls),
            "[net.tls] # TLS\r\nmode = \"preferTLS\"\r\nCAFile = \"ca.pem\"\r\n");
}

TEST(SetModeInTomlTextTest, AHeaderInACommentIsNotTheTable) {
  const std::string text = "# [net.tls]\n# mode = \"x\"\n[net]\nport = 1\n";
  EXPECT_EQ(Edit(text, Mode::kAllowTls), text + "\n[net.tls]\nmode = \"allowTLS\"\n");
}

// A directory with one config file, removed at the end of the test.
class PersistModeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/persist_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    char resolved[PATH_MAX];
    ASSERT_NE(realpath(pattern.c_str(), resolved), nullptr);
    dir_ = resolved;
    path_ = dir_ + "/sidecar.toml";
  }
  void TearDown() override {
    chmod(dir_.c_str(), 0755);
    for (const std::string& name : Entries()) {
      unlink((dir_ + "/" + name).c_str());
    }
    rmdir(dir_.c_str());
  }
  void Write(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path, std::ios::binary) << text;
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
  }
  std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::vector<std::string> Entries() {
    std::vector<std::string> names;
    DIR* d = opendir(dir_.c_str());
    if (d == nullptr) {
      return names;
    }
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") {
        names.push_back(name);
      }
    }
    closedir(d);
    return names;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(PersistModeTest, RewritesAtomicallyKeepingPermissions) {
  Write(path_, kCommented, 0640);
  ASSERT_TRUE(PersistMode(path_, Mode::kRequireTls).ok());
  ExpectOnlyLineChanged(kCommented, Read(path_), 6,
                        "  mode   =   \"requireTLS\"    # step 1 of the upgrade");
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(Entries(), std::vector<std::string>{"sidecar.toml"});  // no temporary left
  absl::StatusOr<Mode> mode = ReadConfiguredMode(path_);
  ASSERT_TRUE(mode.ok());
  EXPECT_EQ(*mode, Mode::kRequireTls);
}

TEST_F(PersistModeTest, SameModeLeavesTheFileAlone) {
  Write(path_, kCommented, 0600);
  struct stat before;
  ASSERT_EQ(stat(path_.c_str(), &before), 0);
  ASSERT_TRUE(PersistMode(path_, Mode::kAllowTls).ok());
  struct stat after;
  ASSERT_EQ(stat(path_.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_EQ(Read(path_), kCommented);
}

TEST_F(PersistModeTest, EditsTheTargetOfASymlink) {
  const std::string target = dir_ + "/real.toml";
  Write(target, "[net.tls]\nmode = \"allowTLS\"\n", 0644);
  ASSERT_EQ(symlink("real.toml", path_.c_str()), 0);
  ASSERT_TRUE(PersistMode(path_, Mode::kPreferTls).ok());
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(Read(target), "[net.tls]\nmode = \"preferTLS\"\n");
}

TEST_F(PersistModeTest, MissingFileIsAClearError) {
  absl::Status status = PersistMode(path_, Mode::kAllowTls);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(path_));
  EXPECT_THAT(std::string(status.message()), HasSubstr("No such file or directory"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("the mode was not persisted"));
}

TEST_F(PersistModeTest, ReadOnlyDirectoryFailsAndLeavesTheOriginal) {
  Write(path_, kCommented, 0644);
  ASSERT_EQ(chmod(dir_.c_str(), 0555), 0);
  // Root ignores permission bits, so the attempt runs as an unprivileged user then.
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipe_fds[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
      _exit(3);
    }
    absl::Status status = PersistMode(path_, Mode::kRequireTls);
    std::string message(status.message());
    if (write(pipe_fds[1], message.data(), message.size()) < 0) {
      _exit(4);
    }
    _exit(status.ok() ? 0 : 1);
  }
  close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
    message.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 1) << message;
  EXPECT_THAT(message, HasSubstr("cannot create a temporary file in " + dir_));
  EXPECT_THAT(message, HasSubstr("Permission denied"));
  EXPECT_EQ(Read(path_), kCommented);
  EXPECT_EQ(Entries(), std::vector<std::string>{"sidecar.toml"});
}

}  // namespace
}  // namespace sidecar::proxy
