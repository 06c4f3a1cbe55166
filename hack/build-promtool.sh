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
# shellcheck source=hack/lib/go-install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-install.sh"

built() {
  [ -x "$BIN_DIR/promtool" ] && "$BIN_DIR/promtool" --help >/dev/null 2>&1
}

build_promtool() {
  go_install "$BIN_DIR" promtool \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
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
