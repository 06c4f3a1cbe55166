"""Trims the image's root file system to what the operator runs (the Dockerfile's
runtime stage runs it as root, with the venv in place, then deletes it).

    python3 -I -B image_prune.py VENV MODULE...

MODULE... are what the image's commands import as they start. What goes:

- bytecode of every module those imports do not load, and every optimized (``-O``)
  bytecode file: Python reads bytecode only for what it imports, and the sources stay, so
  a module loaded later still works, and every traceback keeps its source lines. Loaded
  modules without bytecode get it here (a base may ship none), so a start never
  compiles anything. The Kubernetes client, whose API and model modules load
  lazily, is most of what this removes;
- Python's own development tools: the test suite, 2to3, pydoc's topics, distutils,
  ensurepip and venv, IDLE and Tk, and the pip and setuptools wheels ensurepip installs;
- what no Python process uses from the Debian base: perl and debconf (no package is
  configured in a running image), documentation but the copyright files, manuals,
  translations, glibc's iconv modules (Python's codecs are its own), and dpkg's and
  debconf's backup copies and library symbol lists. dpkg's status and file lists stay, so
  scanners still see every Debian package.

It refuses to remove a tool the operator imports, and checks at the end that the
operator still imports with nothing compiled.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

STDLIB_TOOLS = (
    "test",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "ensurepip",
    "venv",
    "idlelib",
    "tkinter",
    "turtledemo",
)

#: Globs from the root; documentation keeps each package's copyright file.
BASE_PATHS = (
    "usr/bin/perl*",
    "usr/lib/*/perl-base",
    "usr/lib/*/perl",
    "usr/share/perl5",
    "usr/share/perl",
    "var/cache/debconf",
    "usr/share/python-wheels",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bash-completion",
    "usr/lib/*/gconv",
    "var/lib/dpkg/*-old",
    "var/lib/dpkg/info/*.symbols",
    "var/lib/dpkg/info/*.templates",
    "var/cache/apt",
    "var/lib/apt/lists",
)

#: Imports argv[1:]; run with -v, Python says where each module's code came from.
IMPORT = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
"""
CODE_FROM = "# code object from "


def code_loaded(python: Path, modules: list[str]) -> tuple[set[Path], list[str]]:
    """The source files of every module whose code importing ``modules`` runs, including
    optional imports that then fail (a missing extra, a Windows-only module), and those
    of them read from source rather than bytecode."""
    verbose = subprocess.run(
        [str(python), "-I", "-B", "-v", "-c", IMPORT, *modules],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ).stderr
    sources: set[Path] = set()
    from_source: list[str] = []
    for line in verbose.splitlines():
        if not line.startswith(CODE_FROM):
            continue
        where = line.removeprefix(CODE_FROM)
        if where.startswith("'"):
            sources.add(Path(importlib.util.source_from_cache(ast.literal_eval(where))).resolve())
        else:
            sources.add(Path(where).resolve())
            from_source.append(where)
    return sources, from_source


def size(paths: Iterable[Path]) -> int:
    total = 0
    for path in paths:
        if path.is_symlink() or path.is_file():
            total += path.lstat().st_size
        elif path.is_dir():
            total += sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
    return total


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def prune_bytecode(roots: list[Path], loaded: set[Path]) -> tuple[int, int]:
    """Deletes bytecode of what is not loaded; compiles what is loaded and has none."""
    removed = 0
    for root in roots:
        for cached in root.rglob("__pycache__/*.pyc"):
            try:
                source = Path(importlib.util.source_from_cache(str(cached))).resolve()
            except ValueError:  # another Python's
                source = None
            if source not in loaded or ".opt-" in cached.name:
                removed += cached.stat().st_size
                cached.unlink()
        for cache in root.rglob("__pycache__"):
            if not any(cache.iterdir()):
                cache.rmdir()
    compiled = 0
    for source in loaded:
        if any(source.is_relative_to(root) for root in roots):
            cached = Path(importlib.util.cache_from_source(str(source)))
            if not cached.exists():
                py_compile.compile(str(source), cfile=str(cached), doraise=True)
                compiled += 1
    return removed, compiled


def main(venv: Path, modules: list[str]) -> None:
    python = venv / "bin" / "python"
    loaded, _ = code_loaded(python, modules)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    site = Path(
        subprocess.run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip()
    ).resolve()

    tools = [stdlib / name for name in STDLIB_TOOLS if (stdlib / name).exists()]
    used = sorted(str(s) for s in loaded for tool in tools if s.is_relative_to(tool))
    if used:
        sys.exit(f"image_prune: the operator imports these, so they stay: {used}")
    # The base's own site-packages (a python:*-slim image installs pip and setuptools
    # there); the venv does not see it.
    system_site = Path(sysconfig.get_paths()["purelib"]).resolve()
    installers = [
        path
        for pattern in ("pip", "pip-*", "setuptools", "setuptools-*", "wheel", "wheel-*")
        for path in system_site.glob(pattern)
        if system_site != site
    ]
    base = [Path(p) for pattern in BASE_PATHS for p in glob.glob("/" + pattern)]
    docs = [
        path
        for path in Path("/usr/share/doc").glob("*/*")
        if path.name != "copyright" and not path.is_symlink()
    ]
    for label, paths in (
        ("Python's development tools", tools + installers),
        ("the base's unused files", base + docs),
    ):
        print(f"image_prune: {label}: {megabytes(size(paths))}")
        for path in paths:
            remove(path)

    removed, compiled = prune_bytecode([stdlib, site], loaded)
    print(
        f"image_prune: bytecode of {len(loaded)} loaded modules kept ({compiled} compiled "
        f"here); of the rest removed: {megabytes(removed)}"
    )
    # Everything loaded at start still imports, and from bytecode.
    _, from_source = code_loaded(python, modules)
    if from_source:
        sys.exit("image_prune: compiled from source at start:\n" + "\n".join(from_source))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
