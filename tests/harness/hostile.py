"""What a hostile tenant leaves in its own storage, and how much memory the operator took
to read it."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

#: Bytes compressed at a time: a bomb is made without ever holding what it inflates to.
_CHUNK = 4 * 1024 * 1024


def gzip_bomb(inflated: int) -> bytes:
    """gzip of ``inflated`` zero bytes: about a thousandth of that in size."""
    gzip = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    zeros = bytes(_CHUNK)
    parts = []
    for start in range(0, inflated, _CHUNK):
        parts.append(gzip.compress(zeros[: min(_CHUNK, inflated - start)]))
    parts.append(gzip.flush())
    return b"".join(parts)


def zeros(size: int) -> Iterator[bytes]:
    """``size`` zero bytes, a few MiB at a time, for an upload that never holds them all."""
    chunk = bytes(_CHUNK)
    for start in range(0, size, _CHUNK):
        yield chunk[: min(_CHUNK, size - start)]


def peak_rss_mib(pid: int) -> float:
    """The most resident memory the process has had since it started (the kernel's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")
