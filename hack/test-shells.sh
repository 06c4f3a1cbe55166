#!/usr/bin/env bash
# The shells the command line's completion test runs its scripts in, bash and zsh, from
# Debian's packages where missing.
set -euo pipefail
# shellcheck source=hack/lib/debian-packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-packages.sh"
need_packages bash zsh
