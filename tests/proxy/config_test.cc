#include "proxy/config/config.h"
#include "proxy/config/help_text.h"

#include "proxy/config/runtime_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sidecar::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::StatusOr<Config> Load(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"tls-sidecar"};
  for (const std::string& arg : args) {
    argv.push_back(arg.c_str());
  }
  return LoadConfig(static_cast<int>(argv.size()), argv.data());
}

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// A file in a fresh directory, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& contents, const std::string& name = "sidecar.toml") {
    std::string pattern = ::testing::TempDir() + "/config_test_XXXXXX";
    dir_ = mkdtemp(pattern.data());
    path_ = dir_ + "/" + name;
    std::ofstream(path_) << contents;
  }
  ~TempFile() {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

TEST(LoadConfigTest, DefaultsFollowTheSpec) {
  absl::StatusOr<Config> config = Load({});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->config_file, "");
  EXPECT_THAT(config->bind_ips, ElementsAre("127.0.0.1"));
  EXPECT_EQ(config->port, 27017);
  EXPECT_EQ(config->upstream.ToString(), "127.0.0.1:27018");
  EXPECT_EQ(config->threads, 0);
  EXPECT_EQ(config->mode, Mode::kDisabled);
  EXPECT_EQ(config->control_socket, DefaultControlSocketPath(27017));
  EXPECT_EQ(config->metrics_listen, "127.0.0.1:9442");
  EXPECT_EQ(config->max_connections, 65536);
  EXPECT_EQ(config->max_egress_connections, 4096);
  EXPECT_EQ(config->sniff_timeout_ms, 10000);
  EXPECT_EQ(config->handshake_timeout_ms, 10000);
  EXPECT_EQ(config->drain_seconds, 30);
  EXPECT_FALSE(config->tls.allow_connections_without_certificates);
  EXPECT_EQ(
      config->tls.disabled_protocols,
      (std::set<certs::TlsProtocol>{certs::TlsProtocol::kTls1_0, certs::TlsProtocol::kTls1_1}));
  EXPECT_TRUE(config->notices.empty());
  EXPECT_FALSE(config->watch_certificates);
}

TEST(LoadConfigTest, WatchCertificatesFromFlagOrFile) {
  absl::StatusOr<Config> by_flag = Load({"--watch-certificates"});
  ASSERT_TRUE(by_flag.ok()) << by_flag.status();
  EXPECT_TRUE(by_flag->watch_certificates);
  absl::StatusOr<Config> by_file =
      LoadConfigFromString("[net.tls]\nwatchCertificates = true\n", "s.toml");
  ASSERT_TRUE(by_file.ok()) << by_file.status();
  EXPECT_TRUE(by_file->watch_certificates);
  absl::StatusOr<Config> wrong_type =
      LoadConfigFromString("[net.tls]\nwatchCertificates = \"yes\"\n", "s.toml");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_THAT(std::string(wrong_type.status().message()),
              testing::HasSubstr("s.toml: net.tls.watchCertificates"));
}

TEST(LoadConfigTest, SeedMongodCommandLineParses) {
  absl::StatusOr<Config> config =
      Load({"--sslMode", "allowSSL", "--sslPEMKeyFile", "server.pem", "--sslCAFile", "ca.pem",
            "--replSet", "rs0", "--upstream", "127.0.0.1:27018"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, Mode::kAllowTls);
  EXPECT_EQ(config->tls.certificate_key_file, "server.pem");
  EXPECT_EQ(config->tls.ca_file, "ca.pem");
  EXPECT_EQ(config->upstream.host, "127.0.0.1");
  EXPECT_EQ(config->upstream.port, 27018);
  ASSERT_EQ(config->notices.size(), 1u);
  EXPECT_THAT(config->notices[0], StartsWith("--replSet rs0: a mongod option, ignored"));
}

TEST(LoadConfigTest, ControlSocketDefaultFollowsThePort) {
  absl::StatusOr<Config> config = Load({"--port", "28017"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->control_socket, DefaultControlSocketPath(28017));
}

// Each TLS flag in its --tls and --ssl spellings, as `--flag value` and `--flag=value`.
struct FlagCase {
  std::string tls_flag;
  std::string ssl_flag;
  std::string value;  // "" for a switch
  std::function<bool(const Config&)> check;
};

TEST(LoadConfigTest, TlsFlagsAcceptBothSpellingsAndBothForms) {
  const std::vector<FlagCase> cases = {
      {"--tlsCertificateKeyFile", "--sslPEMKeyFile", "k.pem",
       [](const Config& c) { return c.tls.certificate_key_file == "k.pem"; }},
      {"--tlsCertificateKeyFilePassword", "--sslPEMKeyPassword", "secret",
       [](const Config& c) { return c.tls.certificate_key_file_password == "secret"; }},
      {"--tlsCAFile", "--sslCAFile", "ca.pem",
       [](const Config& c) { return c.tls.ca_file == "ca.pem"; }},
      {"--tlsClusterFile", "--sslClusterFile", "cluster.pem",
       [](const Config& c) { return c.tls.cluster_file == "cluster.pem"; }},
      {"--tlsClusterCAFile", "--sslClusterCAFile", "cca.pem",
       [](const Config& c) { return c.tls.cluster_ca_file == "cca.pem"; }},
      {"--tlsAllowInvalidCertificates", "--sslAllowInvalidCertificates", "",
       [](const Config& c) { return c.tls.allow_invalid_certificates; }},
      {"--tlsAllowInvalidHostnames", "--sslAllowInvalidHostnames", "",
       [](const Config& c) { return c.tls.allow_invalid_hostnames; }},
      {"--tlsDisabledProtocols", "--sslDisabledProtocols", "TLS1_0,TLS1_1,TLS1_2",
       [](const Config& c) {
         return c.tls.disabled_protocols ==
                std::set<certs::TlsProtocol>{certs::TlsProtocol::kTls1_0,
                                             certs::TlsProtocol::kTls1_1,
                                             certs::TlsProtocol::kTls1_2};
       }},
      {"--tlsMode", "--sslMode", "preferSSL",
       [](const Config& c) { return c.mode == Mode::kPreferTls; }},
  };
  for (const FlagCase& test : cases) {
    for (const std::string& flag : {test.tls_flag, test.ssl_flag}) {
      std::vector<std::vector<std::string>> forms;
      if (test.value.empty()) {
        forms = {{flag}, {flag + "=true"}};
      } else {
        forms = {{flag, test.value}, {flag + "=" + test.value}};
      }
      for (std::vector<std::string> args : forms) {
        // Modes other than disabled need a certificate.
        if (flag != "--tlsCertificateKeyFile" && flag != "--sslPEMKeyFile") {
          args.insert(args.end(), {"--tlsCertificateKeyFile", "server.pem"});
        }
        absl::StatusOr<Config> config = Load(args);
        ASSERT_TRUE(config.ok()) << args[0] << ": " << config.status();
        EXPECT_TRUE(test.check(*config)) << args[0];
      }
    }
  }
}

TEST(LoadConfigTest, SelectorFlagsAcceptBothSpellings) {
  for (std::string prefix : {"--tls", "--ssl"}) {
    absl::StatusOr<Config> config = Load(
        {prefix + "CertificateSelector", "subject=node1", prefix + "ClusterCertificateSelector",
         "thumbprint=0123456789abcdef0123456789ABCDEF01234567", "--certificate-store", "/etc/store",
         prefix + "Mode", "requireTLS", prefix + "CRLFile", "crl.pem", prefix + "CAFile=ca.pem",
         prefix + "AllowConnectionsWithoutCertificates"});
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->tls.certificate_selector, "subject=node1");
    EXPECT_EQ(config->tls.cluster_certificate_selector,
              "thumbprint=0123456789abcdef0123456789ABCDEF01234567");
    EXPECT_EQ(config->tls.certificate_store, "/etc/store");
    EXPECT_EQ(config->tls.crl_file, "crl.pem");
    EXPECT_EQ(config->mode, Mode::kRequireTls);
  }
}

TEST(LoadConfigTest, NetworkAndOtherFlags) {
  absl::StatusOr<Config> config =
      Load({"--bind_ip", "10.0.0.5, ::1", "--port=27019", "--upstream", "[::1]:27018",
            "--control-socket", "/run/s.sock", "--metrics", "", "--threads", "4", "--maxConns",
            "100", "--maxEgressConns", "7", "-vv", "--upstream-proxy-protocol", "2"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->bind_ips, ElementsAre("10.0.0.5", "::1"));
  EXPECT_EQ(config->port, 27019);
  EXPECT_EQ(config->upstream.host, "::1");
  EXPECT_EQ(config->upstream.ToString(), "[::1]:27018");
  EXPECT_EQ(config->control_socket, "/run/s.sock");
  EXPECT_EQ(config->metrics_listen, "");
  EXPECT_EQ(config->threads, 4);
  EXPECT_EQ(config->max_connections, 100);
  EXPECT_EQ(config->max_egress_connections, 7);
  EXPECT_EQ(config->verbosity, 2);
  EXPECT_EQ(config->upstream_proxy_protocol, 2);

  config = Load({"--bind_ip_all", "--tlsDisabledProtocols", "none"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->bind_ips, ElementsAre("0.0.0.0"));
  EXPECT_TRUE(config->tls.disabled_protocols.empty());
}

TEST(LoadConfigTest, HarmlessMongodFlagsBecomeNotices) {
  absl::StatusOr<Config> config =
      Load({"--replSet", "rs0", "--dbpath", "/data/db", "--fork", "--logpath=/var/log/m.log",
            "--auth", "--keyFile", "/etc/key", "--oplogSize", "50", "--wiredTigerCacheSizeGB", "1",
            "--setParameter", "a=1", "--setParameter", "b=2", "--ipv6", "--quiet"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->notices.size(), 12u);
  EXPECT_THAT(config->notices[1], StartsWith("--dbpath /data/db: "));
  EXPECT_THAT(config->notices[2], StartsWith("--fork: "));
}

TEST(LoadConfigTest, NoticesNeverEchoPasswords) {
  absl::StatusOr<Config> config = Load({"--tlsClusterPassword", "hunter2"});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->notices.size(), 1u);
  EXPECT_THAT(config->notices[0], StartsWith("--tlsClusterPassword (value hidden): "));
  EXPECT_THAT(config->notices[0], ::testing::Not(HasSubstr("hunter2")));
}

TEST(LoadConfigTest, OldRequireSslSwitchMeansRequireTls) {
  absl::StatusOr<Config> config = Load({"--sslOnNormalPorts", "--sslPEMKeyFile", "s.pem"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, Mode::kRequireTls);
}

struct ErrorCase {
  std::vector<std::string> args;
  std::string message;  // exact, or a prefix when it ends with "..."
};

void ExpectError(const absl::StatusOr<Config>& config, const std::string& expected,
                 const std::string& context) {
  ASSERT_FALSE(config.ok()) << context;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << context;
  if (expected.size() > 3 && expected.substr(expected.size() - 3) == "...") {
    EXPECT_THAT(Message(config.status()), StartsWith(expected.substr(0, expected.size() - 3)))
        << context;
  } else {
    EXPECT_EQ(Message(config.status()), expected) << context;
  }
}

TEST(LoadConfigTest, FlagErrorsNameTheFlag) {
  const std::vector<ErrorCase> cases = {
      {{"--port", "abc"}, "--port: expected an integer, got \"abc\""},
      {{"--port=0"}, "--port: must be between 1 and 65535, got 0"},
      {{"--port", "65536"}, "--port: must be between 1 and 65535, got 65536"},
      {{"--threads", "-1"}, "--threads: must be between 0 and 1024, got -1"},
      {{"--port"}, "--port: needs a value"},
      {{"--upstream", "--port", "1"}, "--upstream: needs a value (write --upstream=VALUE..."},
      {{"--sslMode", "requireSLL"},
       "--sslMode: unknown mode \"requireSLL\"; valid modes are disabled, allowTLS, preferTLS, "
       "requireTLS (or allowSSL, preferSSL, requireSSL)"},
      {{"--tlsMode", "allowTLS"},
       "--tlsMode: mode allowTLS needs a certificate: set net.tls.certificateKeyFile "
       "(--tlsCertificateKeyFile) or net.tls.certificateSelector (--tlsCertificateSelector)"},
      {{"--bogus"}, "--bogus: unknown flag; see tls-sidecar --help"},
      {{"--tlsmode", "allowTLS"},
       "--tlsmode: unknown flag; did you mean --tlsMode? see tls-sidecar --help"},
      {{"-x"}, "-x: unknown flag; see tls-sidecar --help"},
      {{"allowTLS"},
       "unexpected argument \"allowTLS\"; flags start with -- (see tls-sidecar --help)"},
      {{"--tlsAllowInvalidCertificates=yes"},
       "--tlsAllowInvalidCertificates: is a switch and takes no value (got \"yes\")"},
      {{"--tlsMode", "disabled", "--sslMode", "disabled"}, "--sslMode: conflicts with --tlsMode"},
      {{"--port", "1", "--port", "2"}, "--port: given more than once"},
      {{"--upstream", "::1:27018"}, "--upstream: IPv6 addresses need brackets..."},
      {{"--upstream", "mongod"},
       "--upstream: expected host:port (e.g. 127.0.0.1:27018 or [::1]:27018), got \"mongod\""},
      {{"--upstream", "host:99999"},
       "--upstream: invalid port \"99999\" in \"host:99999\"; expected 1 to 65535"},
      {{"--metrics", "9442"}, "--metrics: expected host:port..."},
      {{"--tlsDisabledProtocols", "TLS1_4"},
       "--tlsDisabledProtocols: unknown protocol \"TLS1_4\"; valid names are TLS1_0, TLS1_1, "
       "TLS1_2, TLS1_3, or \"none\""},
      {{"--sslDisabledProtocols", "TLS1_0,TLS1_1,TLS1_2,TLS1_3"},
       "--sslDisabledProtocols: disables every TLS version; at least one must remain"},
      {{"--tlsCRLFile", "crl.pem"},
       "--tlsCRLFile: needs a CA file (net.tls.CAFile, --tlsCAFile)..."},
      {{"--tlsCertificateSelector", "subject=node1", "--tlsCertificateKeyFile", "k.pem",
        "--certificate-store", "/s"},
       "--tlsCertificateSelector: cannot be used together with a certificate key file "
       "(--tlsCertificateKeyFile); choose one"},
      {{"--sslClusterCertificateSelector", "subject=node1", "--sslClusterFile", "c.pem",
        "--certificate-store", "/s"},
       "--sslClusterCertificateSelector: cannot be used together with a cluster file "
       "(--sslClusterFile); choose one"},
      {{"--tlsCertificateSelector", "subject=node1"},
       "--tlsCertificateSelector: needs a certificate store to search..."},
      {{"--tlsCertificateSelector", "thumbprint=abc", "--certificate-store", "/s"},
       "--tlsCertificateSelector: \"thumbprint=abc\": a thumbprint is the SHA-1 of the "
       "certificate, 40 hex digits"},
      {{"--tlsCertificateSelector", "cn=node1"},
       "--tlsCertificateSelector: \"cn=node1\": expected \"subject=<CN or DN>\" or "
       "\"thumbprint=<SHA-1 hex>\""},
      {{"--control-socket", "/tmp/" + std::string(120, 'x')},
       "--control-socket: is 125 bytes long; a UNIX socket path must be under 108"},
      {{"--config", "/nonexistent/sidecar.toml"},
       "/nonexistent/sidecar.toml: not found"},
      {{"--replSet"}, "--replSet: needs a value"},
  };
  for (const ErrorCase& test : cases) {
    ExpectError(Load(test.args), test.message, test.args[0]);
  }
}

struct FileErrorCase {
  std::string toml;
  std::string message;  // after "s.toml: "; a prefix when it ends with "..."
};

TEST(LoadConfigFromStringTest, ANulByteInAPathIsAnErrorNotACutPath) {
  // TOML's \u0000 would otherwise reach open() and name another file than the one written.
  for (std::string_view toml : {"[net.tls]\ncertificateKeyFile = \"/etc/server.pem\\u0000.bak\"\n",
                                "[net.tls]\nCAFile = \"/etc/ca.pem\\u0000\"\n",
                                "[control]\nsocket = \"/run/x.sock\\u0000y\"\n",
                                "[net]\nbindIp = [\"127.0.0.1\\u0000\"]\n"}) {
    absl::StatusOr<Config> config = LoadConfigFromString(toml, "s.toml");
    ASSERT_FALSE(config.ok()) << toml;
    EXPECT_NE(config.status().message().find("holds a NUL byte"), std::string_view::npos)
        << config.status().message();
    EXPECT_EQ(config.status().message().rfind("s.toml: ", 0), 0u) << config.status().message();
  }
}

TEST(LoadConfigFromStringTest, FileErrorsNameFileAndKey) {
  const std::vector<FileErrorCase> cases = {
      {"[net]\nprot = 1\n", "net.prot: unknown key; did you mean net.port?"},
      {"[nett]\nport = 1\n", "nett: unknown table; did you mean net?"},
      {"[net.tsl]\n", "net.tsl: unknown table; did you mean net.tls?"},
      {"colour = 1\n", "colour: unknown key"},
      {"[net]\nport = \"27017\"\n", "net.port: expected an integer, got a string"},
      {"[net]\nport = 70000\n", "net.port: must be between 1 and 65535, got 70000"},
      {"[net]\nport = 1.5\n", "net.port: expected an integer, got a floating-point number"},
      {"net = 1\n", "net: expected a table, got an integer"},
      {"[net]\nbindIp = [1]\n", "net.bindIp: expected an array of strings, found an integer in it"},
      {"[net]\nbindIp = []\n", "net.bindIp: needs at least one address"},
      {"[net]\nupstream = \"localhost\"\n",
       "net.upstream: expected host:port (e.g. 127.0.0.1:27018 or [::1]:27018), got \"localhost\""},
      {"[net]\nthreads = 5000\n", "net.threads: must be between 0 and 1024, got 5000"},
      {"[net]\nupstreamProxyProtocol = 3\n",
       "net.upstreamProxyProtocol: must be between 0 and 2, got 3"},
      {"[net.tls]\nmode = \"requireTSL\"\n",
       "net.tls.mode: unknown mode \"requireTSL\"; valid modes are..."},
      {"[net.tls]\nmode = \"preferTLS\"\n",
       "net.tls.mode: mode preferTLS needs a certificate: set net.tls.certificateKeyFile..."},
      {"[net.tls]\nCAFile = \"\"\nCRLFile = \"crl.pem\"\n", "net.tls.CRLFile: needs a CA file..."},
      {"[net.tls]\ncertificateSelector = \"subject=a\"\ncertificateKeyFile = \"k.pem\"\n"
       "certificateStore = \"/s\"\n",
       "net.tls.certificateSelector: cannot be used together with a certificate key file "
       "(s.toml: net.tls.certificateKeyFile); choose one"},
      {"[net.tls]\nclusterCertificateSelector = \"subject=a\"\n",
       "net.tls.clusterCertificateSelector: needs a certificate store to search..."},
      {"[net.tls]\nPEMKeyFile = \"a.pem\"\ncertificateKeyFile = \"b.pem\"\n",
       "net.tls.certificateKeyFile: set twice (net.tls.certificateKeyFile and its alias "
       "net.tls.PEMKeyFile are the same setting)"},
      {"[net.tls]\nallowInvalidCertificates = \"yes\"\n",
       "net.tls.allowInvalidCertificates: expected a boolean (true or false), got a string"},
      {"[net.tls]\ndisabledProtocols = [\"TLS1_0\", \"SSL3\"]\n",
       "net.tls.disabledProtocols: unknown protocol \"SSL3\"..."},
      {"[net.tls]\ndisabledProtocols = \"none,TLS1_0\"\n",
       "net.tls.disabledProtocols: \"none\" cannot be combined with protocol names"},
      {"[[egress.peers]]\nlisten = \"127.0.0.2:27017\"\n",
       "egress.peers[0]: needs both listen (where mongod dials) and target (the peer's sidecar); "
       "target is missing"},
      {"[[egress.peers]]\nlisten = \"127.0.0.2:27017\"\ntarget = \"b:27017\"\nport = 1\n",
       "egress.peers[0].port: unknown key (a peer has listen and target)"},
      {"[[egress.peers]]\nlisten = \"127.0.0.2:27017\"\ntarget = \"b:27017\"\n"
       "[[egress.peers]]\nlisten = \"127.0.0.2:27017\"\ntarget = \"c:27017\"\n",
       "egress.peers[1].listen: 127.0.0.2:27017 is already the listen address of egress.peers[0]"},
      {"[[egress.peers]]\nlisten = \"127.0.0.2:27017\"\ntarget = \"b\"\n",
       "egress.peers[0].target: expected host:port..."},
      {"[egress]\npeers = 1\n",
       "egress.peers: expected an array of tables ([[egress.peers]]), got an integer"},
      {"[egress.transparent]\nlisten = \"15001\"\n",
       "egress.transparent.listen: expected host:port..."},
      {"[control]\nsocket = \"\"\n", "control.socket: must not be empty"},
      {"[metrics]\nlisten = \"localhost\"\n", "metrics.listen: expected host:port..."},
      {"[limits]\nmaxConnections = 0\n",
       "limits.maxConnections: must be between 1 and 16777216, got 0"},
      {"[limits]\nsniffTimeoutMs = -5\n",
       "limits.sniffTimeoutMs: must be between 1 and 3600000, got -5"},
      {"[limits]\nmaxConnection = 5\n",
       "limits.maxConnection: unknown key; did you mean limits.maxConnections?"},
      {"[net]\nport = = 1\n", "line 2, column 8: ..."},
      {"[net]\n\n\nport = \"unterminated\n", "line 4..."},
  };
  for (const FileErrorCase& test : cases) {
    ExpectError(LoadConfigFromString(test.toml, "s.toml"), "s.toml: " + test.message, test.toml);
  }
}

TEST(LoadConfigFromStringTest, SpecExampleLoadsCompletely) {
  const std::string toml = R"(
[net]
bindIp = "127.0.0.1, 10.0.0.5"  # comma-separated or array
port = 27017
upstream = "127.0.0.1:27018"
threads = 2
upstreamProxyProtocol = 1

[net.tls]
mode = "allowSSL"
PEMKeyFile = "/etc/tls-sidecar/server.pem"
PEMKeyPassword = "pw"
CAFile = "/etc/tls-sidecar/ca.pem"
CRLFile = "/etc/tls-sidecar/crl.pem"
clusterFile = "/etc/tls-sidecar/cluster.pem"
clusterCAFile = "/etc/tls-sidecar/cluster-ca.pem"
certificateSelector = ""
clusterCertificateSelector = ""
certificateStore = ""
allowConnectionsWithoutCertificates = false
allowInvalidCertificates = true
allowInvalidHostnames = true
disabledProtocols = ["TLS1_0", "TLS1_1", "TLS1_2"]

[[egress.peers]]
listen = "127.0.0.2:27017"
target = "mongo-b.example.net:27017"

[[egress.peers]]
listen = "127.0.0.3:27017"
target = "[fd00::3]:27017"

[egress.transparent]
listen = "127.0.0.1:15001"

[control]
socket = "/run/tls-sidecar.sock"

[metrics]
listen = "0.0.0.0:9442"

[limits]
maxConnections = 1000
maxEgressConnections = 50
sniffTimeoutMs = 5000
handshakeTimeoutMs = 6000
drainSeconds = 7
)";
  absl::StatusOr<Config> config = LoadConfigFromString(toml, "/etc/tls-sidecar/sidecar.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->config_file, "/etc/tls-sidecar/sidecar.toml");
  EXPECT_THAT(config->bind_ips, ElementsAre("127.0.0.1", "10.0.0.5"));
  EXPECT_EQ(config->threads, 2);
  EXPECT_EQ(config->upstream_proxy_protocol, 1);
  EXPECT_EQ(config->mode, Mode::kAllowTls);
  EXPECT_EQ(config->tls.certificate_key_file, "/etc/tls-sidecar/server.pem");
  EXPECT_EQ(config->tls.certificate_key_file_password, "pw");
  EXPECT_EQ(config->tls.ca_file, "/etc/tls-sidecar/ca.pem");
  EXPECT_EQ(config->tls.crl_file, "/etc/tls-sidecar/crl.pem");
  EXPECT_EQ(config->tls.cluster_file, "/etc/tls-sidecar/cluster.pem");
  EXPECT_EQ(config->tls.cluster_ca_file, "/etc/tls-sidecar/cluster-ca.pem");
  EXPECT_FALSE(config->tls.allow_connections_without_certificates);
  EXPECT_TRUE(config->tls.allow_invalid_certificates);
  EXPECT_TRUE(config->tls.allow_invalid_hostnames);
  EXPECT_EQ(config->tls.disabled_protocols.size(), 3u);
  ASSERT_EQ(config->egress_peers.size(), 2u);
  EXPECT_EQ(config->egress_peers[0].listen.ToString(), "127.0.0.2:27017");
  EXPECT_EQ(config->egress_peers[0].target.ToString(), "mongo-b.example.net:27017");
  EXPECT_EQ(config->egress_peers[1].target.host, "fd00::3");
  ASSERT_TRUE(config->egress_transparent_listen.has_value());
  EXPECT_EQ(config->egress_transparent_listen->port, 15001);
  EXPECT_EQ(config->control_socket, "/run/tls-sidecar.sock");
  EXPECT_EQ(config->metrics_listen, "0.0.0.0:9442");
  EXPECT_EQ(config->max_connections, 1000);
  EXPECT_EQ(config->max_egress_connections, 50);
  EXPECT_EQ(config->sniff_timeout_ms, 5000);
  EXPECT_EQ(config->handshake_timeout_ms, 6000);
  EXPECT_EQ(config->drain_seconds, 7);
}

TEST(LoadConfigFromStringTest, DottedKeysAndInlineTablesAreTheSameKeys) {
  absl::StatusOr<Config> config = LoadConfigFromString(
      "net.port = 27020\nnet.tls = { mode = \"disabled\", CAFile = \"ca.pem\" }\n", "s.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->port, 27020);
  EXPECT_EQ(config->tls.ca_file, "ca.pem");
  EXPECT_EQ(config->control_socket, DefaultControlSocketPath(27020));
}

TEST(LoadConfigTest, FlagsOverrideTheFile) {
  TempFile file(
      "[net]\nport = 27100\nbindIp = [\"10.1.1.1\"]\n[net.tls]\nmode = \"allowTLS\"\n"
      "certificateKeyFile = \"file.pem\"\n");
  absl::StatusOr<Config> config = Load(
      {"--sslMode", "requireSSL", "--config", file.path(), "--tlsCertificateKeyFile", "flag.pem"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->config_file, file.path());
  EXPECT_EQ(config->port, 27100);
  EXPECT_THAT(config->bind_ips, ElementsAre("10.1.1.1"));
  EXPECT_EQ(config->mode, Mode::kRequireTls);
  EXPECT_EQ(config->tls.certificate_key_file, "flag.pem");
  EXPECT_EQ(config->control_socket, DefaultControlSocketPath(27100));
}

TEST(LoadConfigTest, CombinationErrorsNameWhereEachSideCameFrom) {
  TempFile file("[net.tls]\ncertificateSelector = \"subject=node1\"\ncertificateStore = \"/s\"\n");
  ExpectError(Load({"--config=" + file.path(), "--tlsCertificateKeyFile", "k.pem"}),
              file.path() +
                  ": net.tls.certificateSelector: cannot be used together with a certificate "
                  "key file (--tlsCertificateKeyFile); choose one",
              "selector in file, key file on the command line");

  TempFile mode_only("[net.tls]\nmode = \"requireTLS\"\n");
  ExpectError(Load({"--config", mode_only.path()}),
              mode_only.path() + ": net.tls.mode: mode requireTLS needs a certificate...",
              "mode in file without certificate");
}

TEST(LoadConfigTest, FileErrorsFromLoadConfigNameTheFile) {
  TempFile file("[net]\nport = 0\n");
  ExpectError(Load({"--config", file.path()}),
              file.path() + ": net.port: must be between 1 and 65535, got 0", "port 0");
}

TEST(ReadConfiguredModeTest, ReadsOnlyTheMode) {
  TempFile prefer("[net.tls]\nmode = \"preferSSL\"\n[net]\nunknownKeyIsNotChecked = 1\n");
  absl::StatusOr<Mode> mode = ReadConfiguredMode(prefer.path());
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_EQ(*mode, Mode::kPreferTls);

  TempFile absent("[net]\nport = 27017\n");
  mode = ReadConfiguredMode(absent.path());
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_EQ(*mode, Mode::kDisabled);

  TempFile bad("[net.tls]\nmode = \"sometimes\"\n");
  mode = ReadConfiguredMode(bad.path());
  ASSERT_FALSE(mode.ok());
  EXPECT_THAT(Message(mode.status()), StartsWith(bad.path() + ": net.tls.mode: unknown mode"));

  mode = ReadConfiguredMode("/nonexistent.toml");
  ASSERT_FALSE(mode.ok());
  EXPECT_EQ(Message(mode.status()), "/nonexistent.toml: not found");
}

TEST(ParseHostPortTest, SplitsHostsAndBracketedIpv6) {
  absl::StatusOr<HostPort> hp = ParseHostPort("mongo-b.example.net:27017", "x");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "mongo-b.example.net");
  EXPECT_EQ(hp->port, 27017);
  hp = ParseHostPort("[fe80::1%eth0]:1", "x");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "fe80::1%eth0");
  EXPECT_EQ(hp->ToString(), "[fe80::1%eth0]:1");
  for (const char* bad : {"", ":27017", "host:", "host", "[::1]27017", "[::1:27017", "a b:1",
                          "host:0", "host:-1", "host:+1"}) {
    EXPECT_FALSE(ParseHostPort(bad, "net.upstream").ok()) << bad;
  }
  EXPECT_THAT(Message(ParseHostPort("host", "net.upstream").status()),
              StartsWith("net.upstream: expected host:port"));
}

TEST(HelpTextTest, ListsEveryFlagAndThePointersToMore) {
  const std::string help = HelpText();
  for (const char* flag : {"--tlsMode",
                           "--sslMode",
                           "--tlsCertificateKeyFile",
                           "--sslPEMKeyFile",
                           "--tlsCertificateKeyFilePassword",
                           "--sslPEMKeyPassword",
                           "--tlsCAFile",
                           "--sslCAFile",
                           "--tlsCRLFile",
                           "--sslCRLFile",
                           "--tlsClusterFile",
                           "--sslClusterFile",
                           "--tlsClusterCAFile",
                           "--sslClusterCAFile",
                           "--tlsCertificateSelector",
                           "--sslCertificateSelector",
                           "--tlsClusterCertificateSelector",
                           "--sslClusterCertificateSelector",
                           "--tlsAllowConnectionsWithoutCertificates",
                           "--sslAllowConnectionsWithoutCertificates",
                           "--tlsAllowInvalidCertificates",
                           "--sslAllowInvalidCertificates",
                           "--tlsAllowInvalidHostnames",
                           "--sslAllowInvalidHostnames",
                           "--tlsDisabledProtocols",
                           "--sslDisabledProtocols",
                           "--bind_ip ",
                           "--bind_ip_all",
                           "--port",
                           "--upstream",
                           "--config",
                           "--control-socket",
                           "--metrics",
                           "--threads",
                           "--maxConns",
                           "--maxEgressConns",
                           "--certificate-store",
                           "--replSet",
                           "--help",
                           "--version",
                           "tls-sidecar ctl --help",
                           "tls-sidecar certs init",
                           "[net.tls]",
                           "[[egress.peers]]",
                           "[limits]",
                           "<runtime dir>/<port>.sock",
                           "127.0.0.1:9442"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  // Readable in an 80-column terminal.
  size_t start = 0;
  while (start < help.size()) {
    size_t end = help.find('\n', start);
    if (end == std::string::npos) {
      end = help.size();
    }
    EXPECT_LE(end - start, 80u) << help.substr(start, end - start);
    start = end + 1;
  }
}

TEST(HelpTextTest, ListsEveryKeyTheFileAcceptsWithItsDefault) {
  const std::string help = HelpText();
  const std::vector<std::string> keys = ConfigurationKeys();
  // The list comes from the loader's table; a few known keys guard against an empty one.
  EXPECT_THAT(keys, ::testing::IsSupersetOf({"net.tls.mode", "egress.transparent.mark",
                                             "limits.drainSeconds", "net.tls.PEMKeyFile"}));
  for (const std::string& key : keys) {
    EXPECT_THAT(help, HasSubstr(key)) << "--help does not name " << key;
    // Every key is accepted by the loader: a file setting it is at worst a wrong value,
    // never an unknown key.
    std::string table = key.substr(0, key.rfind('.'));
    std::string leaf = key.substr(key.rfind('.') + 1);
    auto config = LoadConfigFromString(absl::StrCat("[", table, "]\n", leaf, " = []\n"), "k.toml");
    if (!config.ok()) {
      EXPECT_THAT(Message(config.status()), ::testing::Not(HasSubstr("unknown"))) << key;
    }
  }
  EXPECT_THAT(help, HasSubstr("egress.transparent.mark\n        SO_MARK"));
  EXPECT_THAT(help, HasSubstr("default: 0x5ec"));
  EXPECT_THAT(help, HasSubstr("net.tls.allowConnectionsWithoutCertificates\n"));
}

TEST(ConfigTest, ClientCertificatesAreRequiredByDefaultAsInMongod) {
  auto config = Load({"--tlsMode", "allowTLS", "--tlsCertificateKeyFile", "server.pem",
                      "--tlsCAFile", "ca.pem"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->tls.allow_connections_without_certificates);
  auto allowed = Load({"--tlsMode", "allowTLS", "--tlsCertificateKeyFile", "server.pem",
                       "--tlsCAFile", "ca.pem", "--tlsAllowConnectionsWithoutCertificates"});
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_TRUE(allowed->tls.allow_connections_without_certificates);
  EXPECT_EQ(allowed->Origin("net.tls.allowConnectionsWithoutCertificates"),
            "--tlsAllowConnectionsWithoutCertificates");
  EXPECT_EQ(allowed->Origin("net.tls.CAFile"), "--tlsCAFile");
  EXPECT_EQ(allowed->Origin("metrics.listen"), "metrics.listen");
}

}  // namespace
}  // namespace sidecar::proxy
