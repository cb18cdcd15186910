// Least privilege outside systemd: `--user NAME` lets a sidecar started as root (to bind a
// port below 1024, or to read keys only root may read) give root up once its listeners are
// bound and its keys are read. From then on it runs as NAME, so a reload reads the files as
// NAME too.
#ifndef SIDECAR_PROXY_SERVER_PRIVILEGES_H_
#define SIDECAR_PROXY_SERVER_PRIVILEGES_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sidecar::proxy {

// RunAsUser is the account `--user` names, looked up before anything is bound.
struct RunAsUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// LookUpUser finds `name` in the user database. Errors: "--user: no such user NAME", and
// "--user NAME: only root can switch to another user" when not started as root (and NAME
// is not already who we are).
absl::StatusOr<RunAsUser> LookUpUser(const std::string& name);

// DropPrivileges hands `owned_paths` (the control socket) to `user`, so that it can still
// remove them at exit, then leaves root for good: supplementary groups to `user`'s primary
// group only, then setgid, then setuid, each checked, and finally checks that root cannot
// be regained. Call on the main thread with no other thread of ours running. Does nothing
// when the process already runs as `user`.
absl::Status DropPrivileges(const RunAsUser& user, const std::vector<std::string>& owned_paths);

// ExtractUserFlag removes `--user NAME` / `--user=NAME` from argv (so the configuration
// loader never sees it) and returns NAME, "" when absent. Error when NAME is missing or
// the flag is given twice.
absl::StatusOr<std::string> ExtractUserFlag(int* argc, char** argv);

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_SERVER_PRIVILEGES_H_
