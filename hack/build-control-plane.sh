#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy (no registry
# ships these binaries) and caches them outside the repository, keyed by version.
# Prints the directory holding the binaries.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
BIN_DIR="$CACHE_DIR/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

# shellcheck source=hack/lib/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/progress.sh"

build_kubernetes() {
  local work="$CACHE_DIR/src/k8s-$K8S_VERSION"
  local staging="v0.${K8S_VERSION#v1.}"
  mkdir -p "$work"
  cd "$work"
  [ -f go.mod ] || go mod init kvbackup.local/k8s-build >/dev/null 2>&1
  local k8s_dir
  k8s_dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # k8s.io/kubernetes requires its staging modules at v0.0.0; pin each one to the
  # matching published release, as its own go.mod lists them.
  local replaces
  replaces=$(awk '/^\t?k8s\.io\/[a-z-]+ => \.\/staging/ {print $1}' "$k8s_dir/go.mod" | sort -u)
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  for module in $replaces; do
    go mod edit -replace="$module=$module@$staging"
  done
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >&2
  go build -o "$BIN_DIR/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -o "$BIN_DIR/kubectl" k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local work="$CACHE_DIR/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  cd "$work"
  [ -f go.mod ] || go mod init kvbackup.local/etcd-build >/dev/null 2>&1
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy >&2
  go build -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
}

mkdir -p "$BIN_DIR"
# The estimates are from a 2-core machine with an empty Go module cache.
if [ ! -x "$BIN_DIR/etcd" ]; then
  long_step "building etcd $ETCD_VERSION from the Go module proxy" "about 3 minutes" \
    "$CACHE_DIR/src/etcd-$ETCD_VERSION.log" build_etcd
fi
if [ ! -x "$BIN_DIR/kube-apiserver" ] || [ ! -x "$BIN_DIR/kubectl" ]; then
  long_step "building kube-apiserver and kubectl $K8S_VERSION from the Go module proxy" \
    "about 10 minutes" "$CACHE_DIR/src/k8s-$K8S_VERSION.log" build_kubernetes
fi
echo "$BIN_DIR"
