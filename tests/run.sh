#!/usr/bin/env bash
# tests/run.sh: install what is missing, build, and run every test of tls-sidecar.
#
# Meant for a fresh Debian 12 machine (as root or with sudo, no terminal needed) as much as
# for a developer's checkout: packages are installed only when dpkg says they are missing,
# the Node.js clients only when the lockfile changed, and the build is incremental, so a
# second run goes straight to the tests.
#
#   tests/run.sh                    RelWithDebInfo build in build/, all tests
#   tests/run.sh --sanitize         clang + ASan/UBSan build in build-asan/
#   tests/run.sh --build-dir DIR    another build directory
#   tests/run.sh -R REGEX           only the ctest tests matching REGEX
#   tests/run.sh -- ARGS...         extra arguments passed to ctest as they are
#
# Exits with ctest's status: non-zero when anything failed to install, build or pass.
set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR=""
SANITIZE=0
CTEST_ARGS=()

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($#)); do
  case "$1" in
    --sanitize) SANITIZE=1 ;;
    --build-dir)
      [[ $# -ge 2 ]] || { echo "tests/run.sh: --build-dir needs a directory" >&2; exit 2; }
      BUILD_DIR="$2"; shift ;;
    --build-dir=*) BUILD_DIR="${1#*=}" ;;
    -R)
      [[ $# -ge 2 ]] || { echo "tests/run.sh: -R needs a regex" >&2; exit 2; }
      CTEST_ARGS+=(-R "$2"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; CTEST_ARGS+=("$@"); break ;;
    *) echo "tests/run.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ -z "${BUILD_DIR}" ]]; then
  if ((SANITIZE)); then BUILD_DIR="${ROOT}/build-asan"; else BUILD_DIR="${ROOT}/build"; fi
fi
JOBS="${SIDECAR_JOBS:-$(nproc)}"

log() { printf '==> %s\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------------------

# Build tools and libraries, the clients the end-to-end tests drive (pymongo, openssl s_client)
# and the tools they use (curl, ip, and Prometheus with promtool for the metrics and deploy tests;
# tcpdump and iptables for the cluster test; testssl.sh for the TLS audit in tests/hostile).
PACKAGES=(
  cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
  libuv1-dev android-libboringssl-dev libtomlplusplus-dev libabsl-dev prometheus-cpp-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev
  python3 python3-pymongo python3-pytest python3-yaml python3-cryptography prometheus
  openssl ca-certificates curl iproute2 tcpdump iptables testssl.sh
)

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "${pkg}" || missing+=("${pkg}")
done
# Node.js may come from elsewhere (NodeSource, nvm); only what is absent is taken from Debian.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
  log "installing missing packages: ${missing[*]}"
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "tests/run.sh: missing packages (${missing[*]}) and not root; install them first" >&2
      exit 1
    }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. Node.js clients (mongodb driver and mongosh, pinned by the lockfile) ---------------

NODE_DIR="${ROOT}/tests/e2e/node"
if [[ -f "${NODE_DIR}/package-lock.json" ]]; then
  stamp="${NODE_DIR}/node_modules/.installed-lock.sha256"
  want="$(sha256sum "${NODE_DIR}/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${want}" ]]; then
    log "installing Node.js clients (npm ci)"
    # Scripts are not needed (they build optional native add-ons mongosh does without) and
    # would require a compiler toolchain for node-gyp.
    (cd "${NODE_DIR}" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "${want}" >"${stamp}"
  fi
fi

# --- 3. Configure and build ---------------------------------------------------------------

cmake_args=(-S "${ROOT}" -B "${BUILD_DIR}")
if [[ ! -f "${BUILD_DIR}/CMakeCache.txt" ]]; then
  cmake_args+=(-G Ninja)
  if ((SANITIZE)); then
    cmake_args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIDECAR_SANITIZE=ON
                 -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
  else
    cmake_args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
  fi
  # ccache, when present, makes rebuilds in a second checkout or build directory cheap.
  if command -v ccache >/dev/null 2>&1; then
    cmake_args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
fi
# Paths below the checkout's parent are hashed relative, so checkouts side by side share hits.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "${ROOT}")}"
log "configuring ${BUILD_DIR}"
cmake "${cmake_args[@]}" >/dev/null
log "building with ${JOBS} jobs"
cmake --build "${BUILD_DIR}" -j "${JOBS}"

# --- 4. Test ------------------------------------------------------------------------------

if ((SANITIZE)); then
  # Benchmarks of an instrumented binary measure the instrumentation; bench/ runs on the
  # normal build only.
  CTEST_ARGS+=(-LE bench)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi
# The cluster test builds hosts in network namespaces: it needs root and `ip netns add`.
# Without them ctest reports it as skipped (exit code 77), never as passed; say so up front.
if [[ "$(id -u)" == 0 ]] && ip netns add tls-sidecar-run-probe 2>/dev/null; then
  ip netns del tls-sidecar-run-probe
  log "cluster test: network namespaces available, it runs"
else
  log "cluster test: SKIPPED: needs root and network namespaces"
fi
log "running tests"
cd "${BUILD_DIR}"
rm -f Testing/cluster-figures.txt
status=0
ctest --output-on-failure -j "${JOBS}" "${CTEST_ARGS[@]}" || status=$?
if [[ -f Testing/cluster-figures.txt ]]; then
  log "cluster test (rolling upgrade to TLS, 3 nodes):"
  cat Testing/cluster-figures.txt
fi
exit "${status}"
