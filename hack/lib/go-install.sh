# shellcheck shell=bash
# Sourced by the hack scripts that build a Go command from the Go module proxy.
#
#   go_install DIR NAME PACKAGE@VERSION [go install flags...]
#
# Builds PACKAGE@VERSION (statically, with -trimpath) into DIR/NAME. It is built in a
# temporary directory beside DIR first, so that an interrupted build never leaves a
# half-written binary behind; go install outside a module uses the command's own go.mod.
go_install() {
  local dir="$1" name="$2" package="$3"
  shift 3
  mkdir -p "$dir"
  go_install_tmp="$(mktemp -d "$(dirname "$dir")/.$name-build.XXXXXX")"
  trap 'rm -rf "$go_install_tmp"' EXIT
  (cd "$go_install_tmp" && CGO_ENABLED=0 GOBIN="$go_install_tmp" go install -trimpath "$@" "$package" >&2)
  mv -f "$go_install_tmp/$name" "$dir/$name"
}
