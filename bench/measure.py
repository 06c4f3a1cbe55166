"""What the bench records of one run: its time, the items it handled by kind, the vault
requests it made, the operator's memory and each process's CPU."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kvbackup.api.kinds import ItemKind
from tests.harness.fault_proxy import FaultProxy


@dataclass
class Measurement:
    what: str
    #: "backup" or "restore": the sequential loops the run is compared with.
    operation: str
    seconds: float
    #: The items the run handled, by kind.
    items: dict[ItemKind, int]
    #: The operator's run (its memory and the Secrets it wrote are recorded), not a loop.
    by_operator: bool = False
    vault_requests: int = 0
    throttled: int = 0
    peak_rss_mib: float = 0.0
    median_rss_mib: float = 0.0
    secrets_written: int = 0
    #: From the first to the last Key Vault request of the run.
    vault_seconds: float = 0.0
    #: CPU seconds each process used during the run.
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_items(self) -> int:
        return sum(self.items.values())

    @property
    def items_per_second(self) -> float:
        return self.total_items / self.seconds if self.seconds else 0.0

    @property
    def operator_cpu_ms_per_item(self) -> float | None:
        """The operator's CPU time (user and system) over the run per item it handled, in
        milliseconds; None for a loop, which the operator took no part in."""
        if not self.by_operator or not self.total_items:
            return None
        return self.cpu_seconds["operator"] * 1000 / self.total_items

    @property
    def vault_bound_rate(self) -> float:
        """Requests per second while the run was talking to the vault."""
        return self.vault_requests / self.vault_seconds if self.vault_seconds else 0.0


class Sampler:
    """Every 100 ms: the operator's resident memory and the proxy's request count."""

    def __init__(self, pid: int | None, proxy: FaultProxy) -> None:
        self.pid, self.proxy = pid, proxy
        self.rss_kib: list[int] = []
        self.requests: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.pid is not None:
                self.rss_kib.append(rss_kib(self.pid))
            self.requests.append((time.monotonic(), self.proxy.counts().requests))
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def vault_seconds(self) -> float:
        """From the first sample after requests started to the one where they stopped."""
        start_count = self.requests[0][1]
        moving = [
            t
            for (t, n), (_, before) in zip(self.requests[1:], self.requests[:-1], strict=True)
            if n > before
        ]
        if not moving or self.requests[-1][1] == start_count:
            return 0.0
        first = next(t for t, n in self.requests if n > start_count)
        return max(moving[-1] - first + 0.1, 0.1)


class CpuWatch:
    """CPU seconds used by named processes between start and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def stop(self) -> dict[str, float]:
        return {
            name: round(cpu_seconds(pid) - self._start[name], 3) for name, pid in self.pids.items()
        }


def cpu_seconds(pid: int) -> float:
    """User and system time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def timed(
    proxy: FaultProxy,
    what: str,
    operation: str,
    items: dict[ItemKind, int],
    run: Callable[[], None],
    pids: dict[str, int],
    operator_pid: int | None = None,
) -> Measurement:
    """``run``, measured; the operator's memory is sampled when ``operator_pid`` is given,
    as the run is then the operator's."""
    before = proxy.counts()
    sampler = Sampler(operator_pid, proxy)
    cpu = CpuWatch(pids)
    started = time.monotonic()
    run()
    seconds = time.monotonic() - started
    sampler.stop()
    after = proxy.counts()
    return Measurement(
        what,
        operation,
        seconds,
        items,
        by_operator=operator_pid is not None,
        vault_requests=after.requests - before.requests,
        throttled=after.throttled - before.throttled,
        peak_rss_mib=max(sampler.rss_kib, default=0) / 1024,
        median_rss_mib=statistics.median(sampler.rss_kib) / 1024 if sampler.rss_kib else 0.0,
        vault_seconds=sampler.vault_seconds(),
        cpu_seconds=cpu.stop(),
    )
