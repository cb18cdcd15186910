// Loading certificates, keys, CA bundles and CRLs from PEM files. Every error names the file
// and says what is wrong in words an operator can act on ("not found", "not PEM", "wrong
// password for the encrypted private key", "private key does not match the certificate").
// Functions are reentrant; they read the file once and keep no state.
#ifndef SIDECAR_CERTS_PEM_FILE_H_
#define SIDECAR_CERTS_PEM_FILE_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "certs/tls_settings.h"

namespace sidecar::certs {

// CertificateKeyPair is a leaf certificate, the chain that follows it in the file (leaf
// first, then intermediates as written) and its private key. Owns every object.
struct CertificateKeyPair {
  std::string source;  // file it was read from
  bssl::UniquePtr<X509> leaf;
  std::vector<bssl::UniquePtr<X509>> chain;  // intermediates after the leaf, may be empty
  bssl::UniquePtr<EVP_PKEY> key;
};

// kMaxFileSize caps every file the sidecar reads (certificates, keys, CA bundles, CRLs, the
// configuration): the largest real CA bundles are a few hundred KiB.
inline constexpr size_t kMaxFileSize = 1024 * 1024;

// ReadFileToString reads `path` whole, if it is a regular file of at most kMaxFileSize
// bytes; never blocks on a FIFO and never reads a device. Errors: "PATH: not found", "PATH:
// cannot be read: <errno text>", "PATH: is a directory", "PATH: is not a regular file",
// "PATH: is larger than 1024 KiB", and for a path holding a NUL byte, which the system
// would cut short, "PATH...: the path holds a NUL byte".
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// LoadCertificateKeyFile reads a PEM file holding a certificate chain (leaf first) and the
// leaf's private key, in any order, as `certificateKeyFile` / `clusterFile` / store entries
// do. `password` decrypts an encrypted key ("" for none). Checks that the key matches the
// leaf; does not check validity dates (see CheckValidity).
absl::StatusOr<CertificateKeyPair> LoadCertificateKeyFile(const std::string& path,
                                                          const std::string& password);

// LoadCertificates reads every CERTIFICATE block of a PEM file (a CA bundle, or the
// certificate half of a store entry, without touching its key). Error when there is none.
absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> LoadCertificates(const std::string& path);

// LoadCrls reads every X509 CRL block of a PEM file. Error when there is none.
absl::StatusOr<std::vector<bssl::UniquePtr<X509_CRL>>> LoadCrls(const std::string& path);

// FilePermissionWarnings returns one sentence per file whose permissions put it at risk: a
// file holding a private key (certificateKeyFile, clusterFile) that group or others may
// read, and the configuration file (`config_file`, "" for none) when others may write it.
// Symlinks are followed (a mounted Kubernetes secret is one). Files that cannot be
// examined are left out: loading them reports why.
std::vector<std::string> FilePermissionWarnings(const TlsSettings& tls,
                                                const std::string& config_file);

// CheckValidity returns an error naming `path` when `cert` (borrowed) is expired or not yet
// valid at `now_unix`.
absl::Status CheckValidity(X509* cert, const std::string& path, int64_t now_unix);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_PEM_FILE_H_
