#!/usr/bin/env bash
# deploy/debian/build-deb.sh: build tls-sidecar_<version>_amd64.deb (and the debug symbols in
# tls-sidecar-dbgsym_<version>_amd64.ddeb) from this checkout with CMake and CPack.
#
#   deploy/debian/build-deb.sh [BUILD_DIR]     default BUILD_DIR: build-deb/ in the checkout
#
# The binary is built optimised with debug information (-O2 -g -DNDEBUG, as Debian builds
# its own packages), then CPack moves the debug information into the -dbgsym package and
# strips the binary; dpkg-shlibdeps derives Depends: from the libraries it links. Needs
# cmake, ninja, g++, dpkg-dev (dpkg-shlibdeps) and help2man (the man page), all from
# Debian (tests/run.sh installs them). Prints the package's path last. Exit status: 0, or
# non-zero when a step failed.
set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly BUILD_DIR="$(realpath -m "${1:-${ROOT}/build-deb}")"

for tool in cmake ninja help2man dpkg-shlibdeps; do
  command -v "${tool}" >/dev/null 2>&1 || {
    echo "build-deb.sh: ${tool} is missing (apt-get install cmake ninja-build help2man dpkg-dev)" >&2
    exit 1
  }
done

args=(-S "${ROOT}" -B "${BUILD_DIR}" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ ! -f "${BUILD_DIR}/CMakeCache.txt" ]]; then
  args+=(-G Ninja)
  if command -v ccache >/dev/null 2>&1; then
    args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
fi
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "${ROOT}")}"
cmake "${args[@]}" >/dev/null
cmake --build "${BUILD_DIR}" -j "${SIDECAR_JOBS:-$(nproc)}" --target tls-sidecar tls-sidecar-man
(cd "${BUILD_DIR}" && rm -f ./*.deb ./*.ddeb && cpack -G DEB >/dev/null)
deb="$(ls "${BUILD_DIR}"/tls-sidecar_*_amd64.deb)"
echo "${deb}"
