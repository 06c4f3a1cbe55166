#!/usr/bin/env bash
# Builds helm from the Go module proxy (no registry reachable from here ships the helm
# binary) and caches it outside the repository, keyed by version.
# Prints the directory holding the binary; does nothing when it is already built.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
BIN_DIR="$CACHE_DIR/bin/helm-$HELM_VERSION"

log() { echo "build-helm: $*" >&2; }
# shellcheck source=hack/lib/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/progress.sh"
# shellcheck source=hack/lib/go-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-install.sh"

built() {
  [ -x "$BIN_DIR/helm" ] &&
    [ "$("$BIN_DIR/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}

build_helm() {
  # helm's release Makefile stamps its version and the Kubernetes version it assumes
  # (from the client-go it is built with) into the binary; without these, `helm template`
  # and `helm lint` would pretend to talk to Kubernetes 1.20 and refuse charts that
  # require a newer one.
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')"
  client_go="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")"
  k8s_minor="$(echo "$client_go" | cut -d. -f2)"
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
  done
  go_install "$BIN_DIR" helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" -ldflags "$ldflags"
}

if ! built; then
  # The estimate is from a 2-core machine with an empty Go module cache.
  long_step "building helm $HELM_VERSION from the Go module proxy" "about 3 minutes" \
    "$CACHE_DIR/bin/helm-$HELM_VERSION.log" build_helm
  built || { log "the built helm does not report version $HELM_VERSION"; exit 1; }
fi
echo "$BIN_DIR"
