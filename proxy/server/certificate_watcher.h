// CertificateWatcher reloads certificates when the files they are read from change
// (net.tls.watchCertificates), so that a rotation needs neither SIGHUP nor `ctl reload`.
//
// It watches the directories that hold the configured files (certificate key file, CA,
// CRL, cluster files) and the certificate store, not the files themselves: Kubernetes
// updates a mounted secret by writing a new hidden directory and renaming the `..data`
// symlink over the old one, and editors and `cp` replace files by rename, so a watch on
// the file would stay on the old inode. Any event in a watched directory (re)starts a
// debounce timer (bounded, so that a busy directory is still checked); when it fires, the
// watcher reads the watched files again and calls `reload` only if their contents differ
// from what it last saw. So a swap in several steps is one reload, and unrelated files in
// the same directory cause none.
//
// A directory that is itself removed or replaced is no longer watched (inotify follows the
// inode); SIGHUP and `ctl reload` still work.
//
// Threading: created, used and destroyed on the loop it watches on (the main loop).
#ifndef SIDECAR_PROXY_SERVER_CERTIFICATE_WATCHER_H_
#define SIDECAR_PROXY_SERVER_CERTIFICATE_WATCHER_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "certs/tls_settings.h"
#include "proxy/base/uv_handle.h"

namespace sidecar::proxy {

class CertificateWatcher {
 public:
  // kDefaultDebounceMs: quiet time after the last change before the files are read again.
  static constexpr uint64_t kDefaultDebounceMs = 500;
  // kMaxWaitFactor: a stream of events delays the check by at most this many debounce periods.
  static constexpr uint64_t kMaxWaitFactor = 4;

  // Create starts watching the directories of the files `settings` names on `loop`
  // (borrowed; must outlive the watcher). `reload` runs on the loop after a change of
  // their contents. Error when a directory cannot be watched (it names the directory).
  static absl::StatusOr<std::unique_ptr<CertificateWatcher>> Create(
      uv_loop_t* loop, const certs::TlsSettings& settings, std::function<void()> reload,
      uint64_t debounce_ms = kDefaultDebounceMs);

  CertificateWatcher(const CertificateWatcher&) = delete;
  CertificateWatcher& operator=(const CertificateWatcher&) = delete;
  // The destructor closes the handles; no callback runs afterwards.
  ~CertificateWatcher() = default;

  // directories are the watched directories, for the start-up log.
  const std::vector<std::string>& directories() const { return directories_; }

  // WatchedPaths returns the files and store directory that `settings` names, and
  // WatchedDirectories the directories to watch for them (each once, in order).
  static std::vector<std::string> WatchedPaths(const certs::TlsSettings& settings);
  static std::vector<std::string> WatchedDirectories(const certs::TlsSettings& settings);

 private:
  CertificateWatcher(std::vector<std::string> paths, std::function<void()> reload,
                     uint64_t debounce_ms);

  // Fingerprint summarises the contents of every watched path (a store: its file names and
  // their contents); a missing or unreadable file contributes its error instead.
  std::string Fingerprint() const;
  static void OnEvent(uv_fs_event_t* handle, const char* filename, int events, int status);
  static void OnQuiet(uv_timer_t* timer);

  std::vector<std::string> paths_;
  std::vector<std::string> directories_;
  std::function<void()> reload_;
  uint64_t debounce_ms_;
  std::string last_fingerprint_;
  uint64_t first_event_ms_ = 0;  // uv_now of the first event since the last check
  std::vector<UvHandle<uv_fs_event_t>> events_;
  UvHandle<uv_timer_t> quiet_timer_;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_CERTIFICATE_WATCHER_H_
