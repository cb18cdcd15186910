#include "protocol/sniffer.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <random>
#include <string>
#include <vector>

#include "protocol/bson.h"
#include "protocol/wire.h"
#include "tests/protocol/test_util.h"

namespace sidecar::protocol {
namespace {

using testing::Bytes;
using testing::ReadTestData;

absl::Span<const uint8_t> AsSpan(std::string_view text) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// FirstVerdictFedOneByteAtATime feeds a growing prefix, as a connection receiving one byte
// per read would, and returns the first verdict that is not kNeedMore together with how
// many bytes it took. Every later prefix must keep that verdict.
std::pair<SniffVerdict, size_t> FirstVerdictFedOneByteAtATime(absl::Span<const uint8_t> bytes) {
  SniffVerdict first = SniffVerdict::kNeedMore;
  size_t decided_at = 0;
  for (size_t n = 0; n <= bytes.size(); ++n) {
    SniffVerdict verdict = Sniff(bytes.first(n));
    if (first == SniffVerdict::kNeedMore) {
      first = verdict;
      decided_at = n;
    } else {
      EXPECT_EQ(verdict, first) << "verdict changed at " << n << " bytes";
    }
  }
  return {first, decided_at};
}

struct CaptureCase {
  std::string file;
  SniffVerdict want;
};

class SniffCaptureTest : public ::testing::TestWithParam<CaptureCase> {};

TEST_P(SniffCaptureTest, ClassifiesCapturedFirstFlightOneByteAtATime) {
  std::vector<uint8_t> bytes = ReadTestData(GetParam().file);
  ASSERT_GE(bytes.size(), kSniffBytes);
  EXPECT_EQ(Sniff(bytes), GetParam().want);
  auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(bytes);
  EXPECT_EQ(verdict, GetParam().want);
  EXPECT_LE(decided_at, kSniffBytes);
}

INSTANTIATE_TEST_SUITE_P(
    Captures, SniffCaptureTest,
    ::testing::Values(CaptureCase{"pymongo_hello_op_query.bin", SniffVerdict::kMongo},
                      CaptureCase{"node_hello.bin", SniffVerdict::kMongo},
                      CaptureCase{"node_hello_server_api_op_msg.bin", SniffVerdict::kMongo},
                      CaptureCase{"openssl_client_hello_tls1_2.bin", SniffVerdict::kTls},
                      CaptureCase{"openssl_client_hello_tls1_3.bin", SniffVerdict::kTls}),
    [](const auto& info) {
      std::string name = info.param.file.substr(0, info.param.file.find('.'));
      for (char& c : name) {
        if (!isalnum(static_cast<unsigned char>(c))) {
          c = '_';
        }
      }
      return name;
    });

struct TlsVersionCase {
  const char* name;
  uint16_t min_version;
  uint16_t max_version;
};

class SniffBoringSslHelloTest : public ::testing::TestWithParam<TlsVersionCase> {};

TEST_P(SniffBoringSslHelloTest, ClassifiesBoringSslClientHelloAsTls) {
  std::vector<uint8_t> hello =
      testing::BoringSslClientHello(GetParam().min_version, GetParam().max_version);
  ASSERT_GE(hello.size(), kSniffBytes);
  auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(hello);
  EXPECT_EQ(verdict, SniffVerdict::kTls);
  EXPECT_LE(decided_at, kSniffBytes);
}

INSTANTIATE_TEST_SUITE_P(
    Versions, SniffBoringSslHelloTest,
    ::testing::Values(TlsVersionCase{"Tls10Only", TLS1_VERSION, TLS1_VERSION},
                      TlsVersionCase{"Tls11Only", TLS1_1_VERSION, TLS1_1_VERSION},
                      TlsVersionCase{"Tls12Only", TLS1_2_VERSION, TLS1_2_VERSION},
                      TlsVersionCase{"Tls13Only", TLS1_3_VERSION, TLS1_3_VERSION},
                      TlsVersionCase{"Tls12To13", TLS1_2_VERSION, TLS1_3_VERSION}),
    [](const auto& info) { return std::string(info.param.name); });

// A TLS record header for a ClientHello with the given record version minor byte and length.
std::vector<uint8_t> TlsHeader(uint8_t minor, uint16_t record_length, uint8_t handshake = 1) {
  std::vector<uint8_t> bytes = Bytes({0x16, 0x03, minor, record_length >> 8, record_length & 0xFF,
                                      handshake, 0x00, 0x01, 0xFC, 0x03, 0x03});
  bytes.resize(kSniffBytes, 0xAB);  // rest of client_version and random
  return bytes;
}

TEST(SniffTest, AcceptsEveryTlsRecordVersionFromSsl3ToTls13) {
  // Byte 2 is the record-layer minor version: 0 (SSL 3.0) .. 4 (TLS 1.3 as some stacks write).
  for (uint8_t minor = 0; minor <= 4; ++minor) {
    EXPECT_EQ(Sniff(TlsHeader(minor, 512)), SniffVerdict::kTls) << "minor " << int{minor};
  }
  EXPECT_EQ(Sniff(TlsHeader(5, 512)), SniffVerdict::kInvalid);
}

TEST(SniffTest, ChecksTlsRecordLengthBounds) {
  EXPECT_EQ(Sniff(TlsHeader(1, 3)), SniffVerdict::kInvalid);
  EXPECT_EQ(Sniff(TlsHeader(1, 4)), SniffVerdict::kTls);
  EXPECT_EQ(Sniff(TlsHeader(1, 16384 + 2048)), SniffVerdict::kTls);
  EXPECT_EQ(Sniff(TlsHeader(1, 16384 + 2049)), SniffVerdict::kInvalid);
}

TEST(SniffTest, RejectsTlsRecordsThatAreNotClientHellos) {
  EXPECT_EQ(Sniff(TlsHeader(3, 512, /*handshake=*/2)), SniffVerdict::kInvalid);  // ServerHello
  std::vector<uint8_t> alert = TlsHeader(3, 512);
  alert[0] = 0x15;
  EXPECT_EQ(Sniff(alert), SniffVerdict::kInvalid);
  std::vector<uint8_t> wrong_major = TlsHeader(3, 512);
  wrong_major[1] = 0x02;
  EXPECT_EQ(Sniff(wrong_major), SniffVerdict::kInvalid);
}

// A 16-byte MongoDB header.
std::vector<uint8_t> MongoHeader(int32_t length, int32_t response_to, int32_t op_code) {
  std::vector<uint8_t> bytes;
  for (int32_t field : {length, 0x01020304, response_to, op_code}) {
    for (int i = 0; i < 4; ++i) {
      bytes.push_back(static_cast<uint8_t>(static_cast<uint32_t>(field) >> (8 * i)));
    }
  }
  return bytes;
}

TEST(SniffTest, ClassifiesEveryRequestOpCodeAsMongo) {
  for (OpCode op : {OpCode::kMsg, OpCode::kQuery, OpCode::kCompressed, OpCode::kUpdate,
                    OpCode::kInsert, OpCode::kGetMore, OpCode::kDelete, OpCode::kKillCursors}) {
    std::vector<uint8_t> header = MongoHeader(200, 0, static_cast<int32_t>(op));
    auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(header);
    EXPECT_EQ(verdict, SniffVerdict::kMongo) << OpCodeName(static_cast<int32_t>(op));
    EXPECT_EQ(decided_at, kSniffBytes);
  }
}

TEST(SniffTest, RejectsReplyAndUnknownOpCodes) {
  EXPECT_EQ(Sniff(MongoHeader(200, 0, static_cast<int32_t>(OpCode::kReply))),
            SniffVerdict::kInvalid)
      << "200 = 0xC8: byte 0 has the high bit set, but no SSLv2 CLIENT-HELLO follows";
  EXPECT_EQ(Sniff(MongoHeader(100, 0, 2010)), SniffVerdict::kInvalid);  // removed OP_COMMAND
  EXPECT_EQ(Sniff(MongoHeader(100, 0, 0)), SniffVerdict::kInvalid);
}

TEST(SniffTest, AcceptsResponseToZeroOrMinusOneOnly) {
  EXPECT_EQ(Sniff(MongoHeader(100, 0, 2013)), SniffVerdict::kMongo);
  EXPECT_EQ(Sniff(MongoHeader(100, -1, 2013)), SniffVerdict::kMongo);
  EXPECT_EQ(Sniff(MongoHeader(100, 7, 2013)), SniffVerdict::kInvalid);
  EXPECT_EQ(Sniff(MongoHeader(100, 0x00FF00FF, 2013)), SniffVerdict::kInvalid);
}

TEST(SniffTest, ChecksMongoMessageLengthBounds) {
  EXPECT_EQ(Sniff(MongoHeader(15, 0, 2013)), SniffVerdict::kInvalid);
  EXPECT_EQ(Sniff(MongoHeader(16, 0, 2013)), SniffVerdict::kMongo);
  EXPECT_EQ(Sniff(MongoHeader(kMaxMessageSize, 0, 2013)), SniffVerdict::kMongo);
  EXPECT_EQ(Sniff(MongoHeader(kMaxMessageSize + 1, 0, 2013)), SniffVerdict::kInvalid);
  EXPECT_EQ(Sniff(MongoHeader(-20, 0, 2013)), SniffVerdict::kInvalid);  // 0xEC, not SSLv2
}

TEST(SniffTest, MongoWinsWhenBothPatternsMatch) {
  // 16 03 00 00 05 01 ...: a TLS 1.x record header (length 5) with a ClientHello type byte,
  // and at the same time a MongoDB header of length 0x316 = 790, responseTo 0, OP_MSG.
  std::vector<uint8_t> both =
      Bytes({0x16, 0x03, 0x00, 0x00, 0x05, 0x01, 0x00, 0x00, 0, 0, 0, 0, 0xDD, 0x07, 0, 0});
  EXPECT_EQ(Sniff(both), SniffVerdict::kMongo);
  auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(both);
  EXPECT_EQ(verdict, SniffVerdict::kMongo);
  // The same bytes with an opcode that is not a request: the TLS pattern stands.
  std::vector<uint8_t> tls_only = both;
  tls_only[12] = 0x01;
  tls_only[13] = 0x00;
  EXPECT_EQ(Sniff(tls_only), SniffVerdict::kTls);
  EXPECT_EQ(FirstVerdictFedOneByteAtATime(tls_only).first, SniffVerdict::kTls);
}

TEST(SniffTest, ClassifiesHttpRequestLinesAsSoonAsTheMethodIsComplete) {
  for (std::string_view request :
       {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /x HTTP/1.0\r\n\r\n", "HEAD / HTTP/1.1\r\n\r\n",
        "PUT /a HTTP/1.1\r\n\r\n", "DELETE /a HTTP/1.1\r\n\r\n", "OPTIONS * HTTP/1.1\r\n\r\n",
        "PATCH /a HTTP/1.1\r\n\r\n", "CONNECT a:1 HTTP/1.1\r\n\r\n", "TRACE / HTTP/1.1\r\n\r\n"}) {
    auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(AsSpan(request));
    EXPECT_EQ(verdict, SniffVerdict::kHttp) << request;
    EXPECT_EQ(decided_at, request.find(' ') + 1) << request;
  }
  EXPECT_EQ(Sniff(AsSpan("GETX / HTTP/1.1\r\n\r\n")), SniffVerdict::kInvalid);
  EXPECT_EQ(Sniff(AsSpan("get / HTTP/1.1\r\n\r\n")), SniffVerdict::kInvalid);
}

TEST(SniffTest, RejectsSslV2CompatibleHelloAsUnsupportedTls) {
  // An SSLv2-format ClientHello offering SSL 3.0/TLS 1.0, as old clients sent it:
  // length 0x2E with the high bit, msg_type 1, version 3.1, cipher_spec_length 0x15,
  // session_id_length 0, challenge_length 0x10, then cipher specs.
  std::vector<uint8_t> sslv2 = Bytes({0x80, 0x2E, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00,
                                      0x10, 0x07, 0x00, 0xC0, 0x05, 0x00, 0x80, 0x03, 0x00, 0x80});
  auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(sslv2);
  EXPECT_EQ(verdict, SniffVerdict::kUnsupportedTls);
  EXPECT_LE(decided_at, kSniffBytes);
}

TEST(SniffTest, RejectsAPureSslV2HelloAsUnsupportedTls) {
  // SSLv2 CLIENT-HELLO: length 0x25 with the high bit, msg_type 1, version 0x0002.
  std::vector<uint8_t> sslv2 = Bytes({0x80, 0x25, 0x01, 0x00, 0x02, 0x00, 0x0C, 0x00, 0x00, 0x00,
                                      0x10, 0x07, 0x00, 0xC0, 0x05, 0x00});
  auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(sslv2);
  EXPECT_EQ(verdict, SniffVerdict::kUnsupportedTls);
  // Bytes 0-3 are also a plausible MongoDB length: decided once responseTo rules that out.
  EXPECT_LE(decided_at, kSniffBytes);
}

TEST(SniffTest, HighBitBytesThatAreNotAnSslV2HelloAreInvalidFirstBytes) {
  // The high bit alone says nothing: random binary, a 2-byte length followed by another
  // message type, or an SSLv2 SERVER-HELLO (type 4) are not clients offering old TLS.
  for (std::vector<uint8_t> bytes : {Bytes({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}),
                                     Bytes({0x80, 0x2E, 0x04, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00,
                                            0x00, 0x10, 0x07, 0x00, 0xC0, 0x05, 0x00}),
                                     Bytes({0x80, 0x2E, 0x01, 0x07, 0x01, 0x00, 0x15, 0x00, 0x00,
                                            0x00, 0x10, 0x07, 0x00, 0xC0, 0x05, 0x00}),
                                     Bytes({0xC8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05,
                                            0x00, 0x00, 0x00, 0xDD, 0x07, 0x00, 0x00})}) {
    auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(bytes);
    EXPECT_EQ(verdict, SniffVerdict::kInvalid) << SniffVerdictName(Sniff(bytes));
    EXPECT_EQ(Sniff(bytes), SniffVerdict::kInvalid);
  }
}

TEST(SniffTest, DecidesGarbageEarlyWhenNothingCanMatch) {
  // 0x00 0x00 0x00 0x00: a zero MongoDB length rules Mongo out at byte 4; TLS and HTTP at
  // byte 1.
  auto [verdict, decided_at] = FirstVerdictFedOneByteAtATime(std::vector<uint8_t>(20, 0));
  EXPECT_EQ(verdict, SniffVerdict::kInvalid);
  EXPECT_EQ(decided_at, 4u);
  EXPECT_EQ(Sniff(AsSpan("SSH-2.0-OpenSSH_9.2p1\r\n")), SniffVerdict::kInvalid);
}

TEST(SniffTest, NeedsMoreOnEmptyAndAmbiguousPrefixes) {
  EXPECT_EQ(Sniff({}), SniffVerdict::kNeedMore);
  EXPECT_EQ(Sniff(Bytes({0x16})), SniffVerdict::kNeedMore);
  EXPECT_EQ(Sniff(Bytes({'G', 'E'})), SniffVerdict::kNeedMore);
  EXPECT_EQ(Sniff(Bytes({0xC8, 0x00, 0x00})), SniffVerdict::kNeedMore);
}

TEST(SniffTest, LooksAtTheFirstSixteenBytesOnly) {
  std::vector<uint8_t> bytes = MongoHeader(100, 0, 2013);
  bytes.resize(1000, 0xEE);
  EXPECT_EQ(Sniff(bytes), SniffVerdict::kMongo);
}

TEST(SniffTest, AlwaysDecidesAtSixteenBytesAndNeverChangesItsMind) {
  // Random inputs, plus random inputs forced to start like TLS or MongoDB so that the
  // later checks are reached too.
  std::mt19937 random(20240601);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint8_t> bytes(kSniffBytes);
    for (uint8_t& b : bytes) {
      b = static_cast<uint8_t>(byte(random));
    }
    if (round % 3 == 1) {
      bytes[0] = 0x16;
      bytes[1] = 0x03;
      bytes[2] %= 6;
    } else if (round % 3 == 2) {
      bytes[3] = 0;
      bytes[8] = bytes[9] = bytes[10] = bytes[11] = (round % 2) ? 0 : 0xFF;
      bytes[14] = bytes[15] = 0;
    }
    SniffVerdict full = Sniff(bytes);
    ASSERT_NE(full, SniffVerdict::kNeedMore);
    for (size_t n = 0; n < kSniffBytes; ++n) {
      SniffVerdict partial = Sniff(absl::MakeConstSpan(bytes).first(n));
      ASSERT_TRUE(partial == SniffVerdict::kNeedMore || partial == full)
          << "prefix " << n << " said " << SniffVerdictName(partial) << ", full said "
          << SniffVerdictName(full);
    }
  }
}

TEST(SniffTest, NamesVerdictsWithTheirMetricReasons) {
  EXPECT_EQ(SniffVerdictName(SniffVerdict::kNeedMore), "need_more");
  EXPECT_EQ(SniffVerdictName(SniffVerdict::kTls), "tls");
  EXPECT_EQ(SniffVerdictName(SniffVerdict::kMongo), "mongo");
  EXPECT_EQ(SniffVerdictName(SniffVerdict::kHttp), "http");
  EXPECT_EQ(SniffVerdictName(SniffVerdict::kUnsupportedTls), "unsupported_tls");
  EXPECT_EQ(SniffVerdictName(SniffVerdict::kInvalid), "invalid_first_bytes");
}

}  // namespace
}  // namespace sidecar::protocol
