#!/usr/bin/env bash
# deploy/quickstart.sh: try tls-sidecar on one machine in a minute.
#
# Builds the project if needed (CMake + Ninja into build/), makes a throwaway CA and a server
# certificate for localhost and 127.0.0.1 in deploy/quickstart-data/pki, starts a mongod on
# 127.0.0.1:27018 (a real one when `mongod` is on PATH, else the test stand-in) and the sidecar
# on 127.0.0.1:27017 in allowTLS, then prints how to connect with and without TLS. Ctrl-C
# stops everything.
#
# Environment: SIDECAR_PORT (27017), MONGOD_PORT (27018), METRICS_LISTEN (127.0.0.1:9442),
# BUILD_DIR (build/), QUICKSTART_DATA (deploy/quickstart-data).
#
# Several quickstarts can run side by side with other ports: the certificates are shared,
# while each one's logs and database live in QUICKSTART_DATA/<SIDECAR_PORT>/ and its control
# socket is the sidecar's default for its port (`tls-sidecar ctl --port SIDECAR_PORT` finds
# it).
set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly SIDECAR_PORT="${SIDECAR_PORT:-27017}"
readonly MONGOD_PORT="${MONGOD_PORT:-27018}"
readonly METRICS_LISTEN="${METRICS_LISTEN:-127.0.0.1:9442}"
readonly BUILD_DIR="${BUILD_DIR:-${ROOT}/build}"
readonly DATA="${QUICKSTART_DATA:-${ROOT}/deploy/quickstart-data}"
readonly PKI="${DATA}/pki"
readonly RUN="${DATA}/${SIDECAR_PORT}"  # this instance's logs and database

say() { printf '[quickstart] %s\n' "$*"; }
die() { printf '[quickstart] error: %s\n' "$*" >&2; exit 1; }

pids=()
cleanup() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    say "stopping (open connections get up to 30 s to finish)"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      kill -TERM "${pids[i]}" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
      wait "${pid}" 2>/dev/null || true
    done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() {
  # A listening socket on 127.0.0.1:PORT or any address.
  local hex
  hex="$(printf ':%04X' "$1")"
  awk -v p="${hex}" 'NR > 1 && $4 == "0A" && $2 ~ p"$" { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_listening() {
  local port="$1" pid="$2" what="$3"
  for _ in $(seq 1 150); do
    port_in_use "${port}" && return 0
    kill -0 "${pid}" 2>/dev/null || die "${what} exited; see ${RUN}/${what}.log"
    sleep 0.1
  done
  die "${what} is not listening on ${port} after 15s; see ${RUN}/${what}.log"
}

for port in "${SIDECAR_PORT}" "${MONGOD_PORT}"; do
  port_in_use "${port}" && die "port ${port} is already in use (set SIDECAR_PORT / MONGOD_PORT)"
done

# --- build -----------------------------------------------------------------------------------
SIDECAR="${BUILD_DIR}/tls-sidecar"
STANDIN="${BUILD_DIR}/tests/support/mongod_standin"
if [[ ! -x "${SIDECAR}" || ! -x "${STANDIN}" ]]; then
  command -v cmake >/dev/null && command -v ninja >/dev/null ||
    die "cmake and ninja are needed to build (tests/run.sh installs every dependency)"
  say "building into ${BUILD_DIR}"
  if [[ ! -f "${BUILD_DIR}/CMakeCache.txt" ]]; then
    cmake -S "${ROOT}" -B "${BUILD_DIR}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "${BUILD_DIR}" -j "$(nproc)" --target tls-sidecar mongod_standin
fi

# --- certificates ----------------------------------------------------------------------------
mkdir -p "${DATA}" "${RUN}"
if [[ ! -f "${PKI}/ca.pem" || ! -f "${PKI}/server.pem" ]]; then
  say "making a throwaway CA and certificates in ${PKI}"
  "${SIDECAR}" certs init "${PKI}" --hosts localhost,127.0.0.1 >/dev/null
fi

# --- mongod ----------------------------------------------------------------------------------
if command -v mongod >/dev/null; then
  mkdir -p "${RUN}/db"
  say "starting mongod on 127.0.0.1:${MONGOD_PORT}"
  mongod --bind_ip 127.0.0.1 --port "${MONGOD_PORT}" --dbpath "${RUN}/db" \
    >"${RUN}/mongod.log" 2>&1 &
else
  say "no mongod on PATH: starting the stand-in mongod on 127.0.0.1:${MONGOD_PORT}"
  "${STANDIN}" --bind 127.0.0.1 --port "${MONGOD_PORT}" >"${RUN}/mongod.log" 2>&1 &
fi
pids+=($!)
wait_listening "${MONGOD_PORT}" "${pids[-1]}" mongod

# --- sidecar ---------------------------------------------------------------------------------
say "starting tls-sidecar on 127.0.0.1:${SIDECAR_PORT} (allowTLS) in front of it"
# --tlsAllowConnectionsWithoutCertificates: the connect lines below use TLS without a client
# certificate, to keep trying it out short. Without the option the sidecar requires one, as
# mongod does with a CA file (${PKI}/client.pem is one: add
# &tlsCertificateKeyFile=${PKI}/client.pem to the URI).
"${SIDECAR}" --bind_ip 127.0.0.1 --port "${SIDECAR_PORT}" \
  --upstream "127.0.0.1:${MONGOD_PORT}" --tlsMode allowTLS \
  --tlsCertificateKeyFile "${PKI}/server.pem" --tlsCAFile "${PKI}/ca.pem" \
  --tlsAllowConnectionsWithoutCertificates --metrics "${METRICS_LISTEN}" \
  2>>"${RUN}/tls-sidecar.log" &
pids+=($!)
wait_listening "${SIDECAR_PORT}" "${pids[-1]}" tls-sidecar

cat <<EOF

tls-sidecar is serving 127.0.0.1:${SIDECAR_PORT} in allowTLS: TLS and plaintext on one port.
Its JSON log: tail -f ${RUN}/tls-sidecar.log
Client certificates are optional here (--tlsAllowConnectionsWithoutCertificates); without
that option, as with mongod, clients add &tlsCertificateKeyFile=${PKI}/client.pem.

  With TLS:
    mongosh "mongodb://127.0.0.1:${SIDECAR_PORT}/?tls=true&tlsCAFile=${PKI}/ca.pem"
    python3 -c 'import pymongo; print(pymongo.MongoClient("127.0.0.1", ${SIDECAR_PORT}, tls=True, tlsCAFile="${PKI}/ca.pem").admin.command("ping"))'

  Without TLS:
    mongosh "mongodb://127.0.0.1:${SIDECAR_PORT}/"
    python3 -c 'import pymongo; print(pymongo.MongoClient("127.0.0.1", ${SIDECAR_PORT}).admin.command("ping"))'

  Status:  ${SIDECAR} ctl --port ${SIDECAR_PORT} status
  Metrics: curl -s http://${METRICS_LISTEN}/metrics | grep tls_sidecar_connections

Press Ctrl-C to stop.

EOF

# Runs until Ctrl-C, or until either child exits on its own.
wait -n "${pids[@]}" || true
say "a child exited"
