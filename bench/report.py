"""The bench's tables, and the same figures in ``bench-results.json``."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.measure import Measurement
from bench.stage import Settings
from kvbackup.api.kinds import ItemKind


def versus_loops(run: Measurement, results: Sequence[Measurement]) -> float | None:
    """How many times faster ``run`` is than the sequential loops over the same items, one
    kind after another, each at the pace its loop was measured at; None without a loop of
    each of its kinds."""
    paces = {
        (m.operation, kind): m.items_per_second
        for m in results
        if not m.by_operator and m.items_per_second
        for kind in m.items
    }
    if not run.seconds or any((run.operation, kind) not in paces for kind in run.items):
        return None
    loops_take = sum(n / paces[(run.operation, kind)] for kind, n in run.items.items())
    return loops_take / run.seconds


@dataclass(frozen=True)
class Figures:
    """All that ``make bench`` measured."""

    settings: Settings
    operator_start_rss_mib: float
    #: Seconds the stage took to create the items of each kind (not measured against).
    created_in: dict[ItemKind, float]
    results: list[Measurement]
    #: The operator at rest with many KeyBackups scheduled; empty when not measured.
    idle: dict[str, float]
    #: Seconds from apply to Ready of one-key KeyBackups.
    ready: list[float]


def report(figures: Figures) -> None:
    settings, results, idle, ready = figures.settings, figures.results, figures.idle, figures.ready
    print()
    throttling = f"{settings.throttle:.0%} of item calls answered 429" + (
        f" (Retry-After {settings.retry_after} s)"
        if settings.throttle and settings.retry_after
        else ""
    )
    print(
        f"{settings.keys} keys, {settings.secrets} secrets, {settings.certificates} "
        f"certificates; {settings.latency * 1000:.0f} ms per request, "
        f"KVBACKUP_VAULT_RATE_LIMIT={settings.rate:.0f}, {throttling}; {os.cpu_count()} cores; "
        f"operator RSS at start {figures.operator_start_rss_mib:.0f} MiB"
    )
    if figures.created_in:
        created = figures.created_in.items()
        print(
            "created (not measured): " + ", ".join(f"{k.plural} in {s:.0f} s" for k, s in created)
        )
    header = (
        "run",
        "items",
        "seconds",
        "items/s",
        "vs loop",
        "vault req/s",
        "of rate",
        "429s",
        "peak RSS",
        "median RSS",
        "Secrets",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for m in results:
        ratio = versus_loops(m, results)
        print(
            f"| {m.what} | {m.total_items} | {m.seconds:.1f} | {m.items_per_second:.0f} | "
            f"{f'{ratio:.1f}x' if ratio else '-'} | "
            f"{m.vault_bound_rate:.0f} | {m.vault_bound_rate / settings.rate:.0%} | "
            f"{m.throttled} | "
            f"{f'{m.peak_rss_mib:.0f} MiB' if m.by_operator else '-'} | "
            f"{f'{m.median_rss_mib:.0f} MiB' if m.by_operator else '-'} | "
            f"{m.secrets_written if m.by_operator else '-'} |"
        )
    print("\nCPU seconds during each run (2 cores = 2 CPU seconds per second):")
    processes = list(results[0].cpu_seconds)
    print("| run | seconds | " + " | ".join(processes) + " |")
    print("|" + "---|" * (len(processes) + 2))
    for m in results:
        print(
            f"| {m.what} | {m.seconds:.1f} | "
            + " | ".join(f"{m.cpu_seconds[p]:.1f}" for p in processes)
            + " |"
        )
    if idle:
        print(
            f"\nidle: {idle['keybackups']:.0f} KeyBackups @every 24h over {idle['seconds']:.0f} s: "
            f"{idle['cpu_share_of_one_core']:.1%} of one core, "
            f"peak RSS {idle['peak_rss_mib']:.0f} MiB"
        )
    if ready:
        print(
            f"apply -> Ready, one-key KeyBackup, {len(ready)} runs: "
            f"p50 {statistics.median(ready):.2f} s, max {max(ready):.2f} s"
        )
    Path("bench-results.json").write_text(json.dumps(_as_json(figures), indent=2))
    print("\nwritten to bench-results.json")


def _as_json(figures: Figures) -> dict[str, Any]:
    settings, results = figures.settings, figures.results
    return {
        "keys": settings.keys,
        "secrets": settings.secrets,
        "certificates": settings.certificates,
        "latency_ms": settings.latency * 1000,
        "rate": settings.rate,
        "throttle_share": settings.throttle,
        "retry_after": settings.retry_after,
        "operator_start_rss_mib": figures.operator_start_rss_mib,
        "creation_seconds": figures.created_in,
        "runs": [
            asdict(m)
            | {
                "total_items": m.total_items,
                "items_per_second": m.items_per_second,
                "vs_loop": versus_loops(m, results),
                "vault_bound_rate": m.vault_bound_rate,
            }
            for m in results
        ],
        "idle": figures.idle,
        "apply_to_ready_seconds": figures.ready,
    }
