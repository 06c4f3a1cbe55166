"""One tenant cannot slow or stall another. Tenant A's vault answers its first per-key
request with ``429 Retry-After: inf`` and then hangs every request; tenant B's backup of
200 keys, run by the same operator at the same time, takes about as long as alone.

Both vaults answer through fault proxies; B's adds a round trip's latency, as Key Vault
is a network hop away, so that B's run depends on how many calls it may have in flight
more than on the CPU the test machine lends it. Each way is timed twice (alone: before
and after A stalls) and the faster run counts, as benchmarks do on a machine that other
work shares.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kvbackup.config import DEFAULT_MAX_VAULT_CALLS
from tests.harness.controlplane import ControlPlane
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault, create_keys
from tests.integration.conftest import Cluster, Operators, new_namespaces, proxied_vault
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration

B_KEYS = [f"key-{index:03d}" for index in range(200)]
#: More than A's share of the operator's call slots, so that A would take more if it could.
A_KEYS = [f"key-{index:02d}" for index in range(DEFAULT_MAX_VAULT_CALLS + 8)]
#: Half the operator's slots (KVBACKUP_MAX_CONCURRENCY, left at its default): the most a
#: namespace may hold, whatever its vault does.
SHARE = DEFAULT_MAX_VAULT_CALLS // 2
#: B's vault answers every request this much later.
B_LATENCY_SECONDS = 0.2
#: How much slower B's backup may be beside the stalled A than alone.
SLOWDOWN_ALLOWED = 1.5
#: The per-key requests of a backup: A's first is throttled, the others hang.
PER_KEY = frozenset({"GET /keys/*/versions", "POST /keys/*/backup"})


@dataclass(frozen=True)
class Tenants:
    operator: OperatorProcess
    a: Cluster
    b: Cluster
    a_vault: FaultProxy
    b_vault: FaultProxy


@pytest.fixture
def tenants(control_plane: ControlPlane, lowkey: Lowkey, tmp_path: Path) -> Iterator[Tenants]:
    """Two namespaces, each allowed the operator's identity for its own vault only, and
    one operator watching both."""
    a, b = new_namespaces(control_plane, "fair-a", "fair-b")
    with (
        proxied_vault(lowkey, tmp_path / "vault-a") as a_vault,
        proxied_vault(lowkey, tmp_path / "vault-b") as b_vault,
        Operators(control_plane, lowkey, tmp_path) as operators,
    ):
        rules = [
            {"namespaces": [a.namespace], "vaultUrls": [a_vault.url]},
            {"namespaces": [b.namespace], "vaultUrls": [b_vault.url]},
        ]
        operator = operators.start(a.namespace, b.namespace, identity_rules=rules)
        yield Tenants(operator, a, b, a_vault, b_vault)


def backup_runs(operator: OperatorProcess) -> tuple[float, float]:
    """How many backup runs have finished, and their total duration in seconds."""
    samples = operator.metrics()
    count = samples.get("kvbackup_run_duration_seconds_count", run="backup") or 0.0
    total = samples.get("kvbackup_run_duration_seconds_sum", run="backup") or 0.0
    return count, total


def timed_backup(tenants: Tenants, name: str, keys: list[str] | None = None) -> float:
    """Runs a new KeyBackup in B's namespace; its run's duration as the operator measured it."""
    runs_before, seconds_before = backup_runs(tenants.operator)
    tenants.b.apply(keybackup(name, tenants.b_vault.url, keys=keys))
    status = tenants.b.wait_for_phase("keybackup", name, "Succeeded", timeout=60)
    assert status["lastRun"]["keysSucceeded"] == len(keys or B_KEYS)
    # The run is counted as it ends, just after its status is written.
    tenants.b.wait_until(
        "the run is counted",
        lambda: backup_runs(tenants.operator)[0] == runs_before + 1,
        timeout=10,
        interval=0.1,
    )
    return backup_runs(tenants.operator)[1] - seconds_before


def seconds(durations: list[float]) -> str:
    return " and ".join(f"{duration:.2f}s" for duration in durations)


def test_a_tenant_whose_vault_says_retry_after_inf_and_hangs_does_not_slow_another(
    tenants: Tenants, lowkey: Lowkey
) -> None:
    create_keys(Vault(tenants.b_vault.url, lowkey.certificate), B_KEYS)
    Vault(tenants.a_vault.url, lowkey.certificate).create_ec_keys(A_KEYS)
    tenants.b_vault.set_faults(Faults(latency_seconds=B_LATENCY_SECONDS))
    # The operator's first run on B's vault gets a token and opens its connections: not
    # timed.
    timed_backup(tenants, "warm-up")
    alone = [timed_backup(tenants, "alone-before")]

    tenants.a_vault.set_faults(
        Faults(
            operations=PER_KEY,
            throttle_share=1.0,
            throttle_count=1,
            retry_after_text="inf",
            stall=True,
        )
    )
    tenants.a.apply(keybackup("stalled", tenants.a_vault.url))
    tenants.a.wait_until(
        "A's vault has answered 429 and holds A's share of calls unanswered",
        lambda: (counts := tenants.a_vault.counts()).throttled == 1 and counts.stalled >= SHARE,
        timeout=30,
        interval=0.2,
    )
    time.sleep(1)  # time for A to take more slots, were it allowed to
    assert tenants.a_vault.counts().in_flight == SHARE

    beside = [timed_backup(tenants, f"beside-stalled-{run}") for run in range(2)]
    assert tenants.a_vault.counts().in_flight == SHARE  # A stayed stalled throughout

    # Once A's vault answers again, A's backup completes: "inf" paused nothing for ever.
    tenants.a_vault.set_faults(Faults())
    tenants.a_vault.release_stalled()
    status = tenants.a.wait_for_phase("keybackup", "stalled", "Succeeded", timeout=60)
    assert status["lastRun"]["keysSucceeded"] == len(A_KEYS)
    # B alone again: timed before and after, "alone" cannot gain from the machine warming up.
    alone.append(timed_backup(tenants, "alone-after"))

    print(
        f"\nB's backup of {len(B_KEYS)} keys: alone {seconds(alone)}, beside A's stalled "
        f"vault {seconds(beside)} ({min(beside) / min(alone):.2f}x, fastest to fastest)"
    )
    assert min(beside) <= SLOWDOWN_ALLOWED * min(alone)
