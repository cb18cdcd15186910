#!/usr/bin/env bash
# deploy/egress-iptables.sh: send the local mongod's outbound connections to its peers through
# tls-sidecar's transparent egress listener ([egress.transparent] in the sidecar's TOML), or
# take that away again with --undo.
#
#   egress-iptables.sh [--listen-port PORT] [--ports P1,P2,...] [--mark MARK] [--owner USER]
#                      [--chain NAME] [--ipv6] [--undo] [--dry-run]
#
#   --listen-port PORT  the port of [egress.transparent] listen (default 15001); the listener
#                       must be on the loopback address (127.0.0.1, and ::1 with --ipv6)
#   --ports LIST        destination ports of the peers to redirect (default 27017)
#   --mark MARK         the SO_MARK the sidecar sets on the sockets it dials
#                       ([egress.transparent] mark, default 0x5ec): those are never redirected
#   --owner USER        redirect only connections of this user (the mongod account)
#   --chain NAME        the chain holding the rules (default TLS_SIDECAR_EGRESS)
#   --ipv6              do the same with ip6tables
#   --undo              remove the rules and the chain
#   --dry-run           print the commands instead of running them
#
# The rules live in their own chain of the nat table, reached by one jump from OUTPUT, so that
# running the script again replaces them (it is idempotent) and --undo leaves nothing behind:
#
#   -A OUTPUT -p tcp -j TLS_SIDECAR_EGRESS
#   -A TLS_SIDECAR_EGRESS -m mark --mark 0x5ec -j RETURN        the sidecar's own connections
#   -A TLS_SIDECAR_EGRESS -d 127.0.0.0/8 -j RETURN              loopback (mongod -> sidecar, ...)
#   -A TLS_SIDECAR_EGRESS -p tcp -m multiport --dports 27017 -j REDIRECT --to-ports 15001
#
# The sidecar reads each redirected connection's original destination with SO_ORIGINAL_DST
# and checks the peer's certificate against that address. Exit status: 0 done, 1 an iptables
# command failed, 2 bad arguments. Needs root (CAP_NET_ADMIN).
set -euo pipefail

LISTEN_PORT=15001
PORTS=27017
MARK=0x5ec
OWNER=""
CHAIN=TLS_SIDECAR_EGRESS
IPV6=0
UNDO=0
DRY_RUN=0

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
fail_usage() { echo "egress-iptables.sh: $*" >&2; exit 2; }

while (($#)); do
  case "$1" in
    --listen-port) [[ $# -ge 2 ]] || fail_usage "--listen-port needs a port"; LISTEN_PORT="$2"; shift ;;
    --ports) [[ $# -ge 2 ]] || fail_usage "--ports needs a list"; PORTS="$2"; shift ;;
    --mark) [[ $# -ge 2 ]] || fail_usage "--mark needs a value"; MARK="$2"; shift ;;
    --owner) [[ $# -ge 2 ]] || fail_usage "--owner needs a user"; OWNER="$2"; shift ;;
    --chain) [[ $# -ge 2 ]] || fail_usage "--chain needs a name"; CHAIN="$2"; shift ;;
    --ipv6) IPV6=1 ;;
    --undo) UNDO=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) fail_usage "unknown option: $1 (see --help)" ;;
  esac
  shift
done

[[ "${LISTEN_PORT}" =~ ^[0-9]+$ ]] && ((LISTEN_PORT >= 1 && LISTEN_PORT <= 65535)) ||
  fail_usage "--listen-port: ${LISTEN_PORT} is not a port"
[[ "${PORTS}" =~ ^[0-9]+(:[0-9]+)?(,[0-9]+(:[0-9]+)?)*$ ]] ||
  fail_usage "--ports: ${PORTS} is not a comma-separated list of ports (or ranges a:b)"
[[ "${MARK}" =~ ^(0x[0-9a-fA-F]+|[0-9]+)$ ]] || fail_usage "--mark: ${MARK} is not a number"
((MARK != 0)) || fail_usage "--mark: 0 cannot tell the sidecar's connections apart"
[[ "${CHAIN}" =~ ^[A-Za-z0-9_-]{1,28}$ ]] || fail_usage "--chain: ${CHAIN} is not a chain name"

run() {
  if ((DRY_RUN)); then
    echo "$*"
  else
    "$@"
  fi
}

# quiet_ok runs a probe (iptables -C, -N on an existing chain) whose failure is an answer.
quiet_ok() {
  if ((DRY_RUN)); then
    return 1
  fi
  "$@" >/dev/null 2>&1
}

undo() {
  local tool="$1"
  while quiet_ok "${tool}" -t nat -C OUTPUT -p tcp -j "${CHAIN}"; do
    run "${tool}" -t nat -D OUTPUT -p tcp -j "${CHAIN}"
  done
  if ((DRY_RUN)) || quiet_ok "${tool}" -t nat -S "${CHAIN}"; then
    run "${tool}" -t nat -F "${CHAIN}"
    run "${tool}" -t nat -X "${CHAIN}"
  fi
}

install() {
  local tool="$1" loopback="$2"
  # A chain of ours, emptied if it exists: running the script twice gives the same rules.
  if quiet_ok "${tool}" -t nat -S "${CHAIN}"; then
    run "${tool}" -t nat -F "${CHAIN}"
  else
    run "${tool}" -t nat -N "${CHAIN}"
  fi
  run "${tool}" -t nat -A "${CHAIN}" -m mark --mark "${MARK}" -j RETURN
  run "${tool}" -t nat -A "${CHAIN}" -d "${loopback}" -j RETURN
  local owner=()
  if [[ -n "${OWNER}" ]]; then
    owner=(-m owner --uid-owner "${OWNER}")
  fi
  run "${tool}" -t nat -A "${CHAIN}" -p tcp -m multiport --dports "${PORTS}" "${owner[@]}" \
    -j REDIRECT --to-ports "${LISTEN_PORT}"
  if ! quiet_ok "${tool}" -t nat -C OUTPUT -p tcp -j "${CHAIN}"; then
    run "${tool}" -t nat -A OUTPUT -p tcp -j "${CHAIN}"
  fi
}

tools=("iptables:127.0.0.0/8")
if ((IPV6)); then
  tools+=("ip6tables:::1/128")
fi
for entry in "${tools[@]}"; do
  tool="${entry%%:*}"
  loopback="${entry#*:}"
  command -v "${tool}" >/dev/null 2>&1 || { echo "egress-iptables.sh: ${tool} not found" >&2; exit 1; }
  if ((UNDO)); then
    undo "${tool}"
  else
    install "${tool}" "${loopback}"
  fi
done
