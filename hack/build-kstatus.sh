#!/usr/bin/env bash
# Builds hack/kstatus, a small program that prints the verdict of kstatus (the status
# library of Flux and kpt, sigs.k8s.io/cli-utils/pkg/kstatus/status) on the objects it
# reads, from the Go module proxy, and caches it outside the repository, keyed by the
# cli-utils version and a hash of the program's go.mod, go.sum and sources. The GitOps
# tests read the operator's KeyBackups and KeyRestores through it, as Flux would.
# Prints the directory holding the binary; does nothing when it is already built.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$HERE/kstatus"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"

log() { echo "build-kstatus: $*" >&2; }
# shellcheck source=hack/lib/progress.sh
source "$HERE/lib/progress.sh"
# shellcheck source=hack/lib/go-build.sh
source "$HERE/lib/go-build.sh"

CLI_UTILS_VERSION="$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "$SOURCE/go.mod")"
NAME="kstatus-$CLI_UTILS_VERSION-$(source_key "$SOURCE")"
BIN_DIR="$CACHE_DIR/bin/$NAME"

built() {
  [ -x "$BIN_DIR/kstatus" ] && echo '{"apiVersion":"v1","kind":"List","items":[]}' | "$BIN_DIR/kstatus" >/dev/null 2>&1
}

if ! built; then
  # Measured on a 2-core machine shared with other builds, with empty Go module and build
  # caches: 1m7s (apimachinery is most of it).
  long_step "building kstatus (cli-utils $CLI_UTILS_VERSION) from the Go module proxy" \
    "about a minute" "$CACHE_DIR/bin/$NAME.log" go_build "$BIN_DIR" kstatus "$SOURCE" -ldflags "-s -w"
  built || { log "the built kstatus does not run"; exit 1; }
fi
echo "$BIN_DIR"
