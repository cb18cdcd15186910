// Certificate selectors (SPEC §5): "subject=<CN or RFC 4514 DN>" or "thumbprint=<SHA-1 hex>"
// pick one certificate and key out of `certificateStore`, a directory of PEM files each
// holding a certificate and its key, as mongod's tlsCertificateSelector does on Windows and
// macOS. Reentrant; reads the directory on every call (reload rereads it).
#ifndef SIDECAR_CERTS_CERTIFICATE_SELECTOR_H_
#define SIDECAR_CERTS_CERTIFICATE_SELECTOR_H_

#include <string>

#include "absl/status/statusor.h"
#include "certs/pem_file.h"

namespace sidecar::certs {

// CertificateSelector is a parsed selector.
struct CertificateSelector {
  enum class Kind { kSubject, kThumbprint };
  Kind kind = Kind::kSubject;
  std::string value;  // subject as given; thumbprint as lowercase hex without separators

  std::string ToString() const;  // "subject=..." / "thumbprint=..."
};

// ParseCertificateSelector parses `text`. Thumbprints may be written in either case and
// with ':' or ' ' between bytes (as certificate viewers show them); they must be 40 hex
// digits. Error for an unknown prefix or an empty value.
absl::StatusOr<CertificateSelector> ParseCertificateSelector(const std::string& text);

// SelectorMatches says whether `cert` (borrowed) matches: for subject=, the CN or the whole
// RFC 4514 subject, compared without regard to case or to spaces around ',' and '='.
bool SelectorMatches(const CertificateSelector& selector, X509* cert);

// SelectFromStore reads every regular, non-hidden file of `store_dir`, finds the single
// certificate matching `selector` and loads it with its key (decrypted with `password`).
// Errors name the store and list what was found when zero or several certificates match;
// files without a certificate are listed as skipped.
absl::StatusOr<CertificateKeyPair> SelectFromStore(const std::string& store_dir,
                                                   const CertificateSelector& selector,
                                                   const std::string& password);

}  // namespace sidecar::certs

#endif  // SIDECAR_CERTS_CERTIFICATE_SELECTOR_H_
