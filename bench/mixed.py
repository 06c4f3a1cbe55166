"""The mixed run: secrets and certificates beside the keys, all three kinds in one KeyBackup
into Secrets and one KeyRestore of its whole snapshot, against a sequential loop per kind.

A script covering the vault runs one loop per kind, one after another, so the mixed run's
"vs loop" is the time those loops take over the same items (each at the pace its loop was
measured at; the keys' are the key rows' loops) against the operator's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.measure import Measurement
from bench.stage import Bench, keybackup_of, keyrestore_of
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from tests.harness.vault import Vault, create_certificates, create_secrets

#: How the stage makes many items of each kind the key rows do not make, several at once.
CREATES: dict[ItemKind, Callable[[Vault, list[str]], None]] = {
    ItemKind.SECRET: create_secrets,
    ItemKind.CERTIFICATE: create_certificates,
}

NAMESPACE = "bench-mixed"


@dataclass(frozen=True)
class MixedRuns:
    measurements: list[Measurement]
    #: Seconds the stage took to create the secrets and the certificates.
    created_in: dict[ItemKind, float]


def mixed_runs(
    bench: Bench, keys: list[str], counts: dict[ItemKind, int], loop_items: int
) -> MixedRuns:
    """``keys`` are in the vault; ``counts`` says how many secrets and certificates to add."""
    names = {ItemKind.KEY: keys} | {
        kind: [f"{kind}-{index:06d}" for index in range(counts[kind])] for kind in CREATES
    }
    created_in = {}
    with bench.unhurried():
        for kind, create in CREATES.items():
            print(f"creating {counts[kind]} {kind.plural} ...", flush=True)
            started = time.monotonic()
            create(bench.vault, names[kind])
            created_in[kind] = time.monotonic() - started
            print(f"  {created_in[kind]:.1f} s", flush=True)
    items = {kind: len(names[kind]) for kind in ITEM_KINDS if names[kind]}
    samples = {kind: names[kind][:loop_items] for kind in CREATES if names[kind]}
    label = ", ".join(kind.plural for kind in items)

    # As in the key rows, each loop runs before the operator's run of its kind.
    backup_loops = [bench.backup_loop(kind, sample) for kind, sample in samples.items()]
    bench.plane.kubectl("create", "namespace", NAMESPACE)
    every: dict[str, Any] = {"selector": {}}
    backup = keybackup_of(
        "all-kinds", bench.proxy.url, keys=every, secrets=every, certificates=every
    )
    operator_backup = bench.operator_run(
        f"operator backup, Secrets: {label}", "backup", items, backup, NAMESPACE
    )
    bench.check_snapshot("all-kinds", NAMESPACE, items)

    bench.purge(samples)
    restore_loops = [bench.restore_loop(kind, sample) for kind, sample in samples.items()]

    print("purging every item ...", flush=True)
    bench.purge(names)
    restore = keyrestore_of("all-kinds-back", bench.proxy.url, "all-kinds")
    operator_restore = bench.operator_run(
        f"operator restore, Secrets: {label}", "restore", items, restore, NAMESPACE
    )
    bench.check_vault(names)
    return MixedRuns([operator_backup, *backup_loops, operator_restore, *restore_loops], created_in)
