"""Stopping processes that a harness started, in order, without leaving any behind."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie still answers signal 0; its state in /proc says it is gone.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True


def stop(pid: int, timeout: float = 20) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL and wait again."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive(pid):
            return
    raise RuntimeError(f"process {pid} survived SIGKILL")


def stop_recorded(pid_file: Path) -> None:
    """Stops the processes a pid file lists, last started first; the file goes when they do."""
    if not pid_file.exists():
        return
    for pid in reversed(pid_file.read_text().split()):
        stop(int(pid))
    pid_file.unlink()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "stop":
        raise SystemExit(f"usage: {sys.argv[0]} stop PID_FILE")
    stop_recorded(Path(sys.argv[2]))
