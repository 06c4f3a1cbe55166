#!/usr/bin/env bash
# Fetches the Lowkey Vault (Key Vault emulator) runnable jar from Maven Central into the
# cache and prints its path. Exits non-zero, with Maven's own error, when the registry
# does not serve it.
set -euo pipefail
LOWKEY_VERSION="${LOWKEY_VERSION:-7.1.13}"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}/lowkey-vault-$LOWKEY_VERSION"
JAR="$CACHE_DIR/lowkey-vault-app-$LOWKEY_VERSION.jar"
if [ ! -f "$JAR" ]; then
  mkdir -p "$CACHE_DIR"
  if ! mvn -q -B -U dependency:copy \
      "-Dartifact=com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VERSION:jar" \
      "-DoutputDirectory=$CACHE_DIR" >"$CACHE_DIR/mvn.log" 2>&1; then
    echo "fetch-lowkey-vault: Maven Central did not serve" \
      "com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VERSION:" >&2
    grep -E "ERROR.*(Could not|Missing|not found|Failed)" "$CACHE_DIR/mvn.log" | head -3 >&2 || true
    exit 1
  fi
fi
echo "$JAR"
