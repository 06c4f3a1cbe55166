#!/usr/bin/env bash
# Builds hack/argocd-health, which evaluates an Argo CD health check in Lua on an object
# with Argo CD's own code (the argo-cd module's util/lua package, the one its application
# controller runs), from the Go module proxy, and caches it outside the repository, keyed
# by the argo-cd version and a hash of the program's go.mod, go.sum and sources. The
# GitOps tests run gitops/argocd's health_test.yaml cases through it.
# Prints the directory holding the binary; does nothing when it is already built.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE="$HERE/argocd-health"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"

log() { echo "build-argocd-health: $*" >&2; }
# shellcheck source=hack/lib/progress.sh
source "$HERE/lib/progress.sh"
# shellcheck source=hack/lib/go-build.sh
source "$HERE/lib/go-build.sh"

ARGOCD_VERSION="$(awk '$1 == "github.com/argoproj/argo-cd/v3" {print $2}' "$SOURCE/go.mod")"
NAME="argocd-health-$ARGOCD_VERSION-$(source_key "$SOURCE")"
BIN_DIR="$CACHE_DIR/bin/$NAME"

built() {
  [ -x "$BIN_DIR/argocd-health" ] &&
    echo '{"apiVersion":"kvbackup.io/v1alpha1","kind":"KeyBackup","metadata":{"name":"probe"}}' |
    "$BIN_DIR/argocd-health" <(echo 'return {status = "Healthy"}') 2>/dev/null | grep -q '"Healthy"'
}

if ! built; then
  # Measured on a 2-core machine shared with other builds, with empty Go module and build
  # caches: 4m17s (argo-cd's API types pull in client-go, gRPC and much of Kubernetes).
  long_step "building argocd-health (Argo CD $ARGOCD_VERSION's Lua runner) from the Go module proxy" \
    "about 5 minutes" "$CACHE_DIR/bin/$NAME.log" go_build "$BIN_DIR" argocd-health "$SOURCE" -ldflags "-s -w"
  built || { log "the built argocd-health does not run"; exit 1; }
fi
echo "$BIN_DIR"
