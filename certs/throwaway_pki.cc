#include "certs/throwaway_pki.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sidecar::certs {
namespace {

absl::Status Internal(absl::string_view what) {
  uint32_t err = ERR_get_error();
  char buf[256];
  ERR_error_string_n(err, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(what, " failed: ", buf));
}

std::string BioToString(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(bio, &data, &len)) {
    return "";
  }
  return std::string(reinterpret_cast<const char*>(data), len);
}

bool IsIpAddress(const std::string& host) {
  bssl::UniquePtr<ASN1_OCTET_STRING> ip(a2i_IPADDRESS(host.c_str()));
  ERR_clear_error();
  return ip != nullptr;
}

// AddExtension adds one extension written in the `openssl x509 -extfile` syntax, which is
// the shortest correct way to build SAN, key identifiers and key usage.
absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  if (ext == nullptr || !X509_add_ext(cert, ext.get(), -1)) {
    return Internal(absl::StrCat("adding extension ", OBJ_nid2sn(nid), "=", value));
  }
  return absl::OkStatus();
}

// AddMustStaple adds the TLS feature extension (1.3.6.1.5.5.7.1.24) listing status_request,
// by its DER, since BoringSSL's extension table does not know it.
absl::Status AddMustStaple(X509* cert) {
  static constexpr uint8_t kFeatures[] = {0x30, 0x03, 0x02, 0x01, 0x05};  // SEQUENCE { 5 }
  bssl::UniquePtr<ASN1_OBJECT> oid(OBJ_txt2obj("1.3.6.1.5.5.7.1.24", 1));
  bssl::UniquePtr<ASN1_OCTET_STRING> value(ASN1_OCTET_STRING_new());
  if (oid == nullptr || value == nullptr ||
      !ASN1_OCTET_STRING_set(value.get(), kFeatures, sizeof(kFeatures))) {
    return Internal("building the TLS feature extension");
  }
  bssl::UniquePtr<X509_EXTENSION> ext(
      X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 0, value.get()));
  if (ext == nullptr || !X509_add_ext(cert, ext.get(), -1)) {
    return Internal("adding the TLS feature extension");
  }
  return absl::OkStatus();
}

absl::StatusOr<bssl::UniquePtr<ASN1_TIME>> TimeFromNow(absl::Duration offset) {
  bssl::UniquePtr<ASN1_TIME> t(ASN1_TIME_new());
  if (t == nullptr || X509_gmtime_adj(t.get(), absl::ToInt64Seconds(offset)) == nullptr) {
    return Internal("setting a time");
  }
  return t;
}

// NewSerial returns `serial`, or a random positive 63-bit one for 0.
uint64_t NewSerial(uint64_t serial) {
  while (serial == 0) {
    RAND_bytes(reinterpret_cast<uint8_t*>(&serial), sizeof(serial));
    serial &= 0x7fffffffffffffffull;  // DER INTEGER stays positive in 8 bytes
  }
  return serial;
}

absl::Status SetSerialAndValidity(X509* cert, const CertificateOptions& options) {
  if (!ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), NewSerial(options.serial))) {
    return Internal("setting the serial");
  }
  absl::StatusOr<bssl::UniquePtr<ASN1_TIME>> not_before = TimeFromNow(options.valid_from);
  absl::StatusOr<bssl::UniquePtr<ASN1_TIME>> not_after =
      TimeFromNow(options.valid_from + options.lifetime);
  if (!not_before.ok()) {
    return not_before.status();
  }
  if (!not_after.ok()) {
    return not_after.status();
  }
  if (!X509_set1_notBefore(cert, not_before->get()) ||
      !X509_set1_notAfter(cert, not_after->get())) {
    return Internal("setting the validity");
  }
  return absl::OkStatus();
}

absl::Status AddSubjectEntry(X509_NAME* subject, const std::string& field,
                             const std::string& value) {
  if (!X509_NAME_add_entry_by_txt(subject, field.c_str(), MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(value.data()),
                                  static_cast<int>(value.size()), -1, 0)) {
    return Internal(absl::StrCat("adding subject attribute ", field));
  }
  return absl::OkStatus();
}

// SetSubject writes the further attributes first and the CN last, so that the RFC 4514
// string reads "CN=<common_name>,...".
absl::Status SetSubject(X509* cert, const CertificateOptions& options) {
  X509_NAME* subject = X509_get_subject_name(cert);
  for (const auto& [field, value] : options.subject_attributes) {
    if (absl::Status s = AddSubjectEntry(subject, field, value); !s.ok()) {
      return s;
    }
  }
  if (!options.common_name.empty()) {
    return AddSubjectEntry(subject, "CN", options.common_name);
  }
  return absl::OkStatus();
}

// Extensions lists the extensions of a certificate made with `options`, by NID, in the
// `openssl x509 -extfile` syntax.
std::vector<std::pair<int, std::string>> Extensions(const CertificateOptions& options) {
  std::vector<std::pair<int, std::string>> extensions;
  if (options.is_ca) {
    extensions.emplace_back(NID_basic_constraints, "critical,CA:TRUE");
    extensions.emplace_back(NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  } else {
    extensions.emplace_back(NID_basic_constraints, "critical,CA:FALSE");
    extensions.emplace_back(NID_key_usage, options.key_type == KeyType::kRsa2048
                                               ? "critical,digitalSignature,keyEncipherment"
                                               : "critical,digitalSignature");
    std::vector<std::string> usages;
    if (options.server_auth) {
      usages.push_back("serverAuth");
    }
    if (options.client_auth) {
      usages.push_back("clientAuth");
    }
    if (options.ocsp_signing) {
      usages.push_back("OCSPSigning");
    }
    if (!usages.empty()) {
      extensions.emplace_back(NID_ext_key_usage, absl::StrJoin(usages, ","));
    }
  }
  std::vector<std::string> alt_names;
  for (const std::string& dns : options.dns_names) {
    alt_names.push_back(absl::StrCat("DNS:", dns));
  }
  for (const std::string& ip : options.ip_addresses) {
    alt_names.push_back(absl::StrCat("IP:", ip));
  }
  if (!alt_names.empty()) {
    extensions.emplace_back(NID_subject_alt_name, absl::StrJoin(alt_names, ","));
  }
  // Key identifiers: strict verifiers (OpenSSL 3 with X509_V_FLAG_X509_STRICT, as Python 3.13
  // uses by default) want them on every certificate a CA issues.
  if (!options.ocsp_url.empty()) {
    extensions.emplace_back(NID_info_access, absl::StrCat("OCSP;URI:", options.ocsp_url));
  }
  extensions.emplace_back(NID_subject_key_identifier, "hash");
  extensions.emplace_back(NID_authority_key_identifier, "keyid:always");
  return extensions;
}

// WritePem fills out->cert_pem and out->key_pem (PKCS#8, encrypted when a password is set).
absl::Status WritePem(const CertificateOptions& options, GeneratedCertificate* out) {
  bssl::UniquePtr<BIO> cert_bio(BIO_new(BIO_s_mem()));
  if (cert_bio == nullptr || !PEM_write_bio_X509(cert_bio.get(), out->cert.get())) {
    return Internal("writing the certificate PEM");
  }
  out->cert_pem = BioToString(cert_bio.get());

  bssl::UniquePtr<BIO> key_bio(BIO_new(BIO_s_mem()));
  const bool encrypt = !options.key_password.empty();
  std::string password = options.key_password;
  if (key_bio == nullptr ||
      !PEM_write_bio_PKCS8PrivateKey(key_bio.get(), out->key.get(),
                                     encrypt ? EVP_aes_256_cbc() : nullptr,
                                     encrypt ? password.data() : nullptr,
                                     static_cast<int>(password.size()), nullptr, nullptr)) {
    return Internal("writing the private key PEM");
  }
  out->key_pem = BioToString(key_bio.get());
  return absl::OkStatus();
}

// MakeDirectory creates `dir` (mode 0700) when missing; an existing file is an error.
absl::Status MakeDirectory(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::create_directories(dir, ec)) {
      return absl::PermissionDeniedError(
          absl::StrCat(dir, ": cannot create the directory: ", ec.message()));
    }
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  } else if (!std::filesystem::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": exists and is not a directory"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> MakeKey(KeyType type) {
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (pkey == nullptr) {
    return Internal("EVP_PKEY_new");
  }
  if (type == KeyType::kEcdsaP256) {
    bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
    if (ec == nullptr || !EC_KEY_generate_key(ec.get()) ||
        !EVP_PKEY_assign_EC_KEY(pkey.get(), ec.get())) {
      return Internal("generating a P-256 key");
    }
    ec.release();  // owned by pkey since EVP_PKEY_assign_EC_KEY succeeded
  } else {
    bssl::UniquePtr<RSA> rsa(RSA_new());
    bssl::UniquePtr<BIGNUM> e(BN_new());
    if (rsa == nullptr || e == nullptr || !BN_set_word(e.get(), RSA_F4) ||
        !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr) ||
        !EVP_PKEY_assign_RSA(pkey.get(), rsa.get())) {
      return Internal("generating an RSA-2048 key");
    }
    rsa.release();  // owned by pkey
  }
  return pkey;
}

absl::StatusOr<GeneratedCertificate> MakeCertificate(const CertificateOptions& options) {
  GeneratedCertificate out;
  if (options.reuse_key != nullptr) {
    out.key = bssl::UpRef(options.reuse_key);  // the caller keeps its reference
  } else {
    absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key = MakeKey(options.key_type);
    if (!key.ok()) {
      return key.status();
    }
    out.key = std::move(*key);
  }
  out.cert.reset(X509_new());
  X509* cert = out.cert.get();
  if (cert == nullptr || !X509_set_version(cert, X509_VERSION_3)) {
    return Internal("X509_new");
  }
  if (absl::Status s = SetSerialAndValidity(cert, options); !s.ok()) {
    return s;
  }
  if (absl::Status s = SetSubject(cert, options); !s.ok()) {
    return s;
  }
  X509* issuer_cert = options.issuer != nullptr ? options.issuer->cert.get() : cert;
  EVP_PKEY* issuer_key = options.issuer != nullptr ? options.issuer->key.get() : out.key.get();
  if (!X509_set_issuer_name(cert, X509_get_subject_name(issuer_cert)) ||
      !X509_set_pubkey(cert, out.key.get())) {
    return Internal("setting issuer and public key");
  }
  if (options.must_staple) {
    if (absl::Status s = AddMustStaple(cert); !s.ok()) {
      return s;
    }
  }
  for (const auto& [nid, value] : Extensions(options)) {
    if (absl::Status s = AddExtension(cert, issuer_cert, nid, value); !s.ok()) {
      return s;
    }
  }
  if (!X509_sign(cert, issuer_key, EVP_sha256())) {
    return Internal("signing the certificate");
  }
  if (absl::Status s = WritePem(options, &out); !s.ok()) {
    return s;
  }
  return out;
}

absl::StatusOr<ThrowawayPki> MakeThrowawayPki(const ThrowawayPkiOptions& options) {
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  for (const std::string& host : options.hosts) {
    (IsIpAddress(host) ? ip_addresses : dns_names).push_back(host);
  }
  auto add_unique = [](std::vector<std::string>& list, const std::string& value) {
    if (std::find(list.begin(), list.end(), value) == list.end()) {
      list.push_back(value);
    }
  };
  add_unique(dns_names, "localhost");
  add_unique(ip_addresses, "127.0.0.1");
  add_unique(ip_addresses, "::1");
  const std::pair<std::string, std::string> org = {"O", options.organization};

  ThrowawayPki pki;
  CertificateOptions ca_options;
  ca_options.common_name = options.ca_common_name;
  ca_options.subject_attributes = {org};
  ca_options.is_ca = true;
  absl::StatusOr<GeneratedCertificate> ca = MakeCertificate(ca_options);
  if (!ca.ok()) {
    return ca.status();
  }
  pki.ca = std::move(*ca);

  CertificateOptions server_options;
  server_options.common_name = dns_names.front();
  server_options.subject_attributes = {org, {"OU", "server"}};
  server_options.dns_names = dns_names;
  server_options.ip_addresses = ip_addresses;
  server_options.issuer = &pki.ca;
  server_options.ocsp_url = options.ocsp_url;
  CertificateOptions cluster_options = server_options;
  cluster_options.subject_attributes = {org, {"OU", "cluster"}};
  CertificateOptions client_options;
  client_options.common_name = "client";
  client_options.subject_attributes = {org, {"OU", "client"}};
  client_options.server_auth = false;
  client_options.issuer = &pki.ca;
  client_options.ocsp_url = options.ocsp_url;
  for (auto [made, leaf_options] :
       {std::pair{&pki.server, &server_options}, std::pair{&pki.cluster, &cluster_options},
        std::pair{&pki.client, &client_options}}) {
    absl::StatusOr<GeneratedCertificate> leaf = MakeCertificate(*leaf_options);
    if (!leaf.ok()) {
      return leaf.status();
    }
    *made = std::move(*leaf);
  }
  if (!options.ocsp_url.empty()) {
    CertificateOptions responder_options;
    responder_options.common_name = "tls-sidecar test OCSP responder";
    responder_options.subject_attributes = {org, {"OU", "ocsp"}};
    responder_options.server_auth = false;
    responder_options.client_auth = false;
    responder_options.ocsp_signing = true;
    responder_options.issuer = &pki.ca;
    absl::StatusOr<GeneratedCertificate> responder = MakeCertificate(responder_options);
    if (!responder.ok()) {
      return responder.status();
    }
    pki.ocsp_responder = std::move(*responder);
  }
  return pki;
}

absl::Status WriteFile(const std::string& path, const std::string& contents, int mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot be written: ", std::strerror(errno)));
  }
  // open() applies the umask and keeps the mode of an existing file; keys must end up 0600.
  if (fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    int err = errno;
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot set its mode: ", std::strerror(err)));
  }
  FILE* file = fdopen(fd, "w");  // owns fd from here on: fclose closes it
  if (file == nullptr) {
    int err = errno;
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot be written: ", std::strerror(err)));
  }
  const bool all_written =
      std::fwrite(contents.data(), 1, contents.size(), file) == contents.size();
  const int write_error = errno;
  if (std::fclose(file) != 0 || !all_written) {
    return absl::PermissionDeniedError(absl::StrCat(
        path, ": cannot be written: ", std::strerror(all_written ? errno : write_error)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> WriteThrowawayPki(const std::string& dir,
                                                           const ThrowawayPkiOptions& options) {
  if (absl::Status s = MakeDirectory(dir); !s.ok()) {
    return s;
  }
  std::vector<std::string> names = {"ca.pem", "server.pem", "cluster.pem", "client.pem"};
  if (!options.ocsp_url.empty()) {
    names.push_back("ocsp-responder.pem");
  }
  std::vector<std::string> paths;
  std::error_code ec;
  for (const std::string& name : names) {
    paths.push_back((std::filesystem::path(dir) / name).string());
    if (!options.overwrite && std::filesystem::exists(paths.back(), ec)) {
      return absl::AlreadyExistsError(
          absl::StrCat(paths.back(), ": already exists; remove it or choose another directory"));
    }
  }
  absl::StatusOr<ThrowawayPki> pki = MakeThrowawayPki(options);
  if (!pki.ok()) {
    return pki.status();
  }
  std::vector<std::pair<std::string, int>> contents = {
      {pki->ca.cert_pem, 0644},
      {pki->server.CertificateKeyPem(), 0600},
      {pki->cluster.CertificateKeyPem(), 0600},
      {pki->client.CertificateKeyPem(), 0600},
  };
  if (!options.ocsp_url.empty()) {
    contents.push_back({pki->ocsp_responder.CertificateKeyPem(), 0600});
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    if (absl::Status s = WriteFile(paths[i], contents[i].first, contents[i].second); !s.ok()) {
      return s;
    }
  }
  return paths;
}

}  // namespace sidecar::certs
