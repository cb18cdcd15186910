// Helpers shared by the protocol tests: captured bytes from tests/testdata/protocol and
// ClientHellos made at run time by a BoringSSL client over memory BIOs.
#ifndef SIDECAR_TESTS_PROTOCOL_TEST_UTIL_H_
#define SIDECAR_TESTS_PROTOCOL_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sidecar::protocol::testing {

// ReadTestData returns the bytes of tests/testdata/protocol/<name>, found through
// $SIDECAR_SOURCE_DIR (set by ctest) or the source directory compiled in. Fails the
// current test (and returns empty) when the file cannot be read.
std::vector<uint8_t> ReadTestData(std::string_view name);

// BoringSslClientHello runs a BoringSSL client limited to [min_version, max_version]
// (TLS1_VERSION ... TLS1_3_VERSION) over memory BIOs and returns its first flight: the
// ClientHello record(s).
std::vector<uint8_t> BoringSslClientHello(uint16_t min_version, uint16_t max_version,
                                          const char* server_name = "mongo-a.example.net");

// Bytes builds a byte vector from a list of values (for hand-made inputs).
std::vector<uint8_t> Bytes(std::initializer_list<int> values);

}  // namespace sidecar::protocol::testing

#endif  // SIDECAR_TESTS_PROTOCOL_TEST_UTIL_H_
