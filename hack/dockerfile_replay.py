"""Replays the Dockerfile's builder stage without a container engine (`make image-check`):

    python3 hack/dockerfile_replay.py WORKDIR

Its WORKDIR, COPY, ENV and RUN steps run for real against WORKDIR, with /opt/venv
standing for WORKDIR/opt/venv, so a broken install line fails here as it would in a build;
then the image's ENTRYPOINT module must start from that venv and refuse a bad setting
before connecting anywhere.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

work = Path(sys.argv[1])
work.mkdir(parents=True, exist_ok=True)
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
    sys.exit("image: the Dockerfile's first stage is not the builder stage")


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
            sys.exit(f"image: cannot replay {line!r}")
        target = cwd / dest if not dest.startswith("/") else work / dest.lstrip("/")
        for source in sources:
            path = repo / source
            if path.is_dir():
                shutil.copytree(
                    path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
            else:
                shutil.copy2(path, target)
    elif instruction == "RUN":
        command = rebase(rest)
        print(f"image: RUN {rest}", file=sys.stderr, flush=True)
        subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, check=True)
    elif instruction in {"ARG", "LABEL", "EXPOSE", "USER"}:
        continue
    else:
        sys.exit(f"image: cannot replay {instruction} in the builder stage")

venv = work / "opt" / "venv"
entry = re.search(r'^ENTRYPOINT\s+\["python",\s*"-m",\s*"([\w.]+)"\]', "\n".join(joined), re.M)
if not entry:
    sys.exit('image: ENTRYPOINT is not ["python", "-m", MODULE]')
# The entry point must start and refuse a bad setting before connecting anywhere.
probe = subprocess.run(
    [str(venv / "bin" / "python"), "-m", entry.group(1)],
    env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "KVBACKUP_MAX_CONCURRENCY": "none"},
    capture_output=True,
    text=True,
    timeout=60,
    cwd="/",
)
refused = "InvalidSpecError: KVBACKUP_MAX_CONCURRENCY must be"
if probe.returncode == 0 or refused not in probe.stderr:
    sys.exit(f"image: the entry point did not start as expected:\n{probe.stderr[-2000:]}")
print(f"image: python -m {entry.group(1)} starts from the installed venv", file=sys.stderr)
