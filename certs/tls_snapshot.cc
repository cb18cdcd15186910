#include "certs/tls_snapshot.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "certs/certificate_selector.h"
#include "certs/pem_file.h"

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

// AcceptAnyCertificate is the verify callback for allow_invalid_certificates: the chain is
// still built and checked, and the result stays visible through SSL_get_verify_result (so
// VerifiedPeerSubject reports "" for it), but a failure no longer aborts the handshake.
int AcceptAnyCertificate(int preverify_ok, X509_STORE_CTX* store_ctx) { return 1; }

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

// LoadRoleCertificate loads the certificate and key of one role from a file or a selector.
// Returns nullopt when neither is configured.
absl::StatusOr<std::optional<CertificateKeyPair>> LoadRoleCertificate(
    const std::string& file, const std::string& file_setting, const std::string& selector_text,
    const std::string& selector_setting, const std::string& store, const std::string& password,
    int64_t now) {
  if (!file.empty() && !selector_text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(selector_setting, " and ", file_setting,
                     " are both set; a certificate comes from one of them, choose one"));
  }
  std::optional<CertificateKeyPair> pair;
  if (!file.empty()) {
    absl::StatusOr<CertificateKeyPair> loaded = LoadCertificateKeyFile(file, password);
    if (!loaded.ok()) {
      return loaded.status();
    }
    pair = std::move(*loaded);
  } else if (!selector_text.empty()) {
    if (store.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(selector_setting, " needs certificateStore, the directory it searches"));
    }
    absl::StatusOr<CertificateSelector> selector = ParseCertificateSelector(selector_text);
    if (!selector.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(selector_setting, ": ", selector.status().message()));
    }
    absl::StatusOr<CertificateKeyPair> loaded = SelectFromStore(store, *selector, password);
    if (!loaded.ok()) {
      return loaded.status();
    }
    pair = std::move(*loaded);
  } else {
    return pair;
  }
  // mongod refuses to start with an expired or not yet valid certificate of its own; so do
  // we, and a reload with one keeps the previous snapshot.
  if (absl::Status s = CheckValidity(pair->leaf.get(), pair->source, now); !s.ok()) {
    return s;
  }
  return pair;
}

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

// CheckCrls makes sure every CRL is signed by one of `cas` and is current, so that a wrong
// or stale CRLFile fails at load instead of refusing every client later.
absl::Status CheckCrls(const std::vector<bssl::UniquePtr<X509_CRL>>& crls,
                       const std::vector<bssl::UniquePtr<X509>>& cas, const std::string& crl_file,
                       const std::string& ca_file, int64_t now) {
  for (const bssl::UniquePtr<X509_CRL>& crl : crls) {
    X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
    bool signed_by_ca = false;
    for (const bssl::UniquePtr<X509>& ca : cas) {
      if (X509_NAME_cmp(X509_get_subject_name(ca.get()), issuer) != 0) {
        continue;
      }
      bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(ca.get()));
      if (key != nullptr && X509_CRL_verify(crl.get(), key.get()) == 1) {
        signed_by_ca = true;
        break;
      }
    }
    ERR_clear_error();
    if (!signed_by_ca) {
      return absl::InvalidArgumentError(absl::StrCat(crl_file, ": the CRL issued by ",
                                                     FormatName(issuer),
                                                     " is not signed by a CA of ", ca_file));
    }
    const ASN1_TIME* next_update = X509_CRL_get0_nextUpdate(crl.get());
    if (next_update != nullptr) {
      absl::StatusOr<int64_t> next = AsnTimeToUnix(next_update);
      if (next.ok() && *next < now) {
        return absl::FailedPreconditionError(absl::StrCat(
            crl_file, ": the CRL issued by ", FormatName(issuer), " is out of date (nextUpdate ",
            FormatUnixTime(*next), "); every client certificate would be refused"));
      }
    }
    absl::StatusOr<int64_t> last = AsnTimeToUnix(X509_CRL_get0_lastUpdate(crl.get()));
    if (last.ok() && *last > now) {
      return absl::FailedPreconditionError(
          absl::StrCat(crl_file, ": the CRL issued by ", FormatName(issuer),
                       " is not yet valid (lastUpdate ", FormatUnixTime(*last), ")"));
    }
  }
  return absl::OkStatus();
}

void AppendInfos(std::vector<CertificateInfo>& out, const std::vector<bssl::UniquePtr<X509>>& certs,
                 const std::string& role, const std::string& source) {
  for (const bssl::UniquePtr<X509>& cert : certs) {
    CertificateInfo info = Inspect(cert.get());
    info.role = role;
    info.source = source;
    out.push_back(std::move(info));
  }
}

bool IsIpLiteral(const std::string& host) {
  bssl::UniquePtr<ASN1_OCTET_STRING> ip(a2i_IPADDRESS(host.c_str()));
  ERR_clear_error();
  return ip != nullptr;
}

// NameSetting puts the configuration key in front of a file's error ("net.tls.CAFile: pki:
// is a directory, not a file"), so that the operator knows which setting to fix; the
// sidecar swaps the key for the file line or flag that set it (proxy/server.cc).
absl::Status NameSetting(const char* key, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(key, ": ", status.message()));
}

}  // namespace

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

TlsSnapshot::~TlsSnapshot() = default;

absl::StatusOr<std::shared_ptr<const TlsSnapshot>> TlsSnapshot::Create(
    const TlsSettings& settings, std::shared_ptr<OcspStatusSource> ocsp_source) {
  const int64_t now = static_cast<int64_t>(time(nullptr));
  std::shared_ptr<TlsSnapshot> snapshot(new TlsSnapshot());
  snapshot->settings_ = settings;

  absl::StatusOr<std::pair<uint16_t, uint16_t>> versions =
      ProtocolVersionRange(settings.disabled_protocols);
  if (!versions.ok()) {
    return versions.status();
  }
  if (!settings.crl_file.empty() && settings.ca_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CRLFile ", settings.crl_file,
                     " is set without CAFile; a CRL is checked against the CA it comes from"));
  }

  // Server certificate.
  absl::StatusOr<std::optional<CertificateKeyPair>> server =
      LoadRoleCertificate(settings.certificate_key_file, "certificateKeyFile",
                          settings.certificate_selector, "certificateSelector",
                          settings.certificate_store, settings.certificate_key_file_password, now);
  if (!server.ok()) {
    return settings.certificate_key_file.empty()
               ? server.status()
               : NameSetting("net.tls.certificateKeyFile", server.status());
  }

  // Cluster certificate: its own file or selector, else the server certificate.
  const std::string& cluster_password = settings.cluster_file_password.empty()
                                            ? settings.certificate_key_file_password
                                            : settings.cluster_file_password;
  absl::StatusOr<std::optional<CertificateKeyPair>> cluster = LoadRoleCertificate(
      settings.cluster_file, "clusterFile", settings.cluster_certificate_selector,
      "clusterCertificateSelector", settings.certificate_store, cluster_password, now);
  if (!cluster.ok()) {
    return settings.cluster_file.empty() ? cluster.status()
                                         : NameSetting("net.tls.clusterFile", cluster.status());
  }
  const CertificateKeyPair* cluster_pair =
      cluster->has_value() ? &**cluster : (server->has_value() ? &**server : nullptr);

  // CAs and CRLs.
  std::vector<bssl::UniquePtr<X509>> cas;
  if (!settings.ca_file.empty()) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> loaded = LoadCertificates(settings.ca_file);
    if (!loaded.ok()) {
      return NameSetting("net.tls.CAFile", loaded.status());
    }
    cas = std::move(*loaded);
  }
  const bool separate_cluster_ca =
      !settings.cluster_ca_file.empty() && settings.cluster_ca_file != settings.ca_file;
  std::vector<bssl::UniquePtr<X509>> separate_cluster_cas;
  if (separate_cluster_ca) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> loaded =
        LoadCertificates(settings.cluster_ca_file);
    if (!loaded.ok()) {
      return NameSetting("net.tls.clusterCAFile", loaded.status());
    }
    separate_cluster_cas = std::move(*loaded);
  }
  const std::vector<bssl::UniquePtr<X509>>& cluster_cas =
      separate_cluster_ca ? separate_cluster_cas : cas;
  std::vector<bssl::UniquePtr<X509_CRL>> crls;
  if (!settings.crl_file.empty()) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509_CRL>>> loaded = LoadCrls(settings.crl_file);
    if (!loaded.ok()) {
      return NameSetting("net.tls.CRLFile", loaded.status());
    }
    crls = std::move(*loaded);
    if (absl::Status s = CheckCrls(crls, cas, settings.crl_file, settings.ca_file, now); !s.ok()) {
      return NameSetting("net.tls.CRLFile", s);
    }
  }

  // Ingress (server) context.
  if (server->has_value()) {
    absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx = NewContext(versions->first, versions->second);
    if (!ctx.ok()) {
      return ctx.status();
    }
    SSL_CTX* c = ctx->get();
    if (absl::Status s = UseCertificate(c, **server); !s.ok()) {
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
    if (!cas.empty()) {
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
        if (names == nullptr || name == nullptr ||
            !bssl::PushToStack(names.get(), std::move(name))) {
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
    } else {
      // Without a CA there is nothing to verify a client certificate against, so none is
      // requested (mongod bypasses client certificate validation in that case too).
      SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    }
    snapshot->server_context_ = std::move(*ctx);
    snapshot->server_leaf_ = bssl::UpRef((*server)->leaf);  // shares the certificate
    std::vector<X509*> candidates;
    for (const auto& cert : (*server)->chain) {
      candidates.push_back(cert.get());
    }
    for (const auto& cert : cas) {
      candidates.push_back(cert.get());
    }
    snapshot->server_issuer_ = FindIssuer((*server)->leaf.get(), candidates);
    if (settings.ocsp.enabled) {
      snapshot->ocsp_staple_ = std::make_shared<OcspStaple>();
      if (absl::Status s = InstallStapling(snapshot->server_context_.get(),
                                           snapshot->ocsp_staple_);
          !s.ok()) {
        return s;
      }
    }
  }

  // Egress (client) context.
  if (!cluster_cas.empty() || settings.allow_invalid_certificates) {
    absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx = NewContext(versions->first, versions->second);
    if (!ctx.ok()) {
      return ctx.status();
    }
    SSL_CTX* c = ctx->get();
    if (cluster_pair != nullptr) {
      if (absl::Status s = UseCertificate(c, *cluster_pair); !s.ok()) {
        return s;
      }
    }
    if (!cluster_cas.empty()) {
      const std::string& source = separate_cluster_ca ? settings.cluster_ca_file : settings.ca_file;
      if (absl::Status s = AddTrustAnchors(c, cluster_cas, source); !s.ok()) {
        return s;
      }
    }
    // The CRL belongs to CAFile; it applies to peers only when they are verified against the
    // same CAs, otherwise CRL checking would fail every peer for want of their issuer's CRL.
    if (!crls.empty() && !separate_cluster_ca) {
      if (absl::Status s = AddCrls(c, crls); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = SetPeerVerification(c, SSL_VERIFY_PEER, settings, ocsp_source);
        !s.ok()) {
      return s;
    }
    snapshot->client_context_ = std::move(*ctx);
  }

  // What was loaded, for status and metrics.
  if (server->has_value()) {
    CertificateInfo info = Inspect((*server)->leaf.get());
    info.role = "server";
    info.source = (*server)->source;
    snapshot->certificates_.push_back(std::move(info));
  }
  if (cluster_pair != nullptr) {
    CertificateInfo info = Inspect(cluster_pair->leaf.get());
    info.role = "cluster";
    info.source = cluster_pair->source;
    snapshot->certificates_.push_back(std::move(info));
  }
  AppendInfos(snapshot->certificates_, cas, "ca", settings.ca_file);
  AppendInfos(snapshot->certificates_, separate_cluster_cas, "cluster_ca",
              settings.cluster_ca_file);
  return std::shared_ptr<const TlsSnapshot>(std::move(snapshot));
}

bssl::UniquePtr<SSL> TlsSnapshot::NewIngressSession() const {
  if (server_context_ == nullptr) {
    return nullptr;
  }
  bssl::UniquePtr<SSL> ssl(SSL_new(server_context_.get()));
  if (ssl != nullptr) {
    SSL_set_accept_state(ssl.get());
  }
  return ssl;
}

absl::StatusOr<bssl::UniquePtr<SSL>> TlsSnapshot::NewEgressSession(const std::string& host) const {
  if (client_context_ == nullptr) {
    return absl::FailedPreconditionError(
        "no TLS client context: set CAFile or clusterCAFile to verify peers");
  }
  bssl::UniquePtr<SSL> ssl(SSL_new(client_context_.get()));
  if (ssl == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("SSL_new: ", OpenSslError()));
  }
  SSL_set_connect_state(ssl.get());
  if (absl::Status s = PrepareEgressSession(ssl.get(), host); !s.ok()) {
    return s;
  }
  return ssl;
}

absl::Status TlsSnapshot::PrepareEgressSession(SSL* ssl, const std::string& host) const {
  if (host.empty()) {
    return absl::InvalidArgumentError("egress peer host is empty");
  }
  const bool is_ip = IsIpLiteral(host);
  if (!is_ip && !SSL_set_tlsext_host_name(ssl, host.c_str())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot send SNI for ", host, ": ", OpenSslError()));
  }
  if (settings_.allow_invalid_hostnames) {
    return absl::OkStatus();
  }
  if (is_ip) {
    if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str())) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot verify the IP address ", host, ": ", OpenSslError()));
    }
  } else if (!SSL_set1_host(ssl, host.c_str())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot verify the host name ", host, ": ", OpenSslError()));
  }
  return absl::OkStatus();
}

bool TlsSnapshot::MatchesServerName(const std::string& sni) const {
  if (server_leaf_ == nullptr || sni.empty()) {
    return false;
  }
  return X509_check_host(server_leaf_.get(), sni.data(), sni.size(), 0, nullptr) == 1;
}

std::vector<std::string> TlsSnapshot::ExpiryWarnings(int days) const {
  return certs::ExpiryWarnings(certificates_, days, static_cast<int64_t>(time(nullptr)));
}

std::string VerifiedPeerSubject(const SSL* ssl) {
  if (ssl == nullptr) {
    return "";
  }
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl));  // get1: adds a reference
  if (peer == nullptr || PeerVerifyResult(ssl) != X509_V_OK) {
    return "";
  }
  return FormatName(X509_get_subject_name(peer.get()));
}

}  // namespace sidecar::certs
