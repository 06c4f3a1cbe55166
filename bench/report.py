"""The bench's tables, and the same figures in ``bench-results.json``."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.incremental import (
    BUDGET_CALLS_PER_SECOND,
    CHANGED,
    SCHEDULE_SECONDS,
    SCHEDULE_TARGET,
    TARGETS,
    IncrementalFigures,
)
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
    #: The incremental row; None when it was not run.
    incremental: IncrementalFigures | None = None


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A Markdown table, as the README quotes it."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


def _cpu_per_item(m: Measurement) -> str:
    cpu = m.operator_cpu_ms_per_item
    return "-" if cpu is None else f"{cpu:.2f} ms"


def _against(share: float, target: float) -> str:
    return f"{share:.1%} (target <= {target:.0%}: {'met' if share <= target else 'MISSED'})"


def incremental_report(figures: IncrementalFigures) -> None:
    """Each destination's runs side by side, the 1%-changed run against the targets, the
    cost of a 5-minute schedule and the bytes per key that size etcd."""
    print(
        f"\nincremental: {figures.keys} keys (created in {figures.created_in:.0f} s, not "
        f"measured); {figures.changed} of them given a new version after the full run"
    )
    header = (
        "destination",
        "run",
        "Key Vault calls",
        "bytes written",
        "objects written",
        "bytes/key",
        "seconds",
        "operator CPU/key",
        "newBytes (status)",
    )
    _table(
        header,
        (
            (
                destination.name,
                run.name,
                run.measured.vault_requests,
                run.written.bytes,
                run.written.objects,
                f"{run.written.bytes / figures.keys:.0f}",
                f"{run.measured.seconds:.1f}",
                _cpu_per_item(run.measured),
                "-" if run.written.reported_new_bytes is None else run.written.reported_new_bytes,
            )
            for destination in figures.destinations
            for run in destination.runs
        ),
    )
    for destination in figures.destinations:
        shares = destination.of_full(CHANGED)
        print(
            f"{destination.name}, the {CHANGED} run against the full run: "
            + "; ".join(f"{what} {_against(shares[what], t)}" for what, t in TARGETS.items())
        )
    listing = figures.listing
    print(
        f"the vault's listing alone, by the plain SDK: {listing.keys} keys in "
        f"{listing.calls} calls and {listing.seconds:.1f} s, "
        + ", ".join(
            f"{listing.of_full(destination):.1%} of the full run into {destination.name}"
            for destination in figures.destinations
        )
        + " (no run that reads the listing takes less)"
    )
    restore = figures.restore
    print(
        f"restore of the {CHANGED} Secret snapshot into the emptied vault: "
        f"{figures.restored} of {figures.keys} keys back in {restore.seconds:.1f} s "
        f"({restore.vault_requests} Key Vault calls)"
    )
    print(
        f"@every {SCHEDULE_SECONDS // 60}m on this vault: a run with nothing changed makes "
        f"{figures.schedule_calls} Key Vault calls, "
        f"{_against(figures.schedule_cost, SCHEDULE_TARGET)} of "
        f"{SCHEDULE_SECONDS} s x {BUDGET_CALLS_PER_SECOND} calls/s"
    )
    print(
        "etcd sizing, Secret storage, bytes per key per snapshot (data and metadata): "
        + ", ".join(
            f"{run.name} {run.written.bytes / figures.keys:.0f}"
            for run in figures.into_secrets.runs
        )
    )


def _row(m: Measurement, results: Sequence[Measurement], rate: float) -> tuple[object, ...]:
    ratio = versus_loops(m, results)
    return (
        m.what,
        m.total_items,
        f"{m.seconds:.1f}",
        f"{m.items_per_second:.0f}",
        f"{ratio:.1f}x" if ratio else "-",
        f"{m.vault_bound_rate:.0f}",
        f"{m.vault_bound_rate / rate:.0%}",
        m.throttled,
        f"{m.peak_rss_mib:.0f} MiB" if m.by_operator else "-",
        f"{m.median_rss_mib:.0f} MiB" if m.by_operator else "-",
        m.secrets_written if m.by_operator else "-",
        _cpu_per_item(m),
    )


def report(figures: Figures) -> None:
    settings, results, idle, ready = figures.settings, figures.results, figures.idle, figures.ready
    print()
    throttling = f"{settings.throttle:.0%} of item calls answered 429" + (
        f" (Retry-After {settings.retry_after} s)"
        if settings.throttle and settings.retry_after
        else ""
    )
    stage = (
        f"BENCH_ONLY={settings.only}"
        if settings.only
        else f"{settings.keys} keys, {settings.secrets} secrets, {settings.certificates} "
        "certificates"
    )
    print(
        f"{stage}; {settings.latency * 1000:.0f} ms per request, "
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
        "operator CPU/item",
    )
    _table(header, (_row(m, results, settings.rate) for m in results))
    print("\nCPU seconds during each run (2 cores = 2 CPU seconds per second):")
    processes = list(results[0].cpu_seconds)
    _table(
        ("run", "seconds", *processes),
        (
            (m.what, f"{m.seconds:.1f}", *(f"{m.cpu_seconds[p]:.1f}" for p in processes))
            for m in results
        ),
    )
    if figures.incremental is not None:
        incremental_report(figures.incremental)
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
        "only": settings.only,
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
                "operator_cpu_ms_per_item": m.operator_cpu_ms_per_item,
            }
            for m in results
        ],
        "incremental": _incremental_json(figures.incremental),
        "idle": figures.idle,
        "apply_to_ready_seconds": figures.ready,
    }


def _incremental_json(figures: IncrementalFigures | None) -> dict[str, Any] | None:
    if figures is None:
        return None
    return {
        "keys": figures.keys,
        "changed": figures.changed,
        "creation_seconds": figures.created_in,
        "destinations": {
            destination.name: {
                "runs": {
                    run.name: {
                        "what": run.measured.what,
                        "vault_requests": run.measured.vault_requests,
                        "seconds": run.measured.seconds,
                        "operator_cpu_ms_per_item": run.measured.operator_cpu_ms_per_item,
                        "bytes_per_key": run.written.bytes / figures.keys,
                    }
                    | asdict(run.written)
                    for run in destination.runs
                },
                "changed_of_full": destination.of_full(CHANGED),
            }
            for destination in figures.destinations
        },
        "every_5m_share_of_budget": figures.schedule_cost,
        "plain_sdk_listing": asdict(figures.listing)
        | {
            "of_full": {
                destination.name: figures.listing.of_full(destination)
                for destination in figures.destinations
            }
        },
        "targets": TARGETS | {"every_5m_share_of_budget": SCHEDULE_TARGET},
        "restore": {
            "seconds": figures.restore.seconds,
            "vault_requests": figures.restore.vault_requests,
            "restored": figures.restored,
        },
    }
