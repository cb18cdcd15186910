// TlsSettings is the certificate and TLS policy part of the configuration (SPEC §5
// [net.tls]), as plain values. proxy/config/ fills it from the TOML file and the flags;
// certs/ turns it into TLS contexts. Copyable; no I/O happens here.
#ifndef SIDECAR_CERTS_TLS_SETTINGS_H_
#define SIDECAR_CERTS_TLS_SETTINGS_H_

#include <set>
#include <string>

namespace sidecar::certs {

// TLS protocol versions as named in `disabledProtocols` (TLS1_0 ... TLS1_3).
enum class TlsProtocol { kTls1_0, kTls1_1, kTls1_2, kTls1_3 };

struct TlsSettings {
  std::string certificate_key_file;           // certificateKeyFile / PEMKeyFile
  std::string certificate_key_file_password;  // certificateKeyFilePassword / PEMKeyPassword
  std::string ca_file;                        // CAFile
  std::string crl_file;                       // CRLFile (needs ca_file)
  std::string cluster_file;                   // clusterFile; empty: certificate_key_file
  std::string cluster_file_password;  // clusterPassword; empty: certificate_key_file_password
  std::string cluster_ca_file;        // clusterCAFile; empty: ca_file
  std::string certificate_selector;   // "subject=..." or "thumbprint=..."
  std::string cluster_certificate_selector;
  std::string certificate_store;  // directory searched by the selectors
  // As mongod: with a CAFile, a client that presents no certificate is refused unless this
  // is set.
  bool allow_connections_without_certificates = false;
  bool allow_invalid_certificates = false;
  bool allow_invalid_hostnames = false;
  std::set<TlsProtocol> disabled_protocols = {TlsProtocol::kTls1_0, TlsProtocol::kTls1_1};

  // True when a server certificate is configured, by file or by selector.
  bool HasServerCertificate() const {
    return !certificate_key_file.empty() || !certificate_selector.empty();
  }
};

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_TLS_SETTINGS_H_
