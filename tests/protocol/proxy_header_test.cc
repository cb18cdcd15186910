// BuildProxyHeader against HAProxy's proxy-protocol.txt, byte for byte: the v1 line (§2.1)
// and the v2 binary header (§2.2: signature, version/command, family/protocol, length,
// addresses, TLVs with the SSL sub-TLVs of §2.2.5), for IPv4, IPv6 and mixed families. The
// expected bytes are written out from the specification, not from the writer; the parser in
// proxy_header_parser.cc, also written from the specification, reads every header back.
#include "protocol/proxy_header.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/protocol/proxy_header_parser.h"

namespace sidecar::protocol {
namespace {

using testing::ParsedProxyHeader;
using testing::ParseProxyHeader;
using testing::ProxyParseStatus;

IpEndpoint V4(const char* text, uint16_t port) {
  IpEndpoint endpoint;
  EXPECT_EQ(inet_pton(AF_INET, text, endpoint.address.data()), 1) << text;
  endpoint.port = port;
  return endpoint;
}

IpEndpoint V6(const char* text, uint16_t port) {
  IpEndpoint endpoint;
  endpoint.v6 = true;
  EXPECT_EQ(inet_pton(AF_INET6, text, endpoint.address.data()), 1) << text;
  endpoint.port = port;
  return endpoint;
}

std::string AsText(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<uint8_t> Ascii(const std::string& text) {
  return std::vector<uint8_t>(text.begin(), text.end());
}

// §2.2: "\r\n\r\n\0\r\nQUIT\n".
const std::vector<uint8_t> kSignature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

ParsedProxyHeader ParseWhole(const std::vector<uint8_t>& header) {
  ParsedProxyHeader parsed;
  std::string error;
  EXPECT_EQ(ParseProxyHeader(header, &parsed, &error), ProxyParseStatus::kDone) << error;
  EXPECT_EQ(parsed.size, header.size());
  // Every proper prefix is "need more", never an error or a shorter header.
  for (size_t n = 0; n < header.size(); ++n) {
    ParsedProxyHeader partial;
    EXPECT_EQ(ParseProxyHeader(absl::MakeConstSpan(header).first(n), &partial, &error),
              ProxyParseStatus::kNeedMore)
        << n << " of " << header.size() << " bytes";
  }
  return parsed;
}

// --- version 1 ---------------------------------------------------------------------------

TEST(ProxyHeaderV1Test, Tcp4IsTheSpecLine) {
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 51000);
  info.destination = V4("198.51.100.7", 27017);
  std::vector<uint8_t> header = BuildProxyHeader(1, info);
  EXPECT_EQ(AsText(header), "PROXY TCP4 192.0.2.10 198.51.100.7 51000 27017\r\n");
  ParsedProxyHeader parsed = ParseWhole(header);
  EXPECT_EQ(parsed.version, 1);
  EXPECT_FALSE(parsed.v6);
  EXPECT_EQ(parsed.source_port, 51000);
  EXPECT_EQ(parsed.destination_port, 27017);
}

TEST(ProxyHeaderV1Test, Tcp6UsesTheShortestTextForm) {
  ProxyHeaderInfo info;
  info.source = V6("2001:db8::1", 1);
  info.destination = V6("2001:db8:0:0:0:0:0:2", 65535);
  EXPECT_EQ(AsText(BuildProxyHeader(1, info)), "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n");
}

TEST(ProxyHeaderV1Test, MixedFamiliesAreWrittenAsV4MappedTcp6) {
  // One line names one protocol: a v4 client on a v6 listener is TCP6 with ::ffff:a.b.c.d.
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 40000);
  info.destination = V6("2001:db8::2", 27017);
  EXPECT_EQ(AsText(BuildProxyHeader(1, info)),
            "PROXY TCP6 ::ffff:192.0.2.10 2001:db8::2 40000 27017\r\n");
}

TEST(ProxyHeaderV1Test, TheLongestLineFitsIn107Bytes) {
  // §2.1: "a receiver may ... read up to 107 characters": the worst case must fit.
  ProxyHeaderInfo info;
  info.source = V6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  info.destination = V6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
  std::vector<uint8_t> header = BuildProxyHeader(1, info);
  EXPECT_LE(header.size(), 107u);
  EXPECT_EQ(AsText(header),
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n");
  ParsedProxyHeader parsed = ParseWhole(header);
  EXPECT_TRUE(parsed.v6);
  EXPECT_EQ(parsed.source_address, info.source.address);
  EXPECT_EQ(parsed.destination_address, info.destination.address);
}

TEST(ProxyHeaderV1Test, TlsDetailsAreNotInVersion1) {
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 51000);
  info.destination = V4("198.51.100.7", 27017);
  info.tls = true;
  info.tls_version = "TLSv1.3";
  info.cipher = "TLS_AES_128_GCM_SHA256";
  info.sni = "db.example.net";
  EXPECT_EQ(AsText(BuildProxyHeader(1, info)),
            "PROXY TCP4 192.0.2.10 198.51.100.7 51000 27017\r\n");
}

// --- version 2 ---------------------------------------------------------------------------

TEST(ProxyHeaderV2Test, Tcp4PlaintextIsSixteenBytesAndTwelveOfAddresses) {
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 51000);         // 51000 = 0xC738
  info.destination = V4("198.51.100.7", 27017);  // 27017 = 0x6989
  std::vector<uint8_t> expected = Concat({
      kSignature,
      {0x21},        // version 2, command PROXY
      {0x11},        // AF_INET, STREAM
      {0x00, 0x0C},  // 12 bytes follow
      {192, 0, 2, 10},
      {198, 51, 100, 7},
      {0xC7, 0x38},
      {0x69, 0x89},
  });
  std::vector<uint8_t> header = BuildProxyHeader(2, info);
  EXPECT_EQ(header, expected);
  ParsedProxyHeader parsed = ParseWhole(header);
  EXPECT_EQ(parsed.version, 2);
  EXPECT_FALSE(parsed.local);
  EXPECT_FALSE(parsed.ssl.has_value());
  EXPECT_FALSE(parsed.authority.has_value());
}

TEST(ProxyHeaderV2Test, Tcp6PlaintextCarriesThirtySixBytesOfAddresses) {
  ProxyHeaderInfo info;
  info.source = V6("2001:db8::1", 1);
  info.destination = V6("2001:db8::2", 65535);
  std::vector<uint8_t> source = {0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::vector<uint8_t> destination = {0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  std::vector<uint8_t> expected = Concat({
      kSignature,
      {0x21},        // version 2, PROXY
      {0x21},        // AF_INET6, STREAM
      {0x00, 0x24},  // 36 bytes follow
      source,
      destination,
      {0x00, 0x01},
      {0xFF, 0xFF},
  });
  EXPECT_EQ(BuildProxyHeader(2, info), expected);
  ParsedProxyHeader parsed = ParseWhole(expected);
  EXPECT_TRUE(parsed.v6);
  EXPECT_EQ(parsed.source_port, 1);
  EXPECT_EQ(parsed.destination_port, 65535);
}

TEST(ProxyHeaderV2Test, MixedFamiliesAreWrittenAsV4MappedIpv6) {
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 40000);  // 0x9C40
  info.destination = V6("::1", 27017);
  std::vector<uint8_t> expected = Concat({
      kSignature,
      {0x21, 0x21, 0x00, 0x24},
      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 10},
      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
      {0x9C, 0x40},
      {0x69, 0x89},
  });
  EXPECT_EQ(BuildProxyHeader(2, info), expected);
}

TEST(ProxyHeaderV2Test, TlsClientWithVerifiedCertificateGetsAuthorityAndSslTlvs) {
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 51000);
  info.destination = V4("198.51.100.7", 27017);
  info.tls = true;
  info.tls_version = "TLSv1.3";
  info.cipher = "TLS_AES_128_GCM_SHA256";  // 22 bytes
  info.sni = "db.example.net";             // 14 bytes
  info.client_certificate = true;
  info.client_certificate_verified = true;
  std::vector<uint8_t> expected = Concat({
      kSignature,
      {0x21, 0x11},
      {0x00, 0x48},  // 12 + (3 + 14) + (3 + 40) = 72
      {192, 0, 2, 10, 198, 51, 100, 7, 0xC7, 0x38, 0x69, 0x89},
      {0x02, 0x00, 0x0E},  // PP2_TYPE_AUTHORITY, 14 bytes
      Ascii("db.example.net"),
      {0x20, 0x00, 0x28},        // PP2_TYPE_SSL, 1 + 4 + (3 + 7) + (3 + 22) = 40 bytes
      {0x07},                    // PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
      {0x00, 0x00, 0x00, 0x00},  // verify: presented and verified
      {0x21, 0x00, 0x07},        // PP2_SUBTYPE_SSL_VERSION
      Ascii("TLSv1.3"),
      {0x23, 0x00, 0x16},  // PP2_SUBTYPE_SSL_CIPHER
      Ascii("TLS_AES_128_GCM_SHA256"),
  });
  std::vector<uint8_t> header = BuildProxyHeader(2, info);
  EXPECT_EQ(header, expected);
  ParsedProxyHeader parsed = ParseWhole(header);
  EXPECT_EQ(parsed.authority, "db.example.net");
  ASSERT_TRUE(parsed.ssl.has_value());
  EXPECT_EQ(parsed.ssl->client, 0x07);
  EXPECT_EQ(parsed.ssl->verify, 0u);
  EXPECT_EQ(parsed.ssl->version, "TLSv1.3");
  EXPECT_EQ(parsed.ssl->cipher, "TLS_AES_128_GCM_SHA256");
}

TEST(ProxyHeaderV2Test, TlsClientWithoutCertificateHasNonZeroVerify) {
  // §2.2.5: verify is zero only "if the client presented a certificate and it was
  // successfully verified"; no SNI, no authority TLV.
  ProxyHeaderInfo info;
  info.source = V4("192.0.2.10", 51000);
  info.destination = V4("198.51.100.7", 27017);
  info.tls = true;
  info.tls_version = "TLSv1.2";
  info.cipher = "ECDHE-RSA-AES128-GCM-SHA256";  // 27 bytes
  std::vector<uint8_t> expected = Concat({
      kSignature,
      {0x21, 0x11},
      {0x00, 0x3C},  // 12 + (3 + 45) = 60
      {192, 0, 2, 10, 198, 51, 100, 7, 0xC7, 0x38, 0x69, 0x89},
      {0x20, 0x00, 0x2D},  // PP2_TYPE_SSL, 1 + 4 + (3 + 7) + (3 + 27) = 45 bytes
      {0x01},              // PP2_CLIENT_SSL only
      {0x00, 0x00, 0x00, 0x01},
      {0x21, 0x00, 0x07},
      Ascii("TLSv1.2"),
      {0x23, 0x00, 0x1B},
      Ascii("ECDHE-RSA-AES128-GCM-SHA256"),
  });
  std::vector<uint8_t> header = BuildProxyHeader(2, info);
  EXPECT_EQ(header, expected);
  ParsedProxyHeader parsed = ParseWhole(header);
  ASSERT_TRUE(parsed.ssl.has_value());
  EXPECT_NE(parsed.ssl->verify, 0u);
}

TEST(ProxyHeaderV2Test, UnverifiedOrResumedCertificatesAreTold) {
  ProxyHeaderInfo info;
  info.source = V6("2001:db8::1", 1000);
  info.destination = V6("2001:db8::2", 27017);
  info.tls = true;
  info.tls_version = "TLSv1.3";
  info.cipher = "TLS_AES_256_GCM_SHA384";
  info.client_certificate = true;
  info.client_certificate_verified = false;  // allowInvalidCertificates let it through
  ParsedProxyHeader unverified = ParseWhole(BuildProxyHeader(2, info));
  ASSERT_TRUE(unverified.ssl.has_value());
  EXPECT_EQ(unverified.ssl->client, 0x07);
  EXPECT_NE(unverified.ssl->verify, 0u);

  info.client_certificate_verified = true;
  info.resumed = true;  // presented in the session's first handshake, not on this connection
  ParsedProxyHeader resumed = ParseWhole(BuildProxyHeader(2, info));
  ASSERT_TRUE(resumed.ssl.has_value());
  EXPECT_EQ(resumed.ssl->client, 0x05);  // PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS
  EXPECT_EQ(resumed.ssl->verify, 0u);
  EXPECT_TRUE(resumed.v6);
  EXPECT_EQ(resumed.source_address, info.source.address);
}

// --- the test parser itself ---------------------------------------------------------------

TEST(ProxyHeaderParserTest, RefusesWhatTheSpecificationRefuses) {
  const std::vector<std::string> bad_v1 = {
      "PROXY TCP4 192.0.2.10 198.51.100.7 51000\r\n",         // a field missing
      "PROXY TCP4 2001:db8::1 198.51.100.7 51000 27017\r\n",  // v6 address in TCP4
      "PROXY TCP4 192.0.2.10 198.51.100.7 65536 27017\r\n",   // port out of range
      "PROXY TCP4 192.0.2.10 198.51.100.7 051000 27017\r\n",  // leading zero
      "PROXY UDP4 192.0.2.10 198.51.100.7 51000 27017\r\n",  "GET / HTTP/1.0\r\n",
  };
  for (const std::string& line : bad_v1) {
    ParsedProxyHeader parsed;
    std::string error;
    EXPECT_EQ(ParseProxyHeader(Ascii(line), &parsed, &error), ProxyParseStatus::kError) << line;
    EXPECT_FALSE(error.empty());
  }
  ParsedProxyHeader parsed;
  std::string error;
  std::vector<uint8_t> endless = Ascii("PROXY TCP4 " + std::string(120, '1'));
  EXPECT_EQ(ParseProxyHeader(endless, &parsed, &error), ProxyParseStatus::kError);

  std::vector<uint8_t> version3 = Concat({kSignature, {0x31, 0x11, 0x00, 0x00}});
  EXPECT_EQ(ParseProxyHeader(version3, &parsed, &error), ProxyParseStatus::kError);
  std::vector<uint8_t> short_block = Concat({kSignature, {0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4}});
  EXPECT_EQ(ParseProxyHeader(short_block, &parsed, &error), ProxyParseStatus::kError);
  std::vector<uint8_t> tlv_overrun = Concat(
      {kSignature, {0x21, 0x11, 0x00, 0x0F}, std::vector<uint8_t>(12, 1), {0x02, 0x00, 0x09}});
  EXPECT_EQ(ParseProxyHeader(tlv_overrun, &parsed, &error), ProxyParseStatus::kError);
  std::vector<uint8_t> local = Concat({kSignature, {0x20, 0x00, 0x00, 0x00}});
  EXPECT_EQ(ParseProxyHeader(local, &parsed, &error), ProxyParseStatus::kDone);
  EXPECT_TRUE(parsed.local);
}

}  // namespace
}  // namespace sidecar::protocol
