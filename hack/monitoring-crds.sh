#!/usr/bin/env bash
# The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, which the chart's
# optional monitoring objects need, so the tests can install them and have the API server
# validate those objects. They come from the prometheus-operator module the Go module
# proxy serves (its example/prometheus-operator-crd/ holds the published CRD YAML) and are
# cached outside the repository, keyed by version. Prints the directory holding them.
set -euo pipefail

VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
DIR="$CACHE_DIR/monitoring-crds-$VERSION"
CRDS=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

log() { echo "monitoring-crds: $*" >&2; }

fetched() {
  for crd in "${CRDS[@]}"; do [ -s "$DIR/$crd" ] || return 1; done
}

if ! fetched; then
  log "fetching the CRDs of prometheus-operator $VERSION from the Go module proxy"
  mkdir -p "$CACHE_DIR"
  tmp="$(mktemp -d "$CACHE_DIR/.monitoring-crds.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # Outside any module, so no go.mod is read or written.
  module="$(cd "$tmp" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  for crd in "${CRDS[@]}"; do
    install -m 0644 "$module/example/prometheus-operator-crd/$crd" "$tmp/$crd"
  done
  rm -rf "$DIR"
  mv "$tmp" "$DIR"
  chmod 0755 "$DIR"
  trap - EXIT
  fetched || { log "the module lacks ${CRDS[*]}"; exit 1; }
fi
echo "$DIR"
