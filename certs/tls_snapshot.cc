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
#include "certs/tls_contexts.h"

namespace sidecar::certs {
namespace {

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

// Trust is what peers are verified against: CAFile's certificates and CRLs, and
// clusterCAFile's certificates when that is a file of its own.
struct Trust {
  std::vector<bssl::UniquePtr<X509>> cas;
  bool separate_cluster_ca = false;
  std::vector<bssl::UniquePtr<X509>> separate_cluster_cas;
  std::vector<bssl::UniquePtr<X509_CRL>> crls;
};

absl::StatusOr<Trust> LoadTrust(const TlsSettings& settings, int64_t now) {
  if (!settings.crl_file.empty() && settings.ca_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CRLFile ", settings.crl_file,
                     " is set without CAFile; a CRL is checked against the CA it comes from"));
  }
  Trust trust;
  if (!settings.ca_file.empty()) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> loaded = LoadCertificates(settings.ca_file);
    if (!loaded.ok()) {
      return NameSetting("net.tls.CAFile", loaded.status());
    }
    trust.cas = std::move(*loaded);
  }
  trust.separate_cluster_ca =
      !settings.cluster_ca_file.empty() && settings.cluster_ca_file != settings.ca_file;
  if (trust.separate_cluster_ca) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> loaded =
        LoadCertificates(settings.cluster_ca_file);
    if (!loaded.ok()) {
      return NameSetting("net.tls.clusterCAFile", loaded.status());
    }
    trust.separate_cluster_cas = std::move(*loaded);
  }
  if (!settings.crl_file.empty()) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509_CRL>>> loaded = LoadCrls(settings.crl_file);
    if (!loaded.ok()) {
      return NameSetting("net.tls.CRLFile", loaded.status());
    }
    trust.crls = std::move(*loaded);
    if (absl::Status s =
            CheckCrls(trust.crls, trust.cas, settings.crl_file, settings.ca_file, now);
        !s.ok()) {
      return NameSetting("net.tls.CRLFile", s);
    }
  }
  return trust;
}

// LoadedInfos describes what was loaded, for status and metrics: the server and cluster
// leaves (either may be null), then the CAs.
std::vector<CertificateInfo> LoadedInfos(const TlsSettings& settings,
                                         const CertificateKeyPair* server,
                                         const CertificateKeyPair* cluster, const Trust& trust) {
  std::vector<CertificateInfo> infos;
  for (auto [pair, role] : {std::pair{server, "server"}, std::pair{cluster, "cluster"}}) {
    if (pair != nullptr) {
      CertificateInfo info = Inspect(pair->leaf.get());
      info.role = role;
      info.source = pair->source;
      infos.push_back(std::move(info));
    }
  }
  AppendInfos(infos, trust.cas, "ca", settings.ca_file);
  AppendInfos(infos, trust.separate_cluster_cas, "cluster_ca", settings.cluster_ca_file);
  return infos;
}

// LoadClusterCertificate loads the clusterFile (or clusterCertificateSelector) pair; none
// when neither is set, and the server certificate then serves the cluster role.
absl::StatusOr<std::optional<CertificateKeyPair>> LoadClusterCertificate(
    const TlsSettings& settings, int64_t now) {
  const std::string& password = settings.cluster_file_password.empty()
                                    ? settings.certificate_key_file_password
                                    : settings.cluster_file_password;
  absl::StatusOr<std::optional<CertificateKeyPair>> cluster = LoadRoleCertificate(
      settings.cluster_file, "clusterFile", settings.cluster_certificate_selector,
      "clusterCertificateSelector", settings.certificate_store, password, now);
  if (!cluster.ok() && !settings.cluster_file.empty()) {
    return NameSetting("net.tls.clusterFile", cluster.status());
  }
  return cluster;
}

// IssuerOf finds the issuer of `server`'s leaf among its chain and the CAs, for OCSP requests.
bssl::UniquePtr<X509> IssuerOf(const CertificateKeyPair& server,
                               const std::vector<bssl::UniquePtr<X509>>& cas) {
  std::vector<X509*> candidates;
  for (const auto& cert : server.chain) {
    candidates.push_back(cert.get());
  }
  for (const auto& cert : cas) {
    candidates.push_back(cert.get());
  }
  return FindIssuer(server.leaf.get(), candidates);
}

}  // namespace

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
  absl::StatusOr<std::optional<CertificateKeyPair>> cluster = LoadClusterCertificate(settings, now);
  if (!cluster.ok()) {
    return cluster.status();
  }
  const CertificateKeyPair* cluster_pair =
      cluster->has_value() ? &**cluster : (server->has_value() ? &**server : nullptr);

  absl::StatusOr<Trust> trust = LoadTrust(settings, now);
  if (!trust.ok()) {
    return trust.status();
  }
  const std::vector<bssl::UniquePtr<X509>>& cas = trust->cas;
  const std::vector<bssl::UniquePtr<X509_CRL>>& crls = trust->crls;
  const bool separate_cluster_ca = trust->separate_cluster_ca;
  const std::vector<bssl::UniquePtr<X509>>& cluster_cas =
      separate_cluster_ca ? trust->separate_cluster_cas : cas;

  // The contexts, by role.
  if (server->has_value()) {
    absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx =
        NewServerContext(settings, *versions, **server, cas, crls, ocsp_source);
    if (!ctx.ok()) {
      return ctx.status();
    }
    snapshot->server_context_ = *std::move(ctx);
    snapshot->server_leaf_ = bssl::UpRef((*server)->leaf);  // shares the certificate
    snapshot->server_issuer_ = IssuerOf(**server, cas);
    if (settings.ocsp.enabled) {
      snapshot->ocsp_staple_ = std::make_shared<OcspStaple>();
      if (absl::Status s = InstallStapling(snapshot->server_context_.get(),
                                           snapshot->ocsp_staple_);
          !s.ok()) {
        return s;
      }
    }
  }
  if (!cluster_cas.empty() || settings.allow_invalid_certificates) {
    // The CRL belongs to CAFile; it applies to peers only when they are verified against the
    // same CAs, otherwise CRL checking would fail every peer for want of their issuer's CRL.
    static const std::vector<bssl::UniquePtr<X509_CRL>> kNoCrls;
    absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx = NewClientContext(
        settings, *versions, cluster_pair, cluster_cas,
        separate_cluster_ca ? settings.cluster_ca_file : settings.ca_file,
        separate_cluster_ca ? kNoCrls : crls, ocsp_source);
    if (!ctx.ok()) {
      return ctx.status();
    }
    snapshot->client_context_ = *std::move(ctx);
  }

  snapshot->certificates_ =
      LoadedInfos(settings, server->has_value() ? &**server : nullptr, cluster_pair, *trust);
  return std::shared_ptr<const TlsSnapshot>(std::move(snapshot));
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
