// The one host:port parser, under each caller's rules: configuration (strict), the hosts a
// replica set advertises (a bare host is port 27017), and a peer's address without its port.
#include "proxy/base/host_port.h"

#include <gtest/gtest.h>

#include "proxy/observe/client_registry.h"

namespace sidecar::proxy {
namespace {

TEST(HostPortTest, ConfigurationNeedsAPortAndBracketsAroundIpv6) {
  for (const char* bad : {"host", "::1:27017", "[::1]", "[::1]27017", "h:0", ":27017", "h:x"}) {
    EXPECT_FALSE(ParseHostPortBare(bad, /*allow_port_zero=*/false).ok()) << bad;
  }
  EXPECT_TRUE(ParseHostPortBare("h:0", /*allow_port_zero=*/true).ok());
  EXPECT_NE(ParseHostPortBare("::1:27017", false).status().message().find("need brackets"),
            std::string::npos);
}

TEST(HostPortTest, AdvertisedHostsDefaultToPort27017) {
  HostPortRules advertised{.default_port = 27017};
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  } cases[] = {
      {"node-a:27018", "node-a", 27018}, {"node-a", "node-a", 27017},   {"[::1]:5", "::1", 5},
      {"[::1]", "::1", 27017},           {"fe80::1", "fe80::1", 27017},
  };
  for (const Case& c : cases) {
    absl::StatusOr<HostPort> hp = ParseHostPortBare(c.text, advertised);
    ASSERT_TRUE(hp.ok()) << c.text << ": " << hp.status();
    EXPECT_EQ(hp->host, c.host) << c.text;
    EXPECT_EQ(hp->port, c.port) << c.text;
  }
  for (const char* bad : {"", "node-a:0", "node-a:70000", "[::1", "[::1]x", ":27017"}) {
    EXPECT_FALSE(ParseHostPortBare(bad, advertised).ok()) << bad;
  }
}

TEST(HostPortTest, APeerAddressLosesItsPort) {
  EXPECT_EQ(AddressWithoutPort("1.2.3.4:5"), "1.2.3.4");
  EXPECT_EQ(AddressWithoutPort("[::1]:5"), "::1");
  EXPECT_EQ(AddressWithoutPort("[fe80::1%eth0]:27017"), "fe80::1%eth0");
  EXPECT_EQ(AddressWithoutPort(""), "");
}

TEST(HostPortTest, ToStringBracketsIpv6) {
  EXPECT_EQ((HostPort{"::1", 27018}).ToString(), "[::1]:27018");
  EXPECT_EQ((HostPort{"127.0.0.1", 27018}).ToString(), "127.0.0.1:27018");
}

}  // namespace
}  // namespace sidecar::proxy
