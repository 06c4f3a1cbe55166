#!/usr/bin/env bash
# Finds Lowkey Vault, the Key Vault emulator the tests and the demo run against.
#
#   hack/lowkey-vault.sh         prints the path of its runnable jar
#   hack/lowkey-vault.sh java    prints a java (>= 25) that can run it
#
# The jar, in this order: $LOWKEY_VAULT_JAR; else built from the upstream source in
# ../shared/lowkey-vault (its build.sh caches it by version); else the published
# artifact com.github.nagyesta.lowkey-vault:lowkey-vault-app from a Maven registry.
# Every failure names its real cause.
set -euo pipefail

LOWKEY_VERSION="7.3.86"
MIN_JAVA=25
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="${LOWKEY_VAULT_SOURCE:-$here/../../shared/lowkey-vault}"
cache_dir="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}/lowkey-vault-$LOWKEY_VERSION"

die() { echo "lowkey-vault: $*" >&2; exit 1; }
# shellcheck source=hack/lib/progress.sh
source "$here/lib/progress.sh"

java_major() {  # $1: a java executable; prints its major version, 0 when unknown
  "$1" -XshowSettings:properties -version 2>&1 \
    | sed -n 's/.*java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1 | grep . || echo 0
}

find_java() {
  local candidate best="" best_major=0 major
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
    [ -x "$candidate" ] || continue
    major="$(java_major "$candidate")"
    if (( major >= MIN_JAVA && major > best_major )); then best="$candidate"; best_major="$major"; fi
  done
  [ -n "$best" ] || die "no Java >= $MIN_JAVA found (JAVA_HOME=${JAVA_HOME:-unset}, /usr/lib/jvm, PATH); install a JDK $MIN_JAVA or newer"
  echo "$best"
}

find_jar() {
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    [ -s "$LOWKEY_VAULT_JAR" ] || die "LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR is not a file"
    echo "$LOWKEY_VAULT_JAR"
    return
  fi
  local jar="$cache_dir/lowkey-vault-app-$LOWKEY_VERSION.jar"
  if [ -x "$source_dir/build.sh" ]; then
    if [ -s "$jar" ]; then  # built before: build.sh only prints its path
      "$source_dir/build.sh" || die "finding the jar built from $source_dir failed (see above)"
    else
      long_step "building Lowkey Vault $LOWKEY_VERSION from $source_dir with Maven" \
        "a few minutes" "$cache_dir/build.log" "$source_dir/build.sh" ||
        die "building from $source_dir failed (see above)"
    fi
    return
  fi
  if [ ! -s "$jar" ]; then
    command -v mvn >/dev/null 2>&1 || die "no LOWKEY_VAULT_JAR, no source at $source_dir, and no mvn to fetch it"
    echo "lowkey-vault: fetching lowkey-vault-app $LOWKEY_VERSION from the Maven registry (first time only, about 20 seconds)" >&2
    mkdir -p "$cache_dir"
    if ! mvn -q -B dependency:copy \
        "-Dartifact=com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VERSION:jar" \
        "-DoutputDirectory=$cache_dir" >"$cache_dir/mvn.log" 2>&1; then
      grep -E "ERROR" "$cache_dir/mvn.log" | head -n 3 >&2 || true
      die "the Maven registry refused lowkey-vault-app:$LOWKEY_VERSION (full log: $cache_dir/mvn.log); set LOWKEY_VAULT_JAR to a jar you have"
    fi
  fi
  echo "$jar"
}

case "${1:-jar}" in
  jar) find_jar ;;
  java) find_java ;;
  *) die "usage: $0 [jar|java]" ;;
esac
