#!/usr/bin/env bash
# bench/instructions.sh: the CPU work tls-sidecar spends per operation, counted in
# instructions by valgrind's callgrind. Unlike the timed workloads of run.sh, the count does
# not depend on what else the machine runs, so two builds can be compared on a noisy
# machine: a change that makes a handshake or a request cost more shows here even when the
# timed figures are inside their noise.
#
#   bench/instructions.sh [--build-dir DIR] [--seconds S] [--compare OTHER_BUILD_DIR]
#
# For each build: the sidecar (allowTLS, the bench's certificates) runs under callgrind
# three times, idle (start and stop), under full TLS 1.3 handshakes (loadgen hs, 4 workers)
# and under TLS request/reply (loadgen rr, 64 connections, 1 KiB). It prints instructions
# per full handshake ((hs total - idle) / handshakes) and per request ((rr total - idle -
# 64 handshakes) / requests). Only the sidecar runs under valgrind; the load generator and
# the echo backend run natively. Needs valgrind; uses loadgen and echo_backend from the
# build directory (run.sh or ninja builds them). Exit status 0, 1 when a run failed.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
builds=("${src}/build")
seconds=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) builds[0]="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --compare) builds+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "instructions.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
tools="${builds[0]}/bench"
for tool in loadgen echo_backend; do
  [[ -x "${tools}/${tool}" ]] || { echo "instructions.sh: ${tools}/${tool} is not built" >&2; exit 1; }
done

work="$(mktemp -d /tmp/tls-sidecar-instructions.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  rm -rf "${work}"
}
trap cleanup EXIT
"${builds[0]}/tls-sidecar" certs init "${work}/pki" >/dev/null

echo_port=$((29300 + RANDOM % 200))
"${tools}/echo_backend" --port "${echo_port}" --threads 1 >/dev/null 2>&1 &
pids+=($!)

# run_sidecar BINARY NAME LOADGEN_ARGS...: prints "<instructions> <operations>".
run_sidecar() {
  local binary="$1" name="$2"; shift 2
  local port=$((29600 + RANDOM % 300)) out="${work}/${name}.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="${out}" "${binary}" --port "${port}" \
    --bind_ip 127.0.0.1 --upstream "127.0.0.1:${echo_port}" --tlsMode allowTLS \
    --tlsCertificateKeyFile "${work}/pki/server.pem" --tlsCAFile "${work}/pki/ca.pem" \
    --tlsAllowConnectionsWithoutCertificates --metrics "" \
    --control-socket "${work}/${name}.sock" >/dev/null 2>"${work}/${name}.log" &
  local pid=$!
  local waited=0
  until "${binary}" ctl --socket "${work}/${name}.sock" status >/dev/null 2>&1; do
    sleep 0.2; waited=$((waited + 1))
    if [[ ${waited} -gt 300 ]] || ! kill -0 "${pid}" 2>/dev/null; then
      echo "instructions.sh: the sidecar did not start under valgrind:" >&2
      tail -5 "${work}/${name}.log" >&2; exit 1
    fi
  done
  local ops=0
  if [[ $# -gt 0 ]]; then
    local json
    json="$("${tools}/loadgen" "$@" --tls --ca "${work}/pki/ca.pem" --host 127.0.0.1 \
      --port "${port}" --duration "${seconds}" --warmup 0)"
    # As run.sh: up to 1 % failed handshakes is the load generator's own churn.
    ops="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); n=d["requests"] or d["handshakes"]
if d["errors"] > n / 100: sys.exit("instructions.sh: loadgen counted %d errors: %s" % (d["errors"], d["last_error"]))
print(n)' "${json}")"
  fi
  kill -TERM "${pid}"; wait "${pid}" || true
  local total
  total="$(awk '/^(summary|totals):/ {print $2; exit}' "${out}")"
  echo "${total} ${ops}"
}

printf '| build | instructions per full TLS handshake | instructions per TLS request (1 KiB, 64 connections) |\n|---|---:|---:|\n'
for build in "${builds[@]}"; do
  binary="${build}/tls-sidecar"
  read -r idle _ < <(run_sidecar "${binary}" idle)
  read -r hs_total handshakes < <(run_sidecar "${binary}" hs --workload hs --workers 4 --size 1024)
  read -r rr_total requests < <(run_sidecar "${binary}" rr --workload rr --conns 64 --size 1024)
  python3 - "${build}" "${idle}" "${hs_total}" "${handshakes}" "${rr_total}" "${requests}" <<'EOF'
import sys
build, idle, hs, handshakes, rr, requests = sys.argv[1], *map(int, sys.argv[2:])
if handshakes == 0 or requests == 0:
    sys.exit(f"instructions.sh: no operation completed with {build}")
per_handshake = (hs - idle) / handshakes
per_request = (rr - idle - 64 * per_handshake) / requests
print(f"| {build} | {per_handshake:,.0f} ({handshakes} handshakes) | "
      f"{per_request:,.0f} ({requests} requests) |")
EOF
done
