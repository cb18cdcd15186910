#include "proxy/config/runtime_dir.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sidecar::proxy {
namespace {

std::optional<std::string> NonEmptyEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || value[0] == '\0') {
    return std::nullopt;
  }
  return std::string(value);
}

// The modes a runtime directory may have: the owner's bits, and group read/search (0750,
// for a group of operators); nothing for other users.
constexpr mode_t kAllowedBits = 0750;

}  // namespace

RuntimeEnvironment CurrentRuntimeEnvironment() {
  RuntimeEnvironment env;
  env.runtime_directory = NonEmptyEnv("RUNTIME_DIRECTORY");
  env.xdg_runtime_dir = NonEmptyEnv("XDG_RUNTIME_DIR");
  env.home = NonEmptyEnv("HOME");
  env.euid = geteuid();
  if (!env.home) {
    if (const passwd* pw = getpwuid(env.euid); pw != nullptr && pw->pw_dir != nullptr) {
      env.home = std::string(pw->pw_dir);
    }
  }
  return env;
}

std::string RuntimeDirectoryFor(const RuntimeEnvironment& env) {
  if (env.runtime_directory) {
    // systemd separates several RuntimeDirectory= entries with ':'.
    std::string first = env.runtime_directory->substr(0, env.runtime_directory->find(':'));
    if (!first.empty()) {
      return first;
    }
  }
  if (env.euid == 0) {
    return "/run/tls-sidecar";
  }
  if (env.xdg_runtime_dir) {
    return absl::StrCat(*env.xdg_runtime_dir, "/tls-sidecar");
  }
  return absl::StrCat(env.home.value_or("."), "/.tls-sidecar");
}

std::string DefaultControlSocketPath(uint16_t port) {
  return absl::StrCat(RuntimeDirectoryFor(CurrentRuntimeEnvironment()), "/", port, ".sock");
}

absl::Status PrepareRuntimeDirectory(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::UnavailableError(
        absl::StrCat("runtime directory ", dir, ": cannot create it: ", std::strerror(errno)));
  }
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    return absl::UnavailableError(
        absl::StrCat("runtime directory ", dir, ": ", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "runtime directory ", dir,
        " exists and is not a directory (a symbolic link or a file); remove it, or set "
        "control.socket (--control-socket)"));
  }
  if (st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "runtime directory ", dir, " belongs to uid ", st.st_uid, ", not to this user (uid ",
        geteuid(), "); another user could replace the control socket in it: remove it, or set "
        "control.socket (--control-socket)"));
  }
  mode_t bits = st.st_mode & 07777;
  if ((bits & ~kAllowedBits) != 0) {
    // Ours but open to others (systemd's RuntimeDirectoryMode= defaults to 0755): close it.
    if (chmod(dir.c_str(), bits & kAllowedBits) != 0) {
      return absl::UnavailableError(absl::StrCat(
          "runtime directory ", dir, " is open to other users and cannot be closed: ",
          std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace sidecar::proxy
