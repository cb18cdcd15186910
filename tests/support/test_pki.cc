#include "tests/support/test_pki.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sidecar::test_support {
namespace {

std::string TakeError() {
  uint32_t err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) {
    return "";
  }
  const char* reason = ERR_reason_error_string(err);
  return reason != nullptr ? reason : absl::StrCat("error ", err);
}

// MoveBytes drains what `from` wrote and feeds it to `to`; returns the byte count.
size_t MoveBytes(SSL* from, SSL* to) {
  BIO* out = SSL_get_wbio(from);
  BIO* in = SSL_get_rbio(to);
  size_t moved = 0;
  char buf[4096];
  for (;;) {
    int n = BIO_read(out, buf, sizeof(buf));
    if (n <= 0) {
      break;
    }
    BIO_write(in, buf, n);
    moved += static_cast<size_t>(n);
  }
  return moved;
}

void AttachMemoryBios(SSL* ssl) {
  if (SSL_get_rbio(ssl) != nullptr) {
    return;
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  // An empty memory BIO reports "retry" instead of EOF, which is what a socket that has no
  // data yet looks like to the TLS engine.
  BIO_set_mem_eof_return(rbio, -1);
  BIO_set_mem_eof_return(wbio, -1);
  SSL_set0_rbio(ssl, rbio);  // set0: the SSL owns them
  SSL_set0_wbio(ssl, wbio);
}

// Step advances one end; returns false once it failed, recording the error.
bool Step(SSL* ssl, bool& done, std::string& error) {
  if (done) {
    return true;
  }
  int ret = SSL_do_handshake(ssl);
  if (ret == 1) {
    done = true;
    return true;
  }
  int err = SSL_get_error(ssl, ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    ERR_clear_error();
    return true;
  }
  error = TakeError();
  if (error.empty()) {
    error = absl::StrCat("SSL_get_error ", err);
  }
  return false;
}

}  // namespace

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr && base[0] != '\0' ? base : "/tmp", "/sidecar-test-XXXXXX");
  if (mkdtemp(pattern.data()) != nullptr) {
    path_ = pattern;
  }
}

TempDir::~TempDir() {
  if (!path_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }

std::string TempDir::File(const std::string& name) const { return absl::StrCat(path_, "/", name); }

std::string TempDir::Write(const std::string& name, const std::string& contents) const {
  std::string path = File(name);
  if (absl::Status s = certs::WriteFile(path, contents, 0600); !s.ok()) {
    fprintf(stderr, "cannot write test file: %s\n", std::string(s.message()).c_str());
    abort();
  }
  return path;
}

absl::StatusOr<std::unique_ptr<TestPki>> TestPki::Create(const std::vector<std::string>& hosts) {
  auto pki = std::make_unique<TestPki>();
  if (pki->dir.path().empty()) {
    return absl::InternalError("cannot create a temporary directory");
  }
  certs::ThrowawayPkiOptions options;
  options.hosts = hosts;
  options.organization = "tls-sidecar tests";
  options.ca_common_name = "Test CA";
  absl::StatusOr<certs::ThrowawayPki> made = certs::MakeThrowawayPki(options);
  if (!made.ok()) {
    return made.status();
  }
  pki->ca = std::move(made->ca);
  pki->server = std::move(made->server);
  pki->cluster = std::move(made->cluster);
  pki->client = std::move(made->client);
  pki->ca_file = pki->dir.Write("ca.pem", pki->ca.cert_pem);
  pki->server_file = pki->dir.Write("server.pem", pki->server.CertificateKeyPem());
  pki->cluster_file = pki->dir.Write("cluster.pem", pki->cluster.CertificateKeyPem());
  pki->client_file = pki->dir.Write("client.pem", pki->client.CertificateKeyPem());
  return pki;
}

certs::TlsSettings TestPki::Settings() const {
  certs::TlsSettings settings;
  settings.certificate_key_file = server_file;
  settings.ca_file = ca_file;
  settings.cluster_file = cluster_file;
  // Most handshakes in the tests are by clients without a certificate; the tests about
  // client certificates set this themselves.
  settings.allow_connections_without_certificates = true;
  return settings;
}

absl::StatusOr<certs::GeneratedCertificate> TestPki::Issue(
    certs::CertificateOptions options) const {
  options.issuer = &ca;
  return certs::MakeCertificate(options);
}

absl::StatusOr<std::string> MakeCrl(const certs::GeneratedCertificate& issuer,
                                    const CrlOptions& options) {
  auto failed = [](const char* what) {
    std::string error = TakeError();
    return absl::InternalError(absl::StrCat(what, " failed: ", error));
  };
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  bssl::UniquePtr<ASN1_TIME> last(
      ASN1_TIME_set(nullptr, now + absl::ToInt64Seconds(options.last_update)));
  bssl::UniquePtr<ASN1_TIME> next(
      ASN1_TIME_set(nullptr, now + absl::ToInt64Seconds(options.next_update)));
  bssl::UniquePtr<X509_CRL> crl(X509_CRL_new());
  if (last == nullptr || next == nullptr || crl == nullptr ||
      !X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) ||
      !X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer.cert.get())) ||
      !X509_CRL_set1_lastUpdate(crl.get(), last.get()) ||
      !X509_CRL_set1_nextUpdate(crl.get(), next.get())) {
    return failed("X509_CRL_new");
  }
  for (uint64_t serial : options.revoked_serials) {
    bssl::UniquePtr<X509_REVOKED> revoked(X509_REVOKED_new());
    bssl::UniquePtr<ASN1_INTEGER> number(ASN1_INTEGER_new());
    if (revoked == nullptr || number == nullptr || !ASN1_INTEGER_set_uint64(number.get(), serial) ||
        !X509_REVOKED_set_serialNumber(revoked.get(), number.get()) ||
        !X509_REVOKED_set_revocationDate(revoked.get(), last.get()) ||
        !X509_CRL_add0_revoked(crl.get(), revoked.get())) {
      return failed("adding a revoked serial");
    }
    revoked.release();  // owned by the CRL since X509_CRL_add0_revoked succeeded
  }
  if (!X509_CRL_sort(crl.get()) || !X509_CRL_sign(crl.get(), issuer.key.get(), EVP_sha256())) {
    return failed("signing the CRL");
  }
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  const uint8_t* data = nullptr;
  size_t length = 0;
  if (bio == nullptr || !PEM_write_bio_X509_CRL(bio.get(), crl.get()) ||
      !BIO_mem_contents(bio.get(), &data, &length)) {
    return failed("writing the CRL PEM");
  }
  return std::string(reinterpret_cast<const char*>(data), length);
}

uint64_t SerialOf(X509* cert) {
  uint64_t serial = 0;
  if (cert == nullptr || !ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(cert))) {
    ERR_clear_error();
    return 0;
  }
  return serial;
}

HandshakeResult Handshake(SSL* client, SSL* server) {
  AttachMemoryBios(client);
  AttachMemoryBios(server);
  HandshakeResult result;
  bool client_failed = false;
  bool server_failed = false;
  for (int round = 0; round < 32; ++round) {
    if (!client_failed && !Step(client, result.client_ok, result.client_error)) {
      client_failed = true;
    }
    size_t moved = MoveBytes(client, server);
    if (!server_failed && !Step(server, result.server_ok, result.server_error)) {
      server_failed = true;
    }
    moved += MoveBytes(server, client);
    // Nothing in flight after the first round: both ends are finished, failed, or waiting
    // for each other (which a correct handshake never does).
    if (moved == 0 && round > 0) {
      break;
    }
  }
  if (result.client_ok) {
    result.version = SSL_get_version(client);
    result.resumed = SSL_session_reused(client) != 0;
  }
  // One application byte from the server: carries TLS 1.3 tickets to the client and, when
  // the server refused the client after the client finished, the alert.
  if (result.server_ok) {
    SSL_write(server, "x", 1);
    MoveBytes(server, client);
  }
  if (result.client_ok) {
    char byte;
    int n = SSL_read(client, &byte, 1);
    if (n <= 0) {
      int err = SSL_get_error(client, n);
      if (err != SSL_ERROR_WANT_READ) {
        std::string error = TakeError();
        if (result.client_error.empty()) {
          result.client_error = error.empty() ? absl::StrCat("SSL_get_error ", err) : error;
        }
        client_failed = true;
      }
    }
    ERR_clear_error();
  }
  result.ok = result.client_ok && result.server_ok && !client_failed && !server_failed;
  return result;
}

bssl::UniquePtr<SSL> NewIngressSession(const certs::TlsSnapshot& snapshot) {
  if (snapshot.server_context() == nullptr) {
    return nullptr;
  }
  return NewServer(snapshot.server_context());
}

absl::StatusOr<bssl::UniquePtr<SSL>> NewEgressSession(const certs::TlsSnapshot& snapshot,
                                                      const std::string& host) {
  if (snapshot.client_context() == nullptr) {
    return absl::FailedPreconditionError(
        "no TLS client context: set CAFile or clusterCAFile to verify peers");
  }
  bssl::UniquePtr<SSL> ssl = NewClient(snapshot.client_context());
  if (ssl == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("SSL_new: ", TakeError()));
  }
  if (absl::Status s = snapshot.PrepareEgressSession(ssl.get(), host); !s.ok()) {
    return s;
  }
  return ssl;
}

bssl::UniquePtr<SSL> NewClient(SSL_CTX* ctx) {
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx));
  if (ssl != nullptr) {
    SSL_set_connect_state(ssl.get());
  }
  return ssl;
}

bssl::UniquePtr<SSL> NewServer(SSL_CTX* ctx) {
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx));
  if (ssl != nullptr) {
    SSL_set_accept_state(ssl.get());
  }
  return ssl;
}

bssl::UniquePtr<SSL_CTX> NewClientContext(const std::string& ca_pem,
                                          const std::string& cert_key_pem, uint16_t min_version,
                                          uint16_t max_version) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), min_version);
  SSL_CTX_set_max_proto_version(ctx.get(), max_version);
  if (!ca_pem.empty()) {
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())));
    while (bssl::UniquePtr<X509> ca{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get());
    }
    ERR_clear_error();
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  if (!cert_key_pem.empty()) {
    bssl::UniquePtr<BIO> bio(
        BIO_new_mem_buf(cert_key_pem.data(), static_cast<int>(cert_key_pem.size())));
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    bssl::UniquePtr<BIO> key_bio(
        BIO_new_mem_buf(cert_key_pem.data(), static_cast<int>(cert_key_pem.size())));
    bssl::UniquePtr<EVP_PKEY> key(
        PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    SSL_CTX_use_certificate(ctx.get(), cert.get());
    SSL_CTX_use_PrivateKey(ctx.get(), key.get());
    ERR_clear_error();
  }
  return ctx;
}

}  // namespace sidecar::test_support
