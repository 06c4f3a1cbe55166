# shellcheck shell=bash
# Sourced by the hack scripts that build a small Go program of the repository's own
# (hack/<name>/, a module with go.mod and go.sum) from the Go module proxy.
#
#   source_key DIR
#
# Prints a short hash of the program's go.mod, go.sum and Go sources: a change of the
# pinned versions or of the program itself gives a new cache key, and so a new build.
source_key() {
  (cd "$1" && cat go.mod go.sum ./*.go) | sha256sum | cut -c1-12
}

#   go_build DIR NAME SOURCE_DIR [go build flags...]
#
# Builds the module in SOURCE_DIR (statically, with -trimpath, with the versions and
# checksums its go.sum pins: -mod=readonly never rewrites them) into DIR/NAME. As in
# go_install, it is built beside DIR first, so that an interrupted build never leaves a
# half-written binary behind.
go_build() {
  local dir="$1" name="$2" source="$3"
  shift 3
  mkdir -p "$dir"
  go_build_tmp="$(mktemp -d "$(dirname "$dir")/.$name-build.XXXXXX")"
  trap 'rm -rf "$go_build_tmp"' EXIT
  (cd "$source" && CGO_ENABLED=0 go build -mod=readonly -trimpath "$@" -o "$go_build_tmp/$name" . >&2)
  mv -f "$go_build_tmp/$name" "$dir/$name"
}
