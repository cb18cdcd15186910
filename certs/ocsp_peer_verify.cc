#include "certs/ocsp_peer_verify.h"

#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/x509.h>

#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "certs/certificate_info.h"
#include "certs/ocsp_verify.h"

namespace sidecar::certs {
namespace {

// PeerCheck is the per-SSL state of one verification, kept across ssl_verify_retry.
struct PeerCheck {
  bool x509_done = false;
  long x509_result = X509_V_ERR_INVALID_CALL;
  std::optional<OcspQuery> query;    // set once the chain verified and names a responder
  bool waiting = false;              // a Lookup is under way for this handshake
  bool revoked = false;
  bool ocsp_refused = false;
  std::string ocsp_failure;          // why OCSP refused, for PeerVerifyFailure
};

void FreePeerCheck(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int index, long argl,
                   void* argp) {
  delete static_cast<PeerCheck*>(ptr);
}

void FreePolicy(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int index, long argl,
                void* argp) {
  delete static_cast<OcspPeerPolicy*>(ptr);
}

int PeerCheckIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, FreePeerCheck);
  return index;
}

// The waker is borrowed (SetHandshakeWaker): nothing to free with the SSL.
int WakerIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int PolicyIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreePolicy);
  return index;
}

PeerCheck* FindPeerCheck(const SSL* ssl) {
  return static_cast<PeerCheck*>(SSL_get_ex_data(ssl, PeerCheckIndex()));
}

PeerCheck* GetPeerCheck(SSL* ssl) {
  PeerCheck* check = FindPeerCheck(ssl);
  if (check == nullptr) {
    check = new PeerCheck();
    if (!SSL_set_ex_data(ssl, PeerCheckIndex(), check)) {
      delete check;
      return nullptr;
    }
  }
  return check;
}

// VerifyChain is BoringSSL's own default verification (ssl_crypto_x509_session_verify_cert_
// chain), done here because a custom callback replaces it: same store, same purpose
// ("ssl_client" on a server), the connection's parameters (host name, CRL flags) on top.
// Returns the X509 result and, when it verified, the issuer of the leaf.
long VerifyChain(SSL* ssl, bssl::UniquePtr<X509>* leaf_out, bssl::UniquePtr<X509>* issuer_out) {
  const STACK_OF(CRYPTO_BUFFER)* buffers = SSL_get0_peer_certificates(ssl);
  if (buffers == nullptr || sk_CRYPTO_BUFFER_num(buffers) == 0) {
    return X509_V_ERR_UNSPECIFIED;
  }
  bssl::UniquePtr<STACK_OF(X509)> chain(sk_X509_new_null());
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(buffers); ++i) {
    bssl::UniquePtr<X509> cert(X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(buffers, i)));
    if (cert == nullptr || chain == nullptr || !bssl::PushToStack(chain.get(), std::move(cert))) {
      ERR_clear_error();
      return X509_V_ERR_UNSPECIFIED;
    }
  }
  X509* leaf = sk_X509_value(chain.get(), 0);
  bssl::UniquePtr<X509_STORE_CTX> store_ctx(X509_STORE_CTX_new());
  if (store_ctx == nullptr ||
      !X509_STORE_CTX_init(store_ctx.get(), SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), leaf,
                           chain.get()) ||
      !X509_STORE_CTX_set_ex_data(store_ctx.get(), SSL_get_ex_data_X509_STORE_CTX_idx(), ssl)) {
    ERR_clear_error();
    return X509_V_ERR_UNSPECIFIED;
  }
  X509_STORE_CTX_set_default(store_ctx.get(), SSL_is_server(ssl) ? "ssl_client" : "ssl_server");
  X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(store_ctx.get()), SSL_get0_param(ssl));
  int ok = X509_verify_cert(store_ctx.get());
  long result = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(store_ctx.get());
  ERR_clear_error();
  if (result == X509_V_OK) {
    *leaf_out = bssl::UpRef(leaf);
    STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(store_ctx.get());
    if (verified != nullptr && sk_X509_num(verified) > 1) {
      *issuer_out = bssl::UpRef(sk_X509_value(verified, 1));
    }
  }
  return result;
}

// StapledAnswer reads the response a server stapled, if any and if it verifies.
std::optional<OcspAnswer> StapledAnswer(const SSL* ssl, const OcspQuery& query,
                                        const OcspPeerPolicy& policy) {
  const uint8_t* data = nullptr;
  size_t size = 0;
  SSL_get0_ocsp_response(ssl, &data, &size);
  if (size == 0) {
    return std::nullopt;
  }
  OcspVerifyOptions options;
  options.skew = policy.skew;
  auto verdict = ParseAndVerifyOcspResponse(
      std::string_view(reinterpret_cast<const char*>(data), size), query.cert.get(),
      query.issuer.get(), options);
  if (!verdict.ok()) {
    return std::nullopt;  // an unusable staple: ask the responder instead
  }
  OcspAnswer answer;
  answer.result = verdict->status == OcspCertStatus::kGood      ? OcspCheckResult::kGood
                  : verdict->status == OcspCertStatus::kRevoked ? OcspCheckResult::kRevoked
                                                                 : OcspCheckResult::kUnknown;
  answer.next_update = verdict->next_update;
  answer.detail = "stapled";
  return answer;
}

// Decide turns an answer into the handshake's fate.
ssl_verify_result_t Decide(PeerCheck& check, const OcspPeerPolicy& policy,
                           const OcspAnswer& answer, bool stapled, uint8_t* out_alert) {
  bool accepted = true;
  if (answer.result == OcspCheckResult::kRevoked) {
    accepted = false;
    check.revoked = true;
    check.ocsp_failure = "the certificate is revoked (OCSP)";
    *out_alert = SSL_AD_CERTIFICATE_REVOKED;
  } else if (answer.result != OcspCheckResult::kGood && policy.hard_fail) {
    accepted = false;
    check.ocsp_refused = true;
    check.ocsp_failure = absl::StrCat("no usable OCSP answer (", OcspCheckResultName(answer.result),
                                      answer.detail.empty() ? "" : ": ", answer.detail,
                                      ") and OCSP hard-fail is on");
    *out_alert = SSL_AD_BAD_CERTIFICATE_STATUS_RESPONSE;
  }
  if (policy.source != nullptr) {
    policy.source->Record(*check.query, answer, stapled, accepted);
  }
  return accepted ? ssl_verify_ok : ssl_verify_invalid;
}

ssl_verify_result_t VerifyPeer(SSL* ssl, uint8_t* out_alert) {
  const auto* policy = static_cast<const OcspPeerPolicy*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), PolicyIndex()));
  PeerCheck* check = GetPeerCheck(ssl);
  if (policy == nullptr || check == nullptr) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return ssl_verify_invalid;
  }
  if (!check->x509_done) {
    check->x509_done = true;
    bssl::UniquePtr<X509> leaf, issuer;
    check->x509_result = VerifyChain(ssl, &leaf, &issuer);
    if (check->x509_result != X509_V_OK) {
      if (policy->allow_invalid_certificates) {
        return ssl_verify_ok;  // as before: accepted, and the result stays readable
      }
      *out_alert = static_cast<uint8_t>(SSL_alert_from_verify_result(check->x509_result));
      return ssl_verify_invalid;
    }
    std::vector<std::string> urls = OcspResponderUrls(leaf.get());
    if (issuer == nullptr || urls.empty()) {
      return ssl_verify_ok;  // names no responder (or is itself the trust anchor)
    }
    auto id = MakeOcspCertId(leaf.get(), issuer.get());
    if (!id.ok()) {
      return ssl_verify_ok;
    }
    OcspQuery query;
    query.subject = FormatName(X509_get_subject_name(leaf.get()));
    query.cert = std::move(leaf);
    query.issuer = std::move(issuer);
    query.id = *std::move(id);
    query.url = urls.front();
    check->query = std::move(query);
    if (auto stapled = StapledAnswer(ssl, *check->query, *policy); stapled.has_value()) {
      return Decide(*check, *policy, *stapled, true, out_alert);
    }
  } else if (check->x509_result != X509_V_OK || !check->query.has_value()) {
    return ssl_verify_ok;  // decided in the first call already
  }
  if (policy->source == nullptr) {
    OcspAnswer none;
    none.detail = "no OCSP fetcher configured";
    return Decide(*check, *policy, none, false, out_alert);
  }
  absl::AnyInvocable<void()> wake;
  auto* waker = static_cast<HandshakeWaker*>(SSL_get_ex_data(ssl, WakerIndex()));
  if (!check->waiting && waker != nullptr) {
    wake = waker->MakeWake();
  }
  bool can_wait = wake != nullptr;
  std::optional<OcspAnswer> answer = policy->source->Lookup(*check->query, std::move(wake));
  if (!answer.has_value()) {
    if (can_wait || check->waiting) {
      check->waiting = true;
      return ssl_verify_retry;
    }
    OcspAnswer none;
    none.result = OcspCheckResult::kTimeout;
    none.detail = "this connection cannot wait for the responder";
    return Decide(*check, *policy, none, false, out_alert);
  }
  check->waiting = false;
  return Decide(*check, *policy, *answer, false, out_alert);
}

}  // namespace

const char* OcspCheckResultName(OcspCheckResult result) {
  switch (result) {
    case OcspCheckResult::kGood:
      return "good";
    case OcspCheckResult::kRevoked:
      return "revoked";
    case OcspCheckResult::kUnknown:
      return "unknown";
    case OcspCheckResult::kError:
      return "error";
    case OcspCheckResult::kTimeout:
      return "timeout";
  }
  return "error";
}

void SetHandshakeWaker(SSL* ssl, HandshakeWaker* waker) {
  // Only a pointer: the per-handshake state (PeerCheck) is made when a certificate is
  // checked, so a connection whose peer presents none carries nothing for OCSP.
  SSL_set_ex_data(ssl, WakerIndex(), waker);
}

absl::Status InstallOcspPeerVerify(SSL_CTX* ctx, int mode, OcspPeerPolicy policy) {
  auto* owned = new OcspPeerPolicy(std::move(policy));
  if (!SSL_CTX_set_ex_data(ctx, PolicyIndex(), owned)) {
    delete owned;
    return absl::ResourceExhaustedError("cannot attach the OCSP policy to the TLS context");
  }
  SSL_CTX_set_custom_verify(ctx, mode, VerifyPeer);
  SSL_CTX_enable_ocsp_stapling(ctx);  // clients ask servers to staple; servers ignore it
  return absl::OkStatus();
}

bool ChecksPeersByOcsp(const SSL* ssl) {
  return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), PolicyIndex()) != nullptr;
}

long PeerVerifyResult(const SSL* ssl) {
  if (const PeerCheck* check = FindPeerCheck(ssl); check != nullptr && check->x509_done) {
    return check->x509_result;
  }
  return SSL_get_verify_result(ssl);
}

std::string PeerVerifyFailure(const SSL* ssl) {
  if (const PeerCheck* check = FindPeerCheck(ssl); check != nullptr && check->x509_done &&
                                                    !check->ocsp_failure.empty()) {
    return check->ocsp_failure;
  }
  // BoringSSL reports X509_V_ERR_INVALID_CALL until a certificate has been verified: only a
  // verification that ran and failed explains a handshake failure.
  long result = PeerVerifyResult(ssl);
  if (result == X509_V_OK || result == X509_V_ERR_INVALID_CALL) {
    return "";
  }
  return X509_verify_cert_error_string(result);
}

bool PeerCertificateRevoked(const SSL* ssl) {
  const PeerCheck* check = FindPeerCheck(ssl);
  return check != nullptr && check->revoked;
}

bool PeerOcspRefused(const SSL* ssl) {
  const PeerCheck* check = FindPeerCheck(ssl);
  return check != nullptr && check->ocsp_refused;
}

}  // namespace sidecar::certs
