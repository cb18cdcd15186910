#include "certs/pem_file.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "certs/certificate_info.h"

namespace sidecar::certs {
namespace {

// PemBlock is one decoded "-----BEGIN NAME-----" block.
struct PemBlock {
  std::string name;
  std::string header;  // e.g. "Proc-Type: 4,ENCRYPTED" for legacy encrypted keys
  std::string der;
};

bool IsPrivateKeyName(const std::string& name) {
  return name == "PRIVATE KEY" || name == "ENCRYPTED PRIVATE KEY" || name == "RSA PRIVATE KEY" ||
         name == "EC PRIVATE KEY";
}

// SplitPem decodes every PEM block of `text`. "not PEM" when there is no block at all, so a
// DER file or a wrong path pointed at a text file is reported as such.
absl::StatusOr<std::vector<PemBlock>> SplitPem(const std::string& text, const std::string& path) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (bio == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": out of memory"));
  }
  std::vector<PemBlock> blocks;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    uint8_t* data = nullptr;
    long len = 0;
    if (!PEM_read_bio(bio.get(), &name, &header, &data, &len)) {
      uint32_t err = ERR_peek_last_error();
      ERR_clear_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        break;  // end of input
      }
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not PEM: block ", blocks.size() + 1, " is malformed"));
    }
    PemBlock block{name, header,
                   std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(len))};
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    blocks.push_back(std::move(block));
  }
  if (blocks.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not PEM (no \"-----BEGIN ...-----\" block found)"));
  }
  return blocks;
}

absl::StatusOr<bssl::UniquePtr<X509>> ParseCertificate(const PemBlock& block,
                                                       const std::string& path, int index) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(block.der.data());
  bssl::UniquePtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(block.der.size())));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": certificate ", index, " cannot be parsed (not X.509 DER)"));
  }
  return cert;
}

// PasswordCallback hands BoringSSL the configured password; returning 0 for an empty one
// makes decryption fail instead of prompting on a terminal.
int PasswordCallback(char* buf, int size, int rwflag, void* userdata) {
  const std::string* password = static_cast<const std::string*>(userdata);
  if (password == nullptr || password->empty() || password->size() > static_cast<size_t>(size)) {
    return 0;
  }
  std::memcpy(buf, password->data(), password->size());
  return static_cast<int>(password->size());
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  if (path.find('\0') != std::string::npos) {
    // open() would stop at the NUL and read another file than the one named.
    return absl::InvalidArgumentError(
        absl::StrCat(path.substr(0, path.find('\0')), "...: the path holds a NUL byte"));
  }
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever, and
  // start-up with it. Regular files ignore the flag.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": not found"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot be read: ", std::strerror(err)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot be read: ", std::strerror(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a file"));
  }
  // A device (/dev/zero, /dev/urandom) never ends and a FIFO or socket may never send: only
  // regular files are read, so start-up and reload cannot hang or eat memory.
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": is not a regular file (a device, FIFO or socket)"));
  }
  if (st.st_size > static_cast<off_t>(kMaxFileSize)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is larger than ", kMaxFileSize / 1024,
                                                   " KiB (", st.st_size,
                                                   " bytes); not a certificate, key or config"));
  }
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      close(fd);
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": cannot be read: ", std::strerror(err)));
    }
    if (n == 0) {
      break;
    }
    // The size checked above may grow while the file is written: the cap holds regardless.
    if (text.size() + static_cast<size_t>(n) > kMaxFileSize) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": is larger than ", kMaxFileSize / 1024,
                                                     " KiB; not a certificate, key or config"));
    }
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

// ReadPemBlocks reads `path` and splits it into its PEM blocks; errors name the file.
absl::StatusOr<std::vector<PemBlock>> ReadPemBlocks(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return text.status();
  }
  return SplitPem(*text, path);
}

namespace {

// CheckKeyMatchesLeaf: the key belongs to the first certificate, the one presented.
absl::Status CheckKeyMatchesLeaf(const CertificateKeyPair& pair) {
  const std::string& path = pair.source;
  if (X509_check_private_key(pair.leaf.get(), pair.key.get())) {
    return absl::OkStatus();
  }
  ERR_clear_error();
  // A key that belongs to a later certificate means the file lists the chain in the wrong
  // order, which deserves its own hint.
  for (size_t i = 0; i < pair.chain.size(); ++i) {
    if (X509_check_private_key(pair.chain[i].get(), pair.key.get())) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": the private key belongs to certificate ", i + 2, " (",
                       FormatName(X509_get_subject_name(pair.chain[i].get())),
                       "), not to the first one; put that certificate first, then its issuers"));
    }
    ERR_clear_error();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": the private key does not match the certificate ",
                   FormatName(X509_get_subject_name(pair.leaf.get()))));
}

}  // namespace

absl::StatusOr<CertificateKeyPair> LoadCertificateKeyFile(const std::string& path,
                                                          const std::string& password) {
  // The text is read once: the key is parsed from it in a second pass below.
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return text.status();
  }
  absl::StatusOr<std::vector<PemBlock>> blocks = SplitPem(*text, path);
  if (!blocks.ok()) {
    return blocks.status();
  }
  CertificateKeyPair pair;
  pair.source = path;
  bool key_seen = false;
  bool key_encrypted = false;
  int cert_index = 0;
  for (const PemBlock& block : *blocks) {
    if (block.name == "CERTIFICATE" || block.name == "X509 CERTIFICATE" ||
        block.name == "TRUSTED CERTIFICATE") {
      absl::StatusOr<bssl::UniquePtr<X509>> cert = ParseCertificate(block, path, ++cert_index);
      if (!cert.ok()) {
        return cert.status();
      }
      if (pair.leaf == nullptr) {
        pair.leaf = std::move(*cert);
      } else {
        pair.chain.push_back(std::move(*cert));
      }
    } else if (IsPrivateKeyName(block.name)) {
      if (key_seen) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": holds more than one private key"));
      }
      key_seen = true;
      key_encrypted =
          block.name == "ENCRYPTED PRIVATE KEY" || absl::StrContains(block.header, "ENCRYPTED");
    }
  }
  if (pair.leaf == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds no CERTIFICATE block"));
  }
  if (!key_seen) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": holds no private key (expected the certificate and its key in "
                     "one PEM file)"));
  }
  if (key_encrypted && password.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the private key is encrypted and no password was given"));
  }
  // A second pass with the PEM key reader: it skips the certificate blocks and understands
  // both PKCS#8 "ENCRYPTED PRIVATE KEY" and legacy "Proc-Type: 4,ENCRYPTED" keys.
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  pair.key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, PasswordCallback,
                                         const_cast<std::string*>(&password)));
  ERR_clear_error();
  if (pair.key == nullptr) {
    if (key_encrypted) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": wrong password for the encrypted private key"));
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": the private key cannot be parsed"));
  }
  if (absl::Status s = CheckKeyMatchesLeaf(pair); !s.ok()) {
    return s;
  }
  return pair;
}

absl::StatusOr<std::vector<bssl::UniquePtr<X509>>> LoadCertificates(const std::string& path) {
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPemBlocks(path);
  if (!blocks.ok()) {
    return blocks.status();
  }
  std::vector<bssl::UniquePtr<X509>> certs;
  int index = 0;
  for (const PemBlock& block : *blocks) {
    if (block.name == "CERTIFICATE" || block.name == "X509 CERTIFICATE" ||
        block.name == "TRUSTED CERTIFICATE") {
      absl::StatusOr<bssl::UniquePtr<X509>> cert = ParseCertificate(block, path, ++index);
      if (!cert.ok()) {
        return cert.status();
      }
      certs.push_back(std::move(*cert));
    }
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds no CERTIFICATE block"));
  }
  return certs;
}

absl::StatusOr<std::vector<bssl::UniquePtr<X509_CRL>>> LoadCrls(const std::string& path) {
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPemBlocks(path);
  if (!blocks.ok()) {
    return blocks.status();
  }
  std::vector<bssl::UniquePtr<X509_CRL>> crls;
  for (const PemBlock& block : *blocks) {
    if (block.name != "X509 CRL") {
      continue;
    }
    const uint8_t* p = reinterpret_cast<const uint8_t*>(block.der.data());
    bssl::UniquePtr<X509_CRL> crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(block.der.size())));
    ERR_clear_error();
    if (crl == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": CRL ", crls.size() + 1, " cannot be parsed"));
    }
    crls.push_back(std::move(crl));
  }
  if (crls.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds no X509 CRL block"));
  }
  return crls;
}

std::vector<std::string> FilePermissionWarnings(const TlsSettings& tls,
                                                const std::string& config_file) {
  std::vector<std::string> warnings;
  auto mode_text = [](mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
    return std::string(text);
  };
  std::vector<std::pair<std::string, const std::string*>> keys = {
      {"net.tls.certificateKeyFile", &tls.certificate_key_file},
      {"net.tls.clusterFile", &tls.cluster_file}};
  for (const auto& [option, path] : keys) {
    struct stat st;
    if (path->empty() || (option == "net.tls.clusterFile" && *path == tls.certificate_key_file) ||
        stat(path->c_str(), &st) != 0) {
      continue;
    }
    if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
      warnings.push_back(absl::StrCat(
          option, " ", *path, " holds a private key and is readable by ",
          (st.st_mode & S_IROTH) != 0 ? "every user of the host" : "its group", " (mode ",
          mode_text(st.st_mode), "); make it readable by the sidecar's user only (chmod 600)."));
    }
  }
  struct stat st;
  if (!config_file.empty() && stat(config_file.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0) {
    warnings.push_back(absl::StrCat(
        "The configuration file ", config_file, " is writable by every user of the host (mode ",
        mode_text(st.st_mode),
        "), who could change the mode and the certificates at the next start or persist; "
        "chmod o-w it."));
  }
  return warnings;
}

absl::Status CheckValidity(X509* cert, const std::string& path, int64_t now_unix) {
  absl::StatusOr<int64_t> not_before = AsnTimeToUnix(X509_get0_notBefore(cert));
  absl::StatusOr<int64_t> not_after = AsnTimeToUnix(X509_get0_notAfter(cert));
  if (!not_before.ok() || !not_after.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the certificate has a malformed validity period"));
  }
  std::string subject = FormatName(X509_get_subject_name(cert));
  if (now_unix < *not_before) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": the certificate ", subject,
                                                      " is not yet valid (valid from ",
                                                      FormatUnixTime(*not_before), ")"));
  }
  if (now_unix > *not_after) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": the certificate ", subject,
                                                      " expired on ", FormatUnixTime(*not_after)));
  }
  return absl::OkStatus();
}

}  // namespace sidecar::certs
