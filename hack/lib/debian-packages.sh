# shellcheck shell=bash
# Sourced by the hack scripts that need Debian's packages.
#
#   need_packages PACKAGE...
#
# Installs, with apt-get, those of the packages that are not installed yet (the project's
# machines and CI run as root); fails, naming them, where it may not.
need_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "needs the Debian packages ${missing[*]}: install them as root" >&2
    return 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
