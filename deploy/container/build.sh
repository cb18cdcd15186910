#!/usr/bin/env bash
# deploy/container/build.sh: the tls-sidecar OCI image, built offline from scratch with
# Debian's buildah: the stripped binary, exactly the shared libraries `ldd` names (at the same
# paths, so the binary's RPATH to BoringSSL still holds), and passwd/group entries for the
# non-root user it runs as (65532). No base image, no registry, no package manager inside.
#
#   deploy/container/build.sh [--binary PATH] [--tag NAME:VERSION] [--output FILE]
#   deploy/container/build.sh --rootfs DIR [--binary PATH]
#
#   --binary PATH   the tls-sidecar to put in (default: build/tls-sidecar of this checkout)
#   --tag NAME      the image's name in buildah's local storage (default tls-sidecar:VERSION)
#   --output FILE   also write the image as an OCI archive (`podman load -i FILE`,
#                   `skopeo copy oci-archive:FILE docker://REGISTRY/tls-sidecar:VERSION`)
#   --rootfs DIR    only lay out the image's files in DIR (what Containerfile uses)
#
# Prints the image's name last. Needs root (buildah's storage), buildah and binutils (strip).
# Exit status: 0, 1 when a step failed, 2 for bad arguments.
set -euo pipefail

readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly UID_GID=65532
BINARY="${ROOT}/build/tls-sidecar"
TAG=""
OUTPUT=""
ROOTFS_ONLY=""

die() { echo "build.sh: $*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --binary) BINARY="$2"; shift ;;
    --tag) TAG="$2"; shift ;;
    --output) OUTPUT="$2"; shift ;;
    --rootfs) ROOTFS_ONLY="$2"; shift ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

[[ -x "${BINARY}" ]] || die "no tls-sidecar binary at ${BINARY} (build it, or give --binary)"
VERSION="$("${BINARY}" --version | sed -n '1s/^tls-sidecar //p')"
[[ -n "${VERSION}" ]] || die "${BINARY} --version did not say its version"
TAG="${TAG:-tls-sidecar:${VERSION}}"

# make_rootfs DIR: the image's whole file list, laid out in DIR.
make_rootfs() {
  local dir="$1"
  mkdir -p "${dir}/usr/bin" "${dir}/etc/tls-sidecar" "${dir}/run/tls-sidecar" "${dir}/tmp"
  strip --strip-unneeded -o "${dir}/usr/bin/tls-sidecar" "${BINARY}"
  # The dynamic loader and every library it resolves, copied (not linked) to the same path.
  local lib
  while read -r lib; do
    [[ -n "${lib}" ]] || continue
    mkdir -p "${dir}$(dirname "${lib}")"
    cp -L "${lib}" "${dir}${lib}"
  done < <(ldd "${BINARY}" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')
  printf 'root:x:0:0:root:/root:/sbin/nologin\ntls-sidecar:x:%d:%d:tls-sidecar:/nonexistent:/sbin/nologin\n' \
    "${UID_GID}" "${UID_GID}" >"${dir}/etc/passwd"
  printf 'root:x:0:\ntls-sidecar:x:%d:\n' "${UID_GID}" >"${dir}/etc/group"
  # The runtime directory for the control socket belongs to the user; /tmp is sticky.
  chown "${UID_GID}:${UID_GID}" "${dir}/run/tls-sidecar"
  chmod 0750 "${dir}/run/tls-sidecar"
  chmod 1777 "${dir}/tmp"
}

if [[ -n "${ROOTFS_ONLY}" ]]; then
  make_rootfs "${ROOTFS_ONLY}"
  exit 0
fi

command -v buildah >/dev/null 2>&1 || die "buildah is missing (apt-get install buildah)"
container="$(buildah from --name "tls-sidecar-build-$$" scratch)"
trap 'buildah rm "${container}" >/dev/null 2>&1 || true' EXIT
mount="$(buildah mount "${container}")"
make_rootfs "${mount}"
buildah umount "${container}" >/dev/null
buildah config \
  --user "${UID_GID}:${UID_GID}" \
  --entrypoint '["/usr/bin/tls-sidecar"]' \
  --cmd '["--config", "/etc/tls-sidecar/config/tls-sidecar.toml"]' \
  --port 27017 --port 9442 \
  --workingdir / \
  --label org.opencontainers.image.title=tls-sidecar \
  --label "org.opencontainers.image.version=${VERSION}" \
  --label "org.opencontainers.image.description=TLS-terminating sidecar proxy for MongoDB" \
  "${container}"
buildah commit --quiet --rm "${container}" "${TAG}" >/dev/null
trap - EXIT
if [[ -n "${OUTPUT}" ]]; then
  rm -f "${OUTPUT}"
  buildah push --quiet "${TAG}" "oci-archive:${OUTPUT}:${TAG}" >/dev/null
fi
echo "${TAG}"
