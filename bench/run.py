"""``make bench``: the operator against sequential SDK loops, as a user would measure them.

Starts the control plane, Lowkey Vault behind the fault proxy (latency per request, and
optionally a share of 429s on item calls), and the operator as a real process; creates N
one-version EC keys; then measures, side by side and through the same proxy:

* the operator's KeyBackup of every key into Secrets, from apply to Ready, and the same
  into Blob Storage (Azurite);
* a sequential loop of ``backup_key``, each written to a local file (what people run
  today);
* the operator's KeyRestore of the whole Secret snapshot after every key is purged, and a
  sequential loop of ``restore_key_backup`` over the files.

Then it adds one-version secrets and self-signed certificates beside the keys and measures
the mixed run (``bench/mixed.py``): one KeyBackup of all three kinds into Secrets and one
KeyRestore of its whole snapshot after every item is purged, against sequential loops of
``backup_secret``, ``backup_certificate`` and their restores.

Then the incremental row (``bench/incremental.py``), on a vault of its own behind a proxy of
its own: a full run into Secrets (and into Blob), 1% of the keys given a new version, a
second run of each, a third into Secrets with nothing changed, and a restore of the second
Secret snapshot into the emptied vault; it reports the second run's calls, bytes and time
against the full run's, and what a schedule of ``@every 5m`` costs of a 200 calls/s budget.

Each loop runs before the operator's run of its kind, so the emulator's JIT compiler has
warmed up on that kind of call before the operator is timed. Each operator run is checked:
its snapshot holds every item, and a restore brings every item back.

Prints a table and writes the figures to ``bench-results.json``. Settings come from the
environment: BENCH_KEYS (default 1000), BENCH_SECRETS (1000), BENCH_CERTIFICATES (200; 0 and
BENCH_SECRETS=0 skip the mixed run), BENCH_LATENCY_MS (30), BENCH_RATE (400, the operator's
KVBACKUP_VAULT_RATE_LIMIT), BENCH_THROTTLE_SHARE (0; of the calls about items)
with BENCH_RETRY_AFTER (seconds; unset sends 429s without it), BENCH_LOOP_KEYS (2000: each
sequential loop runs over at most this many items of its kind, as its pace per item does not
change with the vault's size), BENCH_IDLE_KEYBACKUPS (1000) and BENCH_IDLE_SECONDS (300) for
the idle cost, and BENCH_CONCURRENCY (the operator's KVBACKUP_MAX_CONCURRENCY; unset keeps
its default); BENCH_INCREMENTAL_KEYS (10000; 0 skips the incremental row) and
BENCH_INCREMENTAL_BLOB (0; 1 measures the row into Blob too, which adds about a minute and a
half at 10,000 keys). After the runs it measures the operator at rest with that many
KeyBackups scheduled ``@every 24h``, and apply -> Ready for 20 one-key KeyBackups.
BENCH_ONLY=incremental runs the incremental row alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import kubernetes

from bench.incremental import IncrementalFigures, incremental_runs
from bench.measure import Measurement, cpu_seconds, rss_kib
from bench.mixed import mixed_runs
from bench.report import Figures, report
from bench.stage import (
    GROUP,
    VERSION,
    Bench,
    Settings,
    blob_destination,
    keybackup_of,
    keyrestore_of,
)
from kvbackup.api.kinds import ItemKind
from tests.harness import azurite as azurite_harness
from tests.harness import lowkey as lowkey_harness
from tests.harness.controlplane import ControlPlane, install_crds
from tests.harness.controlplane import start as start_control_plane
from tests.harness.fault_proxy import FaultProxy, fault_proxy_for
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess, start_operator
from tests.harness.vault import Vault


def idle_cost(
    plane: ControlPlane, operator: OperatorProcess, vault_url: str, count: int, seconds: float
) -> dict[str, float]:
    """``count`` KeyBackups scheduled ``@every 24h``: the operator's CPU and RSS at rest."""
    namespace = "bench-idle"
    plane.kubectl("create", "namespace", namespace)
    objects = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            keybackup_of(
                f"daily-{n:04d}", vault_url, keys={"names": ["key-000000"]}, schedule="@every 24h"
            )
            for n in range(count)
        ],
    }
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(objects))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = json.loads(plane.kubectl("get", "kb", "-n", namespace, "-o", "json").stdout)
        scheduled = [i for i in listed["items"] if (i.get("status") or {}).get("nextScheduleTime")]
        if len(scheduled) == count:
            break
        time.sleep(2)
    else:
        raise RuntimeError(f"only {len(scheduled)} of {count} KeyBackups were scheduled")
    time.sleep(10)  # let the burst of first reconciliations settle
    pid = operator.process.pid
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    samples = []
    while time.monotonic() - started < seconds:
        samples.append(rss_kib(pid))
        time.sleep(1)
    busy = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
    return {
        "keybackups": count,
        "seconds": seconds,
        "cpu_share_of_one_core": busy,
        "peak_rss_mib": max(samples) / 1024,
    }


def apply_to_ready(bench: Bench, runs: int) -> list[float]:
    """Seconds from apply to Ready for one-key KeyBackups, one after another."""
    api = bench.objects
    namespace = "bench-latency"
    bench.plane.kubectl("create", "namespace", namespace)
    took = []
    for n in range(runs):
        body = keybackup_of(f"one-{n:02d}", bench.proxy.url, keys={"names": ["key-000000"]})
        started = time.monotonic()
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "keybackups", body)
        while True:
            found = cast(
                dict[str, Any],
                api.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "keybackups", body["metadata"]["name"]
                ),
            )
            conditions = (found.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() - started > 60:
                raise RuntimeError(f"KeyBackup one-{n:02d} not Ready after 60 s")
            time.sleep(0.02)
        took.append(time.monotonic() - started)
    return took


def key_runs(bench: Bench, names: list[str], loop_items: int) -> list[Measurement]:
    """The key rows: the keys into Secrets and into Blob, and back from Secrets."""
    results: list[Measurement] = []
    keys = {ItemKind.KEY: len(names)}
    sample = names[:loop_items]
    # The loops go first: the emulator's JIT warms up on each kind of call in them, so
    # the operator's figures do not carry that cost (Key Vault has none).
    backup_loop = bench.backup_loop(ItemKind.KEY, sample)
    namespace = "bench"
    bench.plane.kubectl("create", "namespace", namespace)
    backup = keybackup_of("all", bench.proxy.url, keys={"selector": {}})
    results.append(
        bench.operator_run("operator backup, Secrets: keys", "backup", keys, backup, namespace)
    )
    bench.check_snapshot("all", namespace, keys)
    blob_namespace = "bench-blob"
    blob_backup = keybackup_of(
        "all",
        bench.proxy.url,
        keys={"selector": {}},
        destination=blob_destination(bench.plane, bench.azurite, blob_namespace, "bench"),
    )
    results.append(
        bench.operator_run(
            "operator backup, Blob: keys", "backup", keys, blob_backup, blob_namespace
        )
    )
    bench.check_snapshot("all", blob_namespace, keys)
    results.append(backup_loop)

    bench.purge({ItemKind.KEY: sample})
    restore_loop = bench.restore_loop(ItemKind.KEY, sample)

    print("purging every key ...", flush=True)
    bench.purge({ItemKind.KEY: names})
    restore = keyrestore_of("all-back", bench.proxy.url, "all")
    results.append(
        bench.operator_run("operator restore, Secrets: keys", "restore", keys, restore, namespace)
    )
    bench.check_vault({ItemKind.KEY: names})
    results.append(restore_loop)
    return results


def incremental_row(
    bench: Bench, lowkey: Lowkey, proxy: FaultProxy, settings: Settings
) -> IncrementalFigures:
    """The incremental row on a vault of its own behind ``proxy``, which counts its calls."""
    lowkey.create_vault(proxy.url)
    proxy.set_faults(bench.faults)
    stage = replace(bench, proxy=proxy, vault=Vault(proxy.url, lowkey.certificate))

    def empty_vault() -> None:
        lowkey.delete_vault(proxy.url)
        lowkey.create_vault(proxy.url)

    return incremental_runs(
        stage, settings.incremental_keys, settings.incremental_blob, empty_vault
    )


def main() -> None:
    settings = Settings.from_environment()
    every_row = not settings.only
    work = Path(tempfile.mkdtemp(prefix="kvbackup-bench-"))
    names = [f"key-{index:06d}" for index in range(settings.keys)]
    results: list[Measurement] = []
    created_in: dict[ItemKind, float] = {}
    idle: dict[str, float] = {}
    ready: list[float] = []
    incremental: IncrementalFigures | None = None

    plane = start_control_plane(work / "control-plane")
    lowkey = lowkey_harness.start(work / "lowkey", jvm_flags=lowkey_harness.THROUGHPUT_JVM_FLAGS)
    azurite = azurite_harness.start(work / "azurite", quiet=True)
    proxy = fault_proxy_for(lowkey, work / "proxy")
    incremental_proxy = (
        fault_proxy_for(lowkey, work / "proxy-incremental") if settings.incremental_keys else None
    )
    operator: OperatorProcess | None = None
    try:
        install_crds(plane)
        lowkey.create_vault(proxy.url)
        vault = Vault(proxy.url, lowkey.certificate)
        if every_row:
            print(f"creating {settings.keys} keys ...", flush=True)
            started = time.monotonic()
            vault.create_ec_keys(names)
            created_in[ItemKind.KEY] = time.monotonic() - started
        operator = start_operator(
            plane.kubeconfig,
            work / "operator.log",
            {
                "KVBACKUP_VAULT_RATE_LIMIT": f"{settings.rate:g}",
                **(
                    {"KVBACKUP_MAX_CONCURRENCY": settings.concurrency}
                    if settings.concurrency
                    else {}
                ),
                **lowkey.operator_env(),
            },
        )
        idle_rss = rss_kib(operator.process.pid) / 1024
        etcd, apiserver = plane.processes[0].pid, plane.processes[1].pid
        bench = Bench(
            plane,
            proxy,
            vault,
            azurite,
            operator,
            {
                "operator": operator.process.pid,
                "Lowkey Vault": lowkey.pid,
                "Azurite": azurite.process.pid,
                "kube-apiserver": apiserver,
                "etcd": etcd,
                "bench (proxy, loops)": os.getpid(),
            },
            settings.faults(),
            work / "loop",
            kubernetes.client.CustomObjectsApi(
                kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
            ),
        )
        proxy.set_faults(bench.faults)
        if every_row:
            results += key_runs(bench, names, settings.loop_items)
        if every_row and (settings.secrets or settings.certificates):
            counts = {
                ItemKind.SECRET: settings.secrets,
                ItemKind.CERTIFICATE: settings.certificates,
            }
            mixed = mixed_runs(bench, names, counts, settings.loop_items)
            results += mixed.measurements
            created_in |= mixed.created_in
        if incremental_proxy is not None:
            incremental = incremental_row(bench, lowkey, incremental_proxy, settings)
            results += incremental.measurements

        with bench.unhurried():
            if every_row and settings.idle_objects:
                print(
                    f"idle: {settings.idle_objects} KeyBackups @every 24h "
                    f"for {settings.idle_seconds:.0f} s ...",
                    flush=True,
                )
                idle = idle_cost(
                    plane, operator, proxy.url, settings.idle_objects, settings.idle_seconds
                )
            if every_row:
                print("apply -> Ready of 20 one-key KeyBackups ...", flush=True)
                ready = apply_to_ready(bench, 20)
    finally:
        if operator is not None:
            operator.stop()
        proxy.stop()
        if incremental_proxy is not None:
            incremental_proxy.stop()
        azurite.stop()
        lowkey.stop()
        plane.stop()

    report(Figures(settings, idle_rss, created_in, results, idle, ready, incremental))


if __name__ == "__main__":
    main()
