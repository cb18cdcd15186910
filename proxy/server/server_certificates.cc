// Server's certificates: loaded at start (before any port is taken), reloaded on SIGHUP,
// `ctl reload` or a watched file's change, their expiry published and warned about.
#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "certs/certificate_info.h"
#include "certs/pem_file.h"
#include "certs/tls_snapshot.h"
#include "proxy/observe/log.h"
#include "proxy/server/server.h"

namespace sidecar::proxy {
namespace {

// A certificate expiring within this many days is warned about at start, after a reload and
// once a day, early enough for a rotation that waits on another team.
constexpr int kExpiryWarningDays = 21;

}  // namespace

absl::Status Server::StartOcsp() {
  if (!config_.tls.ocsp.enabled) {
    return absl::OkStatus();
  }
  ocsp_metrics_ = std::make_unique<OcspMetrics>(*metrics_.registry());
  auto checker = OcspChecker::Create(&loop_, config_.tls.ocsp, ocsp_metrics_.get());
  if (!checker.ok()) {
    return checker.status();
  }
  ocsp_checker_ = *std::move(checker);
  auto stapler = OcspStapler::Create(&loop_, config_.tls.ocsp, ocsp_metrics_.get());
  if (!stapler.ok()) {
    return stapler.status();
  }
  ocsp_stapler_ = *std::move(stapler);
  return absl::OkStatus();
}

void Server::CloseOcsp() {
  // Fetches under way are cancelled so they do not hold the loop open until their timeout;
  // the checker itself lives on in the TLS contexts that still point at it.
  if (ocsp_stapler_) {
    ocsp_stapler_->Close();
  }
  if (ocsp_checker_) {
    ocsp_checker_->Close();
  }
}

absl::Status Server::LoadCertificates() {
  if (absl::Status status = StartOcsp(); !status.ok()) {
    return status;
  }
  auto snapshot = certs::TlsSnapshot::Create(config_.tls, ocsp_checker_);
  if (!snapshot.ok()) {
    return config_.NameOrigin(snapshot.status());
  }
  shared_.tls.store(*snapshot);
  if (ocsp_stapler_) {
    ocsp_stapler_->OnSnapshot(*snapshot);
  }
  for (const auto& cert : (*snapshot)->certificates()) {
    Log(Severity::kInfo, Component::kTls, "certificate loaded",
        {{"role", cert.role},
         {"subject", cert.subject},
         {"notAfter", cert.not_after},
         {"sha1", cert.sha1_hex}});
  }
  readiness_.SetCertificatesLoaded(true);
  LogClientCertificatePolicy();
  PublishCertificateExpiries();
  WarnAboutExpiringCertificates();
  for (const std::string& warning :
       certs::FilePermissionWarnings(config_.tls, config_.config_file)) {
    Log(Severity::kWarning, Component::kTls, "file permissions", {{"warning", warning}});
  }
  auto expiry_timer = UvHandle<uv_timer_t>::Create(
      "uv_timer_init", [&](uv_timer_t* t) { return uv_timer_init(&loop_, t); });
  if (!expiry_timer.ok()) {
    return expiry_timer.status();
  }
  expiry_timer_ = *std::move(expiry_timer);
  expiry_timer_.get()->data = this;
  constexpr uint64_t kDayMs = 24 * 60 * 60 * 1000;
  uv_timer_start(expiry_timer_.get(), &Server::OnExpiryTimer, kDayMs, kDayMs);
  // Daily warnings must not keep a draining sidecar from exiting.
  uv_unref(expiry_timer_.base());
  if (config_.watch_certificates) {
    auto watcher = CertificateWatcher::Create(&loop_, config_.tls, [this] { (void)Reload(); });
    if (!watcher.ok()) {
      return watcher.status();
    }
    certificate_watcher_ = *std::move(watcher);
    Log(Severity::kInfo, Component::kTls, "watching certificate files for changes",
        {{"directories", absl::StrJoin(certificate_watcher_->directories(), ",")}});
  }
  return absl::OkStatus();
}

absl::Status Server::Reload() {
  auto snapshot = certs::TlsSnapshot::Create(config_.tls, ocsp_checker_);
  if (!snapshot.ok()) {
    absl::Status status = config_.NameOrigin(snapshot.status());
    metrics_.CertificateReload(false);
    Log(Severity::kError, Component::kTls,
        "certificate reload failed; keeping the old certificates",
        {{"error", std::string(status.message())}});
    if (!config_.run_as_user.empty() &&
        (absl::IsPermissionDenied(status) ||
         absl::StrContains(status.message(), std::strerror(EACCES)))) {
      return absl::PermissionDeniedError(absl::StrCat(
          status.message(), " (since start the sidecar runs as user ", config_.run_as_user,
          " (--user), so the files must be readable by that user)"));
    }
    return status;
  }
  shared_.tls.store(*snapshot);
  if (ocsp_stapler_) {
    ocsp_stapler_->OnSnapshot(*snapshot);
  }
  metrics_.CertificateReload(true);
  readiness_.SetServing(shared_.mode.load(), (*snapshot)->server_context() != nullptr);
  PublishCertificateExpiries();
  Log(Severity::kInfo, Component::kTls, "certificates reloaded", {});
  WarnAboutExpiringCertificates();
  return absl::OkStatus();
}

void Server::LogClientCertificatePolicy() {
  const certs::TlsSettings& tls = config_.tls;
  std::string policy;
  std::string why;
  if (!tls.HasServerCertificate()) {
    policy = "none";
    why = "no server certificate: TLS clients are not served";
  } else if (tls.ca_file.empty()) {
    policy = "not requested";
    why = "no CA file, so client certificates are neither asked for nor checked";
  } else if (tls.allow_connections_without_certificates) {
    policy = "optional";
    why = absl::StrCat("a client certificate, when presented, must chain to ", tls.ca_file,
                       "; clients without one are served (",
                       config_.Origin("net.tls.allowConnectionsWithoutCertificates"), ")");
  } else {
    policy = "required";
    why = absl::StrCat("every TLS client must present a certificate that chains to ", tls.ca_file,
                       ", as mongod with a CA file; set "
                       "net.tls.allowConnectionsWithoutCertificates to serve clients without one");
  }
  Log(Severity::kInfo, Component::kTls, "client certificate policy",
      {{"clientCertificates", policy}, {"detail", why}});
}

void Server::WarnAboutExpiringCertificates() {
  auto snapshot = shared_.tls.load();
  if (snapshot == nullptr) {
    return;
  }
  // One warning per certificate: the cluster role defaults to the server certificate, and
  // the same CA may serve both roles.
  std::vector<certs::CertificateInfo> distinct;
  std::set<std::string> seen;
  for (const certs::CertificateInfo& cert : snapshot->certificates()) {
    if (seen.insert(cert.sha1_hex).second) {
      distinct.push_back(cert);
    }
  }
  for (const std::string& warning :
       certs::ExpiryWarnings(distinct, kExpiryWarningDays, static_cast<int64_t>(time(nullptr)))) {
    Log(Severity::kWarning, Component::kTls, "certificate expires soon", {{"warning", warning}});
  }
}

void Server::OnExpiryTimer(uv_timer_t* timer) {
  static_cast<Server*>(timer->data)->WarnAboutExpiringCertificates();
}

void Server::PublishCertificateExpiries() {
  std::vector<std::tuple<std::string, std::string, int64_t>> rows;
  if (auto snapshot = shared_.tls.load(); snapshot != nullptr) {
    for (const auto& cert : snapshot->certificates()) {
      rows.emplace_back(cert.role, cert.subject, cert.not_after);
    }
  }
  metrics_.SetCertificateExpiries(rows);
}

}  // namespace sidecar::proxy
