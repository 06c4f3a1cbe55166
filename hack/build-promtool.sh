#!/usr/bin/env bash
# Builds promtool, Prometheus' own rule checker and rule unit-test runner, from the Go
# module proxy (no registry reachable from here ships the binary) and caches it outside
# the repository, keyed by version. The chart test checks the PrometheusRule's rules with
# it and proves that each alert fires when, and only when, it should.
# Prints the directory holding the binary; does nothing when it is already built.
set -euo pipefail

# Prometheus' Go module versions are v0.<major*100+minor>.<patch>: v0.316.0 is 3.16.0.
PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
BIN_DIR="$CACHE_DIR/bin/promtool-$PROMETHEUS_MODULE_VERSION"

log() { echo "build-promtool: $*" >&2; }
# shellcheck source=hack/lib/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/progress.sh"

built() {
  [ -x "$BIN_DIR/promtool" ] && "$BIN_DIR/promtool" --help >/dev/null 2>&1
}

build_promtool() {
  mkdir -p "$BIN_DIR"
  # Into a temporary directory, so an interrupted build leaves no half-written binary;
  # go install outside a module uses Prometheus' own go.mod.
  tmp="$(mktemp -d "$CACHE_DIR/bin/.promtool-build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >&2)
  mv -f "$tmp/promtool" "$BIN_DIR/promtool"
}

if ! built; then
  # Measured on a 2-core machine with an empty Go module cache: 11 CPU minutes (its
  # service discovery pulls in large cloud SDKs), 41 minutes while the machine was
  # shared with other builds.
  long_step "building promtool $PROMETHEUS_MODULE_VERSION from the Go module proxy" \
    "about 10 minutes" "$CACHE_DIR/bin/promtool-$PROMETHEUS_MODULE_VERSION.log" build_promtool
  built || { log "the built promtool does not run"; exit 1; }
fi
echo "$BIN_DIR"
