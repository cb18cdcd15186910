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
# Exits with ctest's status: non-zero when anything failed to install, build or pass. A test
# that was skipped (exit 77: the cluster test without network namespaces, a pytest file that
# skipped any case) is reported as skipped, never as passed, and listed at the end with its
# reasons. With CI=true a skip fails the run unless tests/allowed-skips.txt allows it.
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
# tcpdump and iptables for the cluster and transparent egress tests; HAProxy, the independent
# PROXY protocol parser of the upstreamProxyProtocol test; help2man, lintian, dpkg-dev, buildah
# and systemd-analyze for the package, unit and image tests of tests/deploy/packaging;
# testssl.sh for the TLS audit in tests/hostile; chromium, headless, for the status page test).
PACKAGES=(
  cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
  libuv1-dev android-libboringssl-dev libtomlplusplus-dev libabsl-dev prometheus-cpp-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev
  python3 python3-pymongo python3-pytest python3-yaml python3-cryptography prometheus
  openssl ca-certificates curl iproute2 tcpdump iptables haproxy testssl.sh
  help2man lintian dpkg-dev fakeroot file buildah systemd util-linux adduser
  chromium
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

# The offline Kubernetes schema validator of tests/deploy/packaging (kubernetes-models).
K8S_DIR="${ROOT}/tests/deploy/packaging/kubernetes"
if [[ -f "${K8S_DIR}/package-lock.json" ]]; then
  stamp="${K8S_DIR}/node_modules/.installed-lock.sha256"
  want="$(sha256sum "${K8S_DIR}/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${want}" ]]; then
    log "installing the Kubernetes schema validator (npm ci)"
    (cd "${K8S_DIR}" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
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
# Each pytest-based test writes the cases it skipped, with reasons, to Testing/skips/NAME.txt
# (tests/pytest/skip_report.py); start from none.
rm -rf Testing/skips
mkdir -p Testing
set +e
ctest --output-on-failure -j "${JOBS}" "${CTEST_ARGS[@]}" 2>&1 | tee Testing/run-output.txt
status="${PIPESTATUS[0]}"
set -e
if [[ -f Testing/cluster-figures.txt ]]; then
  log "cluster test (rolling upgrade to TLS, 3 nodes):"
  cat Testing/cluster-figures.txt
fi

# --- 5. Skips -----------------------------------------------------------------------------

# ctest marks a test that exited with its SKIP_RETURN_CODE as "***Skipped". Name each with
# why: the pytest cases it skipped, or the test's own SKIPPED line. Under CI=true, where this
# machine can run everything (root, network namespaces), a skip that tests/allowed-skips.txt
# does not allow fails the run.
skip_status=0
SIDECAR_RUN_CI="${CI:-}" /usr/bin/env python3 - "${ROOT}/tests/allowed-skips.txt" \
  Testing/run-output.txt Testing/Temporary/LastTest.log Testing/skips <<'PY' || skip_status=$?
import fnmatch, os, re, sys

allowed_path, output_path, last_log_path, skips_dir = sys.argv[1:5]
ci = os.environ.get("SIDECAR_RUN_CI", "").lower() in ("1", "true", "yes")

skipped = []
with open(output_path, errors="replace") as f:
    for line in f:
        m = re.search(r"Test +#\d+: (\S+) \.*\*+Skipped", line)
        if m:
            skipped.append(m.group(1))
if not skipped:
    sys.exit(0)

# The output of each test, from ctest's log, for the reasons of tests without a skip file.
outputs = {}
try:
    with open(last_log_path, errors="replace") as f:
        log = f.read()
    for m in re.finditer(r'^\d+/\d+ Test: (\S+)\n(.*?)^(?:"\S+" end time|Test time)', log,
                         re.MULTILINE | re.DOTALL):
        outputs[m.group(1)] = m.group(2)
except FileNotFoundError:
    pass

allowed = []
if os.path.exists(allowed_path):
    with open(allowed_path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, _, reason = line.partition(" ")
            if not reason.strip():
                print(f"tests/run.sh: {allowed_path}:{number}: an allowed skip needs a reason")
                sys.exit(1)
            allowed.append(pattern)

def is_allowed(name):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)

print(f"==> SKIPPED: {len(skipped)} test(s) did not run in full (a skip is not a pass):")
unexpected = []
for test in skipped:
    cases = []
    path = os.path.join(skips_dir, test + ".txt")
    if os.path.exists(path):
        with open(path) as f:
            cases = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    if cases:
        print(f"    {test}: {len(cases)} case(s) skipped")
        for nodeid, reason in cases:
            print(f"      {nodeid}: {reason}")
            if not (is_allowed(test) or is_allowed(nodeid)):
                unexpected.append(nodeid)
    else:
        text = outputs.get(test, "")
        reasons = [l.strip() for l in text.splitlines() if "skip" in l.lower()] or \
                  [l.strip() for l in text.splitlines() if l.strip()][-3:] or ["(no output)"]
        print(f"    {test}: {' / '.join(reasons)}")
        if not is_allowed(test):
            unexpected.append(test)
if ci and unexpected:
    print("==> CI: skipped without an entry in tests/allowed-skips.txt (this machine can run "
          "them; fix what made them skip, or allow them there with a reason):")
    for name in unexpected:
        print(f"    {name}")
    sys.exit(1)
PY
if ((status == 0 && skip_status != 0)); then
  status="${skip_status}"
fi
exit "${status}"
