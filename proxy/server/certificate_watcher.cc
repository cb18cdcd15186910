#include "proxy/server/certificate_watcher.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "certs/pem_file.h"
#include "proxy/observe/log.h"

namespace sidecar::proxy {
namespace {

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return path.substr(0, slash);
}

void AddOnce(std::vector<std::string>* list, const std::string& item) {
  if (std::find(list->begin(), list->end(), item) == list->end()) {
    list->push_back(item);
  }
}

// FileDigest is the length and a 64-bit hash of the file's contents, following symlinks,
// or the reason it cannot be read. Read as the loader reads (regular files, capped), so a
// path at a device or FIFO cannot hang or grow the watcher either.
std::string FileDigest(const std::string& path) {
  absl::StatusOr<std::string> bytes = certs::ReadFileToString(path);
  if (!bytes.ok()) {
    return absl::StrCat("unreadable:", bytes.status().message());
  }
  return absl::StrCat(bytes->size(), ":", std::hash<std::string>{}(*bytes));
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// DirectoryDigest covers the regular files of a certificate store (sorted by name).
std::string DirectoryDigest(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) {
    return absl::StrCat("unreadable:", errno);
  }
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") {
      names.push_back(std::move(name));
    }
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  std::string digest;
  for (const std::string& name : names) {
    std::string full = absl::StrCat(path, "/", name);
    if (!IsDirectory(full)) {
      absl::StrAppend(&digest, name, "=", FileDigest(full), ";");
    }
  }
  return digest;
}

}  // namespace

std::vector<std::string> CertificateWatcher::WatchedPaths(const certs::TlsSettings& settings) {
  std::vector<std::string> paths;
  for (const std::string* file :
       {&settings.certificate_key_file, &settings.ca_file, &settings.crl_file,
        &settings.cluster_file, &settings.cluster_ca_file, &settings.certificate_store}) {
    if (!file->empty()) {
      AddOnce(&paths, *file);
    }
  }
  return paths;
}

std::vector<std::string> CertificateWatcher::WatchedDirectories(
    const certs::TlsSettings& settings) {
  std::vector<std::string> directories;
  for (const std::string* file :
       {&settings.certificate_key_file, &settings.ca_file, &settings.crl_file,
        &settings.cluster_file, &settings.cluster_ca_file}) {
    if (!file->empty()) {
      AddOnce(&directories, DirectoryOf(*file));
    }
  }
  if (!settings.certificate_store.empty()) {
    AddOnce(&directories, settings.certificate_store);
  }
  return directories;
}

CertificateWatcher::CertificateWatcher(std::vector<std::string> paths, std::function<void()> reload,
                                       uint64_t debounce_ms)
    : paths_(std::move(paths)), reload_(std::move(reload)), debounce_ms_(debounce_ms) {}

absl::StatusOr<std::unique_ptr<CertificateWatcher>> CertificateWatcher::Create(
    uv_loop_t* loop, const certs::TlsSettings& settings, std::function<void()> reload,
    uint64_t debounce_ms) {
  std::unique_ptr<CertificateWatcher> watcher(
      new CertificateWatcher(WatchedPaths(settings), std::move(reload), debounce_ms));
  watcher->directories_ = WatchedDirectories(settings);
  auto timer = UvHandle<uv_timer_t>::Create("uv_timer_init",
                                            [&](uv_timer_t* t) { return uv_timer_init(loop, t); });
  if (!timer.ok()) {
    return timer.status();
  }
  watcher->quiet_timer_ = *std::move(timer);
  watcher->quiet_timer_.get()->data = watcher.get();
  for (const std::string& directory : watcher->directories_) {
    auto event = UvHandle<uv_fs_event_t>::Create(
        "uv_fs_event_init", [&](uv_fs_event_t* e) { return uv_fs_event_init(loop, e); });
    if (!event.ok()) {
      return event.status();
    }
    event->get()->data = watcher.get();
    if (int rc =
            uv_fs_event_start(event->get(), &CertificateWatcher::OnEvent, directory.c_str(), 0);
        rc != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(directory, ": cannot watch for certificate changes: ", uv_strerror(rc)));
    }
    watcher->events_.push_back(*std::move(event));
  }
  watcher->last_fingerprint_ = watcher->Fingerprint();
  return watcher;
}

std::string CertificateWatcher::Fingerprint() const {
  std::string fingerprint;
  for (const std::string& path : paths_) {
    absl::StrAppend(&fingerprint, path, "{",
                    IsDirectory(path) ? DirectoryDigest(path) : FileDigest(path), "}");
  }
  return fingerprint;
}

void CertificateWatcher::OnEvent(uv_fs_event_t* handle, const char* /*filename*/, int /*events*/,
                                 int status) {
  auto* self = static_cast<CertificateWatcher*>(handle->data);
  if (status < 0) {
    Log(Severity::kWarning, Component::kTls, "certificate directory watch failed",
        {{"error", uv_strerror(status)}});
    return;
  }
  // Each event restarts the timer, so the files are read once things are quiet; but a
  // directory that never goes quiet (a log written beside the certificates) is read at the
  // latest kMaxWaitFactor debounce periods after the first event.
  uv_loop_t* loop = handle->loop;
  uint64_t now = uv_now(loop);
  if (!uv_is_active(self->quiet_timer_.base())) {
    self->first_event_ms_ = now;
  } else if (now - self->first_event_ms_ >= kMaxWaitFactor * self->debounce_ms_) {
    return;  // already due
  }
  uv_timer_start(self->quiet_timer_.get(), &CertificateWatcher::OnQuiet, self->debounce_ms_, 0);
}

void CertificateWatcher::OnQuiet(uv_timer_t* timer) {
  auto* self = static_cast<CertificateWatcher*>(timer->data);
  std::string fingerprint = self->Fingerprint();
  if (fingerprint == self->last_fingerprint_) {
    return;  // something else in the directory changed
  }
  // Remembered whether or not the reload succeeds: a broken file is reported once, and the
  // next change of the files tries again.
  self->last_fingerprint_ = std::move(fingerprint);
  Log(Severity::kInfo, Component::kTls, "certificate files changed; reloading", {});
  self->reload_();
}

}  // namespace sidecar::proxy
