// Loading the configuration (config.h): the file first, then the flags over it, then the
// defaults that depend on other settings and the checks of combinations. The settings table
// is settings.cc, the file toml_loader.cc, the flags command_line.cc, --help help_text.cc.
#include "proxy/config/config.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "certs/pem_file.h"
#include "proxy/base/concat.h"
#include "proxy/config/command_line.h"
#include "proxy/config/runtime_dir.h"
#include "proxy/config/toml_loader.h"

namespace sidecar::proxy {
namespace {

using config_internal::ApplyFileText;
using config_internal::ApplyFlag;
using config_internal::FlagAction;
using config_internal::FlagsGiven;
using config_internal::FlagUse;
using config_internal::SplitFlags;

// MarkModeFromFile records that the file set net.tls.mode, when it did; a flag read after it
// takes the mode over (ApplyFlag).
void MarkModeFromFile(Config& c) {
  if (c.origins.contains("net.tls.mode")) {
    c.mode_source = ModeSource::kFile;
  }
}

// Finish fills the defaults that depend on other settings and checks combinations; errors
// name where each setting involved came from.
absl::Status Finish(Config& c) {
  if (c.control_socket.empty()) {
    c.control_socket = DefaultControlSocketPath(c.port);
  }
  auto error = [&](std::string_view key, std::string_view what) {
    return absl::InvalidArgumentError(Concat(c.Origin(key), ": ", what));
  };
  const certs::TlsSettings& tls = c.tls;
  if (!tls.certificate_selector.empty() && !tls.certificate_key_file.empty()) {
    return error("net.tls.certificateSelector",
                 Concat("cannot be used together with a certificate key file (",
                     c.Origin("net.tls.certificateKeyFile"), "); choose one"));
  }
  if (!tls.cluster_certificate_selector.empty() && !tls.cluster_file.empty()) {
    return error("net.tls.clusterCertificateSelector",
                 Concat("cannot be used together with a cluster file (",
                     c.Origin("net.tls.clusterFile"), "); choose one"));
  }
  for (std::string_view key :
       {"net.tls.certificateSelector", "net.tls.clusterCertificateSelector"}) {
    const std::string& selector = key == "net.tls.certificateSelector"
                                      ? tls.certificate_selector
                                      : tls.cluster_certificate_selector;
    if (!selector.empty() && tls.certificate_store.empty()) {
      return error(key,
                   "needs a certificate store to search: net.tls.certificateStore "
                   "(--certificate-store), a directory of PEM files");
    }
  }
  if (!tls.crl_file.empty() && tls.ca_file.empty()) {
    return error("net.tls.CRLFile",
                 "needs a CA file (net.tls.CAFile, --tlsCAFile): revocations are checked "
                 "against the CA that issued the certificates");
  }
  if (c.mode != Mode::kDisabled && !tls.HasServerCertificate()) {
    return error("net.tls.mode", Concat("mode ", ModeName(c.mode),
                                     " needs a certificate: set net.tls.certificateKeyFile "
                                     "(--tlsCertificateKeyFile) or net.tls.certificateSelector "
                                     "(--tlsCertificateSelector)"));
  }
  return absl::OkStatus();
}

// FindConfigFlag returns the one --config of the command line, or nullptr.
absl::StatusOr<const FlagUse*> FindConfigFlag(const std::vector<FlagUse>& uses) {
  const FlagUse* config_flag = nullptr;
  for (const FlagUse& use : uses) {
    if (use.flag != nullptr && use.flag->action == FlagAction::kConfig) {
      if (config_flag != nullptr) {
        return absl::InvalidArgumentError(Concat(use.spelling, ": given more than once"));
      }
      if (use.value->empty()) {
        return absl::InvalidArgumentError(Concat(use.spelling, ": needs a file name"));
      }
      config_flag = &use;
    }
  }
  return config_flag;
}

}  // namespace

absl::Status Config::NameOrigin(const absl::Status& status) const {
  std::string message(status.message());
  size_t colon = message.find(": ");
  if (!message.starts_with("net.tls.") || colon == std::string::npos) {
    return status;
  }
  return absl::Status(status.code(), Origin(message.substr(0, colon)) + message.substr(colon));
}

absl::StatusOr<Config> LoadConfig(int argc, const char* const* argv) {
  absl::StatusOr<std::vector<FlagUse>> uses = SplitFlags(argc, argv);
  if (!uses.ok()) {
    return uses.status();
  }
  absl::StatusOr<const FlagUse*> config_flag = FindConfigFlag(*uses);
  if (!config_flag.ok()) {
    return config_flag.status();
  }
  Config config;
  if (*config_flag != nullptr) {
    const std::string& file = *(*config_flag)->value;
    absl::StatusOr<std::string> text = certs::ReadFileToString(file);
    if (!text.ok()) {
      return absl::InvalidArgumentError(text.status().message());  // a start-up error
    }
    absl::Status status = ApplyFileText(*text, file, config);
    if (!status.ok()) {
      return status;
    }
    config.config_file = file;
    MarkModeFromFile(config);
  }
  FlagsGiven given;
  for (const FlagUse& use : *uses) {
    absl::Status status = ApplyFlag(use, config, given);
    if (!status.ok()) {
      return status;
    }
  }
  absl::Status status = Finish(config);
  if (!status.ok()) {
    return status;
  }
  return config;
}

absl::StatusOr<Config> LoadConfigFromString(std::string_view toml_text,
                                            std::string_view file_name) {
  Config config;
  absl::Status status = ApplyFileText(toml_text, file_name, config);
  if (!status.ok()) {
    return status;
  }
  config.config_file = std::string(file_name);
  MarkModeFromFile(config);
  status = Finish(config);
  if (!status.ok()) {
    return status;
  }
  return config;
}

}  // namespace sidecar::proxy
