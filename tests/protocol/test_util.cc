#include "tests/protocol/test_util.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

namespace sidecar::protocol::testing {

std::vector<uint8_t> ReadTestData(std::string_view name) {
  const char* env = std::getenv("SIDECAR_SOURCE_DIR");
  std::string root = env != nullptr ? env : SIDECAR_SOURCE_DIR_FALLBACK;
  std::string path = root + "/tests/testdata/protocol/" + std::string(name);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return {};
  }
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

std::vector<uint8_t> BoringSslClientHello(uint16_t min_version, uint16_t max_version,
                                          const char* server_name) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx || !SSL_CTX_set_min_proto_version(ctx.get(), min_version) ||
      !SSL_CTX_set_max_proto_version(ctx.get(), max_version)) {
    ADD_FAILURE() << "cannot configure SSL_CTX";
    return {};
  }
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx.get()));
  if (!ssl) {
    ADD_FAILURE() << "SSL_new failed";
    return {};
  }
  SSL_set_connect_state(ssl.get());
  if (server_name != nullptr && !SSL_set_tlsext_host_name(ssl.get(), server_name)) {
    ADD_FAILURE() << "SSL_set_tlsext_host_name failed";
    return {};
  }
  BIO* ciphertext_in = BIO_new(BIO_s_mem());
  BIO* ciphertext_out = BIO_new(BIO_s_mem());
  // SSL_set_bio takes ownership of both BIOs.
  SSL_set_bio(ssl.get(), ciphertext_in, ciphertext_out);
  int rc = SSL_do_handshake(ssl.get());
  if (rc == 1 || SSL_get_error(ssl.get(), rc) != SSL_ERROR_WANT_READ) {
    ADD_FAILURE() << "client handshake did not wait for the server";
    return {};
  }
  const uint8_t* data = nullptr;
  size_t length = 0;
  if (!BIO_mem_contents(ciphertext_out, &data, &length)) {
    ADD_FAILURE() << "BIO_mem_contents failed";
    return {};
  }
  return std::vector<uint8_t>(data, data + length);
}

std::vector<uint8_t> Bytes(std::initializer_list<int> values) {
  std::vector<uint8_t> out;
  for (int v : values) {
    out.push_back(static_cast<uint8_t>(v));
  }
  return out;
}

}  // namespace sidecar::protocol::testing
