#!/usr/bin/env bash
# bench/run.sh: one command for the side-by-side comparison of BENCH.md.
#
#   bench/run.sh [--quick] [--no-build] [--no-install] [--build-dir DIR] [--out DIR]
#                [--runs N] [--duration S] [--warmup S] [--idle-conns N]
#                [--proxies KEY,...] [--workloads rr1,rr64,bulk,hs,hsr,idle] [--name NAME]
#
# Builds loadgen and echo_backend (and tls-sidecar when its target exists) with CMake and
# Ninja into the project's build/ directory (or --build-dir), installs the peers from
# Debian's packages when missing (haproxy, nginx with its stream module, hitch, stunnel4,
# gnuplot), makes certificates, runs every workload against every proxy (bench/harness.py)
# and writes bench/results/<date>.md with a plot beside it. --quick is a smoke test of the
# harness: tiny durations, one run, only the peers already installed, nothing installed.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${src}/build"
build_it=1
install_it=1
quick=0
pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --build-dir=*) build="${1#*=}"; shift ;;
    --no-build) build_it=0; shift ;;
    --no-install) install_it=0; shift ;;
    --quick) quick=1; install_it=0; pass+=("$1"); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done

if [[ ${install_it} -eq 1 ]]; then
  missing=()
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v nginx >/dev/null || missing+=(nginx)
  [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || missing+=(libnginx-mod-stream)
  command -v hitch >/dev/null || missing+=(hitch)
  command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || missing+=(stunnel4)
  command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
  command -v cmake >/dev/null || missing+=(cmake)
  command -v ninja >/dev/null || missing+=(ninja-build)
  command -v openssl >/dev/null || missing+=(openssl)
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "bench: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    # The packages' own services are not wanted: the bench runs each peer itself.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | ${sudo} tee /usr/sbin/policy-rc.d >/dev/null
      ${sudo} chmod +x /usr/sbin/policy-rc.d
      policy_added=1
    fi
    ${sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends "${missing[@]}"
    [[ ${policy_added} -eq 0 ]] || ${sudo} rm -f /usr/sbin/policy-rc.d
  fi
fi

if [[ ${build_it} -eq 1 ]]; then
  if [[ ! -f "${build}/build.ninja" ]]; then
    cmake -S "${src}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  targets=(loadgen echo_backend)
  if ninja -C "${build}" -t targets all 2>/dev/null | grep -q '^tls-sidecar:'; then
    targets+=(tls-sidecar)
  fi
  ninja -C "${build}" -j2 "${targets[@]}"
fi

exec python3 "${src}/bench/harness.py" --build-dir "${build}" "${pass[@]}"
