"""A restore interrupted by a temporary error and attempted again reports each key as it
was done: a key the first attempt restored is not a conflict for the second."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.vault import Vault
from tests.integration.conftest import Cluster
from tests.integration.objects import keybackup, keyrestore, keys_counted

pytestmark = pytest.mark.integration

INTACT = [f"a-intact-{i}" for i in range(4)]  # never lost: a conflict
DELETED = [f"b-deleted-{i}" for i in range(4)]  # soft-deleted: recovered
LOST = [f"c-lost-{i:02d}" for i in range(12)]  # purged: restored from the backup
KEYS = INTACT + DELETED + LOST


def test_a_restore_throttled_midway_and_attempted_again_reports_each_key_as_it_was_done(
    own_operator: Callable[..., Cluster], lowkey: Lowkey, proxy: FaultProxy
) -> None:
    # Four keys at a time, each call slowed, so the throttling comes in the middle.
    cluster = own_operator("restore-again", KVBACKUP_MAX_CONCURRENCY="4")
    vault = Vault(proxy.url, lowkey.certificate)
    vault.create_ec_keys(KEYS)
    cluster.apply(keybackup("keys", proxy.url, keys=KEYS))
    cluster.wait_for_phase("keybackup", "keys", "Succeeded")
    for name in DELETED:
        vault.delete(name)
    for name in LOST:
        vault.delete_and_purge(name)

    proxy.set_faults(Faults(latency_seconds=0.3))
    cluster.apply(keyrestore("back", proxy.url, keybackup="keys", onConflict="Fail"))
    cluster.wait_until(
        "most keys were sent to the vault",
        lambda: proxy.counts().by_operation.get("POST /keys/restore", 0) >= 14,
        timeout=60,
        interval=0.1,
    )
    proxy.set_faults(Faults(latency_seconds=0.3, throttle_share=1.0, retry_after_seconds=0.1))
    cluster.wait_until(
        "the attempt fails as Throttled",
        lambda: cluster.ready_condition("keyrestore", "back").get("reason") == "Throttled",
        timeout=60,
    )
    # The failed attempt left what each key came to for the next one.
    assert cluster.status("keyrestore", "back")["activeRun"]["itemResults"]
    proxy.set_faults(Faults())

    status = cluster.wait_for_phase("keyrestore", "back", "PartiallyFailed", timeout=120)

    results = {entry["name"]: (entry["result"], entry["reason"]) for entry in status["keys"]}
    assert results == {
        **{name: ("Failed", "KeyExists") for name in INTACT},
        **{name: ("Recovered", "Recovered") for name in DELETED},
        **{name: ("Restored", "Restored") for name in LOST},
    }
    assert status["counts"] == keys_counted(restored=12, recovered=4, skipped=0, failed=4)
    assert "itemResults" not in (status.get("activeRun") or {})
    assert vault.key_names() == set(KEYS)
    started = [e for e in cluster.events_for("back") if e["reason"] == "RestoreStarted"]
    assert sum(e.get("count", 1) for e in started) >= 2  # two attempts, at least
