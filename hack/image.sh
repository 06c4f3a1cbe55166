#!/usr/bin/env bash
# Builds the operator image from the Dockerfile, unchanged, and writes the SBOM of its
# Python packages:
#   build  (default) `docker build` where a Docker engine answers; otherwise a minimal
#          Debian base made by mmdebstrap and `buildah bud --isolation chroot`, which need
#          nothing but Debian packages and root (installed here when missing)
#   ref    prints the image reference only: the chart's default (image.repository
#          kvbackup-operator, tag = appVersion = the version in pyproject.toml)
#   audit  pip-audit on requirements.lock (the image's dependencies): fails on a known
#          vulnerability that a newer release fixes. Where pip-audit cannot reach its
#          vulnerability service it says so loudly and passes, unless
#          KVBACKUP_AUDIT_REQUIRED=1 (for a CI that can reach it)
# The last line on standard output is the image reference; progress, the size and the
# SBOM's path go to standard error.
#
# Caches, outside the repository: the Debian base in $KVBACKUP_CACHE/image-base-<key>
# (keyed by its recipe) and as an image in the container storage; the build's steps as
# buildah layers. KVBACKUP_IMAGE_REFRESH_BASE=1 makes the base again (for Debian's
# security updates). KVBACKUP_IMAGE_ENGINE=docker|buildah overrides the choice.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
IMAGE="kvbackup-operator:$VERSION"
SBOM="dist/kvbackup-operator-$VERSION.cdx.json"
PIP_AUDIT_VERSION="2.10.1"
CYCLONEDX_BOM_VERSION="7.5.0"
TOOLS="$CACHE_DIR/audit-tools-pip-audit-$PIP_AUDIT_VERSION-cyclonedx-bom-$CYCLONEDX_BOM_VERSION"

# The base: Debian's own Python 3.11 and CA certificates on the smallest Debian there is
# (no apt, no docs, no locales); the Dockerfile makes its venv with it. libstdc++6 is for
# google-re2's extension, which a slim image has because apt needs it too.
BASE_SUITE="bookworm"
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,libstdc++6"
# shellcheck disable=SC2016  # the hook's "$1" is expanded by mmdebstrap's shell, not this one
BASE_OPTIONS=(
  --variant=essential
  --include="$BASE_PACKAGES"
  # /usr merged by symlinks, as debootstrap does: else bookworm's essential packages pull
  # in usrmerge, and with it the whole of perl (about 50 MB).
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  # glibc's iconv modules (8 MB): Python's codecs are its own.
  --dpkgopt='path-exclude=/usr/lib/*/gconv/*'
  # The host's resolver and name would otherwise ship in the image; a runtime supplies both.
  --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
)
BASE_KEY="$(printf '%s\n' "$BASE_SUITE" "${BASE_OPTIONS[@]}" | sha256sum | cut -c1-12)"
BASE_IMAGE="localhost/kvbackup-base:$BASE_SUITE-$BASE_KEY"
BASE_TAR="$CACHE_DIR/image-base-$BASE_SUITE-$BASE_KEY/base.tar"

log() { echo "image: $*" >&2; }
die() { log "$*"; exit 1; }

SCRATCH="$(mktemp -d)"
CONTAINERS=()
cleanup() {
  local container
  for container in "${CONTAINERS[@]}"; do
    buildah rm "$container" >/dev/null 2>&1 || true
  done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

docker_works() {
  command -v docker >/dev/null && docker info >/dev/null 2>&1
}

# Debian's packages, installed with apt-get where missing (the project's machines run as root).
need_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || die "needs the Debian packages ${missing[*]}: install them as root"
  log "installing ${missing[*]} with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

sbom_tools() {
  if [ ! -x "$TOOLS/bin/cyclonedx-py" ] || [ ! -x "$TOOLS/bin/pip-audit" ]; then
    log "installing pip-audit $PIP_AUDIT_VERSION and cyclonedx-bom $CYCLONEDX_BOM_VERSION into $TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet "pip-audit==$PIP_AUDIT_VERSION" \
      "cyclonedx-bom==$CYCLONEDX_BOM_VERSION"
  fi
}

seconds_since() { echo $(( $(date +%s) - $1 )); }

# A refreshed base takes over the name; the build's cached steps, keyed by the base's id,
# are then made again on it.
base_image() {
  local refresh="${KVBACKUP_IMAGE_REFRESH_BASE:-0}" started
  if [ "$refresh" != 1 ] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    return
  fi
  if [ "$refresh" = 1 ] || [ ! -s "$BASE_TAR" ]; then
    started="$(date +%s)"
    log "making the Debian $BASE_SUITE base with mmdebstrap (about 30 s)"
    mkdir -p "$(dirname "$BASE_TAR")"
    if ! mmdebstrap --quiet --format=tar "${BASE_OPTIONS[@]}" "$BASE_SUITE" "$BASE_TAR.partial" \
      2>"$SCRATCH/mmdebstrap.log"; then
      cat "$SCRATCH/mmdebstrap.log" >&2
      die "mmdebstrap failed"
    fi
    mv "$BASE_TAR.partial" "$BASE_TAR"
    log "base made in $(seconds_since "$started") s: $BASE_TAR"
  fi
  started="$(date +%s)"
  local container
  container="$(buildah from scratch)"
  CONTAINERS+=("$container")
  buildah add --quiet "$container" "$BASE_TAR" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh --label "org.opencontainers.image.base.name=debian:$BASE_SUITE" "$container"
  buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
  log "imported the base as $BASE_IMAGE in $(seconds_since "$started") s"
  forget_other_bases
}

# Bases of another recipe, or made before a refresh, are of no further use.
forget_other_bases() {
  local dir image
  for dir in "$CACHE_DIR"/image-base-*; do
    [ "$dir" = "$(dirname "$BASE_TAR")" ] || rm -rf "$dir"
  done
  for image in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/kvbackup-base:'); do
    [ "$image" = "$BASE_IMAGE" ] || buildah rmi "$image" >/dev/null 2>&1 || true
  done
}

# A build behind a TLS-inspecting proxy needs the host's CA bundle and pip settings, as a
# corporate user's does: mounted read-only into the build's RUN steps, never into a layer.
host_trust_mounts() {
  local bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  if [ -f "$bundle" ]; then
    echo "--volume=$(readlink -f "$bundle"):/etc/ssl/certs/ca-certificates.crt:ro"
  fi
  if [ -f /etc/pip.conf ]; then
    echo "--volume=/etc/pip.conf:/etc/pip.conf:ro"
  fi
}

build_with_buildah() {
  need_packages mmdebstrap buildah
  base_image
  local mounts=()
  mapfile -t mounts < <(host_trust_mounts)
  log "building $IMAGE with buildah on $BASE_IMAGE"
  # chroot isolation: no OCI runtime can start a container on these machines.
  buildah bud --quiet --isolation chroot --network host --layers --pull=never \
    "${mounts[@]}" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" -t "$IMAGE" . >/dev/null
}

# Uncompressed, as the engine counts it (a registry stores it gzip-compressed, smaller).
image_size() {
  if [ "$ENGINE" = docker ]; then
    docker image ls --format '{{.Size}}' "$IMAGE"
  else
    buildah images --format '{{.Size}}' "$IMAGE"
  fi
}

# The distributions installed in the image's venv, as name==version lines for cyclonedx-py,
# read by the image's own Python (the image has no pip).
LIST_PACKAGES='import importlib.metadata as m
for d in m.distributions():
    if d.metadata["Name"] != "kvbackup":
        print(d.metadata["Name"] + "==" + d.version)'

installed_packages() {
  if [ "$ENGINE" = docker ]; then
    docker run --rm --entrypoint python "$IMAGE" -c "$LIST_PACKAGES"
    return
  fi
  local container root
  container="$(buildah from --pull=never "$IMAGE")"
  CONTAINERS+=("$container")
  root="$(buildah mount "$container")"
  # As the image's user, with none of this shell's settings.
  env -i HOME=/tmp "$(command -v chroot)" --userspec=65532:65532 "$root" \
    /opt/venv/bin/python -c "$LIST_PACKAGES"
  buildah umount "$container" >/dev/null
}

write_sbom() {
  sbom_tools
  installed_packages > "$SCRATCH/installed.txt"
  mkdir -p "$(dirname "$SBOM")"
  # kvbackup itself is the SBOM's root component, described by pyproject.toml.
  # Its warning that a requirements file has no dependency graph says nothing new.
  PYTHONWARNINGS=ignore::UserWarning "$TOOLS/bin/cyclonedx-py" requirements --pyproject pyproject.toml --output-reproducible \
    --output-file "$SBOM" "$SCRATCH/installed.txt"
  log "SBOM of the image's Python packages (kvbackup and $(wc -l < "$SCRATCH/installed.txt") more): $SBOM"
}

audit() {
  sbom_tools
  local report="$SCRATCH/audit.json" code=0
  # Exit code 1 means "vulnerabilities found"; the verdict below reads the report instead.
  "$TOOLS/bin/pip-audit" --disable-pip --require-hashes --requirement requirements.lock \
    --progress-spinner off --format json --output "$report" 2>"$SCRATCH/audit.log" || true
  if [ ! -s "$report" ]; then
    cat "$SCRATCH/audit.log" >&2
    die "pip-audit wrote no report"
  fi
  python3 hack/pip_audit_verdict.py "$report" || code=$?
  case "$code" in
    0) ;;
    3)
      if [ "${KVBACKUP_AUDIT_REQUIRED:-0}" = 1 ]; then
        die "requirements.lock could not be audited"
      fi
      log "WARNING: requirements.lock was not audited: pip-audit's vulnerability service answered for no package (KVBACKUP_AUDIT_REQUIRED=1 makes this an error)"
      ;;
    *) exit "$code" ;;
  esac
}

build() {
  local started
  started="$(date +%s)"
  case "${KVBACKUP_IMAGE_ENGINE:-auto}" in
    docker) ENGINE=docker ;;
    buildah) ENGINE=buildah ;;
    auto) if docker_works; then ENGINE=docker; else ENGINE=buildah; fi ;;
    *) die "KVBACKUP_IMAGE_ENGINE must be docker, buildah or auto" ;;
  esac
  if [ "$ENGINE" = docker ]; then
    log "building $IMAGE with docker"
    docker build --quiet -t "$IMAGE" . >/dev/null
  else
    build_with_buildah
  fi
  local size
  size="$(image_size)"
  log "$IMAGE: $size, built in $(seconds_since "$started") s with $ENGINE"
  write_sbom
  echo "$IMAGE"
}

case "${1:-build}" in
  build) build ;;
  ref) echo "$IMAGE" ;;
  audit) audit ;;
  *) echo "usage: $0 [build|ref|audit]" >&2; exit 2 ;;
esac
