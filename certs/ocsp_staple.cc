#include "certs/ocsp_staple.h"

#include <openssl/err.h>
#include <openssl/x509.h>

namespace sidecar::certs {
namespace {

void FreeStaple(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int index, long argl, void* argp) {
  delete static_cast<std::shared_ptr<OcspStaple>*>(ptr);
}

int StapleIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeStaple);
  return index;
}

// StapleInHandshake is the certificate callback: it runs once per handshake, after the
// ClientHello's extensions are read, which is the last moment to choose what to staple.
int StapleInHandshake(SSL* ssl, void* arg) {
  auto* staple = static_cast<OcspStaple*>(arg);
  std::shared_ptr<const StapledResponse> response = staple->Get();
  if (response != nullptr && !response->der.empty() &&
      !SSL_set_ocsp_response(ssl, reinterpret_cast<const uint8_t*>(response->der.data()),
                             response->der.size())) {
    ERR_clear_error();  // out of memory: this handshake goes on without a staple
  }
  return 1;
}

}  // namespace

absl::Status InstallStapling(SSL_CTX* ctx, std::shared_ptr<OcspStaple> staple) {
  OcspStaple* raw = staple.get();
  auto* owned = new std::shared_ptr<OcspStaple>(std::move(staple));
  if (!SSL_CTX_set_ex_data(ctx, StapleIndex(), owned)) {
    delete owned;
    return absl::ResourceExhaustedError("cannot attach the OCSP staple to the TLS context");
  }
  SSL_CTX_set_cert_cb(ctx, StapleInHandshake, raw);
  return absl::OkStatus();
}

bssl::UniquePtr<X509> FindIssuer(X509* cert, const std::vector<X509*>& candidates) {
  for (X509* candidate : candidates) {
    if (X509_NAME_cmp(X509_get_subject_name(candidate), X509_get_issuer_name(cert)) != 0) {
      continue;
    }
    bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(candidate));
    if (key != nullptr && X509_verify(cert, key.get()) == 1) {
      return bssl::UpRef(candidate);
    }
    ERR_clear_error();
  }
  return nullptr;
}

}  // namespace sidecar::certs
