#include "certs/tls_contexts.h"

#include <openssl/err.h>

#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sidecar::certs {
namespace {

// Session ID context: required for resumption whenever peers are verified, so a session
// established under one verification policy is never resumed under another context.
constexpr char kSessionIdContext[] = "tls-sidecar";

// Forward-secret AEAD suites for TLS 1.2, ECDSA before RSA, AES-128-GCM first (fast with
// AES-NI), CHACHA20 for clients without it.
constexpr char kAeadCiphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
// TLS 1.0 and 1.1 have no AEAD suites; when an operator re-enables them ("none"), these
// ECDHE suites keep forward secrecy.
constexpr char kLegacyCiphers[] =
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";

uint16_t VersionOf(TlsProtocol p) {
  switch (p) {
    case TlsProtocol::kTls1_0:
      return TLS1_VERSION;
    case TlsProtocol::kTls1_1:
      return TLS1_1_VERSION;
    case TlsProtocol::kTls1_2:
      return TLS1_2_VERSION;
    case TlsProtocol::kTls1_3:
      return TLS1_3_VERSION;
  }
  return TLS1_3_VERSION;
}

const char* NameOf(TlsProtocol p) {
  switch (p) {
    case TlsProtocol::kTls1_0:
      return "TLS1_0";
    case TlsProtocol::kTls1_1:
      return "TLS1_1";
    case TlsProtocol::kTls1_2:
      return "TLS1_2";
    case TlsProtocol::kTls1_3:
      return "TLS1_3";
  }
  return "?";
}

// AcceptAnyCertificate is the verify callback for allow_invalid_certificates: the chain is
// still built and checked, and the result stays visible through SSL_get_verify_result (so
// VerifiedPeerSubject reports "" for it), but a failure no longer aborts the handshake.
int AcceptAnyCertificate(int preverify_ok, X509_STORE_CTX* store_ctx) { return 1; }

absl::Status UseCertificate(SSL_CTX* ctx, const CertificateKeyPair& pair) {
  // use_certificate, use_PrivateKey and add1_chain_cert take their own references.
  if (!SSL_CTX_use_certificate(ctx, pair.leaf.get()) ||
      !SSL_CTX_use_PrivateKey(ctx, pair.key.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat(pair.source, ": the certificate cannot be used: ", OpenSslError()));
  }
  for (const bssl::UniquePtr<X509>& cert : pair.chain) {
    if (!SSL_CTX_add1_chain_cert(ctx, cert.get())) {
      return absl::InvalidArgumentError(
          absl::StrCat(pair.source, ": the chain cannot be used: ", OpenSslError()));
    }
  }
  if (!SSL_CTX_check_private_key(ctx)) {
    return absl::InvalidArgumentError(absl::StrCat(
        pair.source, ": the private key does not match the certificate: ", OpenSslError()));
  }
  return absl::OkStatus();
}

// SetPeerVerification makes `ctx` verify peers with `mode`: BoringSSL's own verification,
// or, with OCSP on, ours with revocation checks (certs/ocsp_peer_verify.h).
absl::Status SetPeerVerification(SSL_CTX* ctx, int mode, const TlsSettings& settings,
                                 const std::shared_ptr<OcspStatusSource>& ocsp_source) {
  if (!settings.ocsp.enabled) {
    SSL_CTX_set_verify(ctx, mode,
                       settings.allow_invalid_certificates ? AcceptAnyCertificate : nullptr);
    return absl::OkStatus();
  }
  OcspPeerPolicy policy;
  policy.source = ocsp_source;
  policy.hard_fail = settings.ocsp.hard_fail;
  policy.allow_invalid_certificates = settings.allow_invalid_certificates;
  return InstallOcspPeerVerify(ctx, mode, std::move(policy));
}

absl::StatusOr<bssl::UniquePtr<SSL_CTX>> NewContext(uint16_t min_version, uint16_t max_version) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("SSL_CTX_new: ", OpenSslError()));
  }
  if (!SSL_CTX_set_min_proto_version(ctx.get(), min_version) ||
      !SSL_CTX_set_max_proto_version(ctx.get(), max_version)) {
    return absl::InternalError(absl::StrCat("setting protocol versions: ", OpenSslError()));
  }
  std::string ciphers = CipherListFor(min_version);
  if (!SSL_CTX_set_strict_cipher_list(ctx.get(), ciphers.c_str())) {
    return absl::InternalError(absl::StrCat("setting cipher suites: ", OpenSslError()));
  }
  // In TLS 1.2 a server picks from the client's suites in its own order (kAeadCiphers),
  // not the client's, so what is chosen is the operator's policy rather than each client's;
  // TLS 1.3 suites are all AEAD and BoringSSL orders them itself. Only servers read this.
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  return ctx;
}

absl::Status AddTrustAnchors(SSL_CTX* ctx, const std::vector<bssl::UniquePtr<X509>>& cas,
                             const std::string& source) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);  // borrowed from ctx
  for (const bssl::UniquePtr<X509>& ca : cas) {
    if (!X509_STORE_add_cert(store, ca.get())) {  // takes its own reference
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": cannot add the CA certificate: ", OpenSslError()));
    }
  }
  return absl::OkStatus();
}

absl::Status AddCrls(SSL_CTX* ctx, const std::vector<bssl::UniquePtr<X509_CRL>>& crls) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);  // borrowed from ctx
  for (const bssl::UniquePtr<X509_CRL>& crl : crls) {
    if (!X509_STORE_add_crl(store, crl.get())) {  // takes its own reference
      return absl::InternalError(absl::StrCat("cannot add a CRL: ", OpenSslError()));
    }
  }
  // As mongod: check the leaf against its issuer's CRL. The flag goes on the context's
  // verify parameters, which every SSL made from it copies.
  if (!X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK)) {
    return absl::InternalError("cannot enable CRL checking");
  }
  return absl::OkStatus();
}

}  // namespace

std::string OpenSslError() {
  uint32_t err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) {
    return "unknown error";
  }
  char buf[256];
  ERR_error_string_n(err, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<std::pair<uint16_t, uint16_t>> ProtocolVersionRange(
    const std::set<TlsProtocol>& disabled) {
  constexpr TlsProtocol kAll[] = {TlsProtocol::kTls1_0, TlsProtocol::kTls1_1, TlsProtocol::kTls1_2,
                                  TlsProtocol::kTls1_3};
  std::optional<TlsProtocol> lowest;
  std::optional<TlsProtocol> highest;
  for (TlsProtocol p : kAll) {
    if (disabled.count(p) == 0) {
      if (!lowest) {
        lowest = p;
      }
      highest = p;
    }
  }
  if (!lowest) {
    return absl::InvalidArgumentError("disabledProtocols disables every TLS version");
  }
  for (TlsProtocol p : kAll) {
    if (VersionOf(p) > VersionOf(*lowest) && VersionOf(p) < VersionOf(*highest) &&
        disabled.count(p) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("disabledProtocols disables ", NameOf(p), " but keeps ", NameOf(*lowest),
                       " and ", NameOf(*highest), "; the enabled versions must be contiguous"));
    }
  }
  return std::make_pair(VersionOf(*lowest), VersionOf(*highest));
}

std::string CipherListFor(uint16_t min_version) {
  if (min_version < TLS1_2_VERSION) {
    return absl::StrCat(kAeadCiphers, ":", kLegacyCiphers);
  }
  return kAeadCiphers;
}

absl::StatusOr<bssl::UniquePtr<SSL_CTX>> NewServerContext(
    const TlsSettings& settings, std::pair<uint16_t, uint16_t> versions,
    const CertificateKeyPair& server, const std::vector<bssl::UniquePtr<X509>>& cas,
    const std::vector<bssl::UniquePtr<X509_CRL>>& crls,
    const std::shared_ptr<OcspStatusSource>& ocsp_source) {
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx = NewContext(versions.first, versions.second);
  if (!ctx.ok()) {
    return ctx.status();
  }
  SSL_CTX* c = ctx->get();
  if (absl::Status s = UseCertificate(c, server); !s.ok()) {
    return s;
  }
  // The server-side session cache is BoringSSL's default mode; said here so that nobody
  // turns it off by accident. Session tickets are on by default (no SSL_OP_NO_TICKET) and
  // their keys rotate automatically since none are set.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  if (!SSL_CTX_set_session_id_context(c, reinterpret_cast<const uint8_t*>(kSessionIdContext),
                                      sizeof(kSessionIdContext) - 1)) {
    return absl::InternalError("cannot set the session ID context");
  }
  if (cas.empty()) {
    // Without a CA there is nothing to verify a client certificate against, so none is
    // requested (mongod bypasses client certificate validation in that case too).
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    return ctx;
  }
  if (absl::Status s = AddTrustAnchors(c, cas, settings.ca_file); !s.ok()) {
    return s;
  }
  if (!crls.empty()) {
    if (absl::Status s = AddCrls(c, crls); !s.ok()) {
      return s;
    }
  }
  // Tell clients which CAs we accept, so one holding several certificates picks right.
  bssl::UniquePtr<STACK_OF(X509_NAME)> names(sk_X509_NAME_new_null());
  for (const bssl::UniquePtr<X509>& ca : cas) {
    bssl::UniquePtr<X509_NAME> name(X509_NAME_dup(X509_get_subject_name(ca.get())));
    if (names == nullptr || name == nullptr || !bssl::PushToStack(names.get(), std::move(name))) {
      return absl::ResourceExhaustedError("out of memory building the CA name list");
    }
  }
  SSL_CTX_set_client_CA_list(c, names.release());  // takes ownership
  // mongod with a CA file asks every client for a certificate; whether none is fine is
  // allowConnectionsWithoutCertificates.
  int mode = SSL_VERIFY_PEER;
  if (!settings.allow_connections_without_certificates) {
    mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  if (absl::Status s = SetPeerVerification(c, mode, settings, ocsp_source); !s.ok()) {
    return s;
  }
  return ctx;
}

absl::StatusOr<bssl::UniquePtr<SSL_CTX>> NewClientContext(
    const TlsSettings& settings, std::pair<uint16_t, uint16_t> versions,
    const CertificateKeyPair* cluster, const std::vector<bssl::UniquePtr<X509>>& cluster_cas,
    const std::string& cas_source, const std::vector<bssl::UniquePtr<X509_CRL>>& crls,
    const std::shared_ptr<OcspStatusSource>& ocsp_source) {
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx = NewContext(versions.first, versions.second);
  if (!ctx.ok()) {
    return ctx.status();
  }
  SSL_CTX* c = ctx->get();
  if (cluster != nullptr) {
    if (absl::Status s = UseCertificate(c, *cluster); !s.ok()) {
      return s;
    }
  }
  if (!cluster_cas.empty()) {
    if (absl::Status s = AddTrustAnchors(c, cluster_cas, cas_source); !s.ok()) {
      return s;
    }
  }
  if (!crls.empty()) {
    if (absl::Status s = AddCrls(c, crls); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = SetPeerVerification(c, SSL_VERIFY_PEER, settings, ocsp_source);
      !s.ok()) {
    return s;
  }
  return ctx;
}

}  // namespace sidecar::certs
