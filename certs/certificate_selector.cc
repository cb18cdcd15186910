#include "certs/certificate_selector.h"

#include <openssl/x509.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "certs/certificate_info.h"

namespace sidecar::certs {
namespace {

// NormalizeDn lowercases and drops blanks next to RFC 4514 separators, so "CN=a, O=B" and
// "cn=a,o=b" compare equal. Escaped separators ("\,") keep their backslash and still match.
std::string NormalizeDn(absl::string_view dn) {
  std::string out;
  out.reserve(dn.size());
  for (size_t i = 0; i < dn.size(); ++i) {
    char c = dn[i];
    if (c == ' ') {
      bool next_to_separator =
          (!out.empty() && (out.back() == ',' || out.back() == '=' || out.back() == '+')) ||
          (i + 1 < dn.size() &&
           (dn[i + 1] == ',' || dn[i + 1] == '=' || dn[i + 1] == '+' || dn[i + 1] == ' '));
      if (next_to_separator || out.empty()) {
        continue;
      }
    }
    out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  return out;
}

}  // namespace

std::string CertificateSelector::ToString() const {
  return absl::StrCat(kind == Kind::kSubject ? "subject=" : "thumbprint=", value);
}

absl::StatusOr<CertificateSelector> ParseCertificateSelector(const std::string& text) {
  CertificateSelector selector;
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "subject=")) {
    selector.kind = CertificateSelector::Kind::kSubject;
    selector.value = std::string(absl::StripAsciiWhitespace(rest));
    if (selector.value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("certificate selector \"", text, "\": the subject is empty"));
    }
    return selector;
  }
  if (absl::ConsumePrefix(&rest, "thumbprint=")) {
    selector.kind = CertificateSelector::Kind::kThumbprint;
    for (char c : rest) {
      if (c == ':' || c == ' ') {
        continue;
      }
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return absl::InvalidArgumentError(
            absl::StrCat("certificate selector \"", text, "\": the thumbprint is not hexadecimal"));
      }
      selector.value.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    }
    if (selector.value.size() != 40) {
      return absl::InvalidArgumentError(
          absl::StrCat("certificate selector \"", text,
                       "\": a thumbprint is the SHA-1 of the certificate, 40 hex digits, got ",
                       selector.value.size()));
    }
    return selector;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "certificate selector \"", text, "\": must start with \"subject=\" or \"thumbprint=\""));
}

bool SelectorMatches(const CertificateSelector& selector, X509* cert) {
  if (selector.kind == CertificateSelector::Kind::kThumbprint) {
    return Sha1Thumbprint(cert) == selector.value;
  }
  X509_NAME* subject = X509_get_subject_name(cert);
  if (absl::EqualsIgnoreCase(CommonName(subject), selector.value)) {
    return true;
  }
  return NormalizeDn(FormatName(subject)) == NormalizeDn(selector.value);
}

absl::StatusOr<CertificateKeyPair> SelectFromStore(const std::string& store_dir,
                                                   const CertificateSelector& selector,
                                                   const std::string& password) {
  std::error_code ec;
  std::filesystem::directory_iterator it(store_dir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("certificateStore ", store_dir, ": cannot be listed: ", ec.message()));
  }
  std::vector<std::string> files;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) {
      return absl::NotFoundError(
          absl::StrCat("certificateStore ", store_dir, ": cannot be listed: ", ec.message()));
    }
    const std::filesystem::directory_entry& entry = *it;
    std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !entry.is_regular_file(ec)) {
      continue;
    }
    files.push_back(entry.path().string());
  }
  // Sorted so that messages list files in a stable order.
  std::sort(files.begin(), files.end());

  std::vector<std::string> matches;
  std::vector<std::string> seen;
  for (const std::string& file : files) {
    absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> certs = LoadCertificates(file);
    if (!certs.ok()) {
      seen.push_back(absl::StrCat(file, " (skipped: ", certs.status().message(), ")"));
      continue;
    }
    X509* leaf = certs->front().get();
    std::string description = absl::StrCat(file, " (", FormatName(X509_get_subject_name(leaf)),
                                           ", sha1 ", Sha1Thumbprint(leaf), ")");
    if (SelectorMatches(selector, leaf)) {
      matches.push_back(file);
    }
    seen.push_back(std::move(description));
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "certificateStore ", store_dir, ": no certificate matches ", selector.ToString(),
        seen.empty() ? "; the store is empty" : "; found: ", absl::StrJoin(seen, "; ")));
  }
  if (matches.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("certificateStore ", store_dir, ": ", matches.size(), " certificates match ",
                     selector.ToString(), " (", absl::StrJoin(matches, ", "),
                     "); make the selector specific (full subject DN or thumbprint); found: ",
                     absl::StrJoin(seen, "; ")));
  }
  return LoadCertificateKeyFile(matches.front(), password);
}

}  // namespace sidecar::certs
