// Mode is the sidecar's TLS mode (SPEC §2), named as MongoDB names net.tls.mode. The
// ordering is the rolling upgrade's: disabled < allowTLS < preferTLS < requireTLS.
#ifndef SIDECAR_PROXY_BASE_MODE_H_
#define SIDECAR_PROXY_BASE_MODE_H_

#include <string_view>

#include "absl/status/statusor.h"

namespace sidecar::proxy {

enum class Mode { kDisabled = 0, kAllowTls = 1, kPreferTls = 2, kRequireTls = 3 };

inline constexpr Mode kAllModes[] = {Mode::kDisabled, Mode::kAllowTls, Mode::kPreferTls,
                                     Mode::kRequireTls};

// ParseMode accepts the TLS names and their SSL aliases (allowSSL, preferSSL, requireSSL),
// spelled exactly. The error lists the valid names.
absl::StatusOr<Mode> ParseMode(std::string_view name);

// ModeName returns the TLS spelling ("allowTLS"), the one reports always use.
std::string_view ModeName(Mode mode);

// ModeSource is where the start-up mode came from (SPEC §5). A command-line flag overrides
// the file at every start, so what a restart runs, and whether `persist` can keep a mode,
// depends on it.
enum class ModeSource { kDefault, kFile, kFlag };

// ModeSourceName returns "default", "file" or "flag", as `status` reports modeSource.
std::string_view ModeSourceName(ModeSource source);

// Whether ingress accepts each transport, and whether egress originates TLS, in `mode`.
inline bool IngressAcceptsTls(Mode mode) { return mode != Mode::kDisabled; }
inline bool IngressAcceptsPlaintext(Mode mode) { return mode != Mode::kRequireTls; }
inline bool EgressUsesTls(Mode mode) { return mode >= Mode::kPreferTls; }

// CanServeAnyClient: some client can be served in `mode` with or without a server
// certificate. requireTLS without one refuses plaintext and fails every TLS handshake.
inline bool CanServeAnyClient(Mode mode, bool server_certificate) {
  return IngressAcceptsPlaintext(mode) || server_certificate;
}

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_BASE_MODE_H_
