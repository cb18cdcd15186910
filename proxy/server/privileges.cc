#include "proxy/server/privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sidecar::proxy {

absl::StatusOr<RunAsUser> LookUpUser(const std::string& name) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  int err = getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (err != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--user: cannot look up user ", name, ": ", std::strerror(err)));
  }
  if (found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--user: no such user ", name));
  }
  RunAsUser user{name, entry.pw_uid, entry.pw_gid};
  if (geteuid() != 0 && geteuid() != user.uid) {
    return absl::InvalidArgumentError(
        absl::StrCat("--user ", name, ": only root can switch to another user"));
  }
  return user;
}

absl::Status DropPrivileges(const RunAsUser& user, const std::vector<std::string>& owned_paths) {
  if (geteuid() != 0) {
    return absl::OkStatus();  // LookUpUser checked that we already are `user`
  }
  for (const std::string& path : owned_paths) {
    if (chown(path.c_str(), user.uid, user.gid) != 0) {
      return absl::InternalError(absl::StrCat("--user ", user.name, ": cannot hand ", path,
                                              " to the user: ", std::strerror(errno)));
    }
  }
  // Groups first: once the uid is no longer 0, they can no longer be changed. glibc applies
  // each call to every thread of the process.
  if (setgroups(1, &user.gid) != 0) {
    return absl::InternalError(
        absl::StrCat("--user ", user.name, ": setgroups: ", std::strerror(errno)));
  }
  if (setgid(user.gid) != 0) {
    return absl::InternalError(
        absl::StrCat("--user ", user.name, ": setgid: ", std::strerror(errno)));
  }
  if (setuid(user.uid) != 0) {
    return absl::InternalError(
        absl::StrCat("--user ", user.name, ": setuid: ", std::strerror(errno)));
  }
  // setuid from root sets the real, effective and saved ids: root must be gone for good.
  if (getuid() != user.uid || geteuid() != user.uid || getgid() != user.gid ||
      getegid() != user.gid || (user.uid != 0 && setuid(0) == 0)) {
    return absl::InternalError(
        absl::StrCat("--user ", user.name, ": root privileges could not be given up"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExtractUserFlag(int* argc, char** argv) {
  std::string name;
  bool seen = false;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    if (arg == "--user") {
      if (i + 1 >= *argc) {
        return absl::InvalidArgumentError("--user: needs a user name");
      }
      value = argv[++i];
    } else if (arg.substr(0, 7) == "--user=") {
      value = arg.substr(7);
    } else {
      argv[out++] = argv[i];
      continue;
    }
    if (seen) {
      return absl::InvalidArgumentError("--user: given more than once");
    }
    if (value.empty()) {
      return absl::InvalidArgumentError("--user: needs a user name");
    }
    seen = true;
    name = std::string(value);
  }
  *argc = out;
  argv[out] = nullptr;
  return name;
}

}  // namespace sidecar::proxy
