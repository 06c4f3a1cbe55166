"""The operator's /metrics, scraped from the running process as Prometheus would, while
and after it backs up and restores keys, secrets and certificates against the Key Vault
emulator: the numbers a user graphs and alerts on. Each test runs an operator of its own,
so every count is its own."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import time
from collections.abc import Callable

import pytest

from kvbackup import __version__
from kvbackup.services.triggers import parse_time
from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.metrics import Samples
from tests.harness.operator import OperatorProcess
from tests.harness.vault import (
    Vault,
    create_certificates,
    create_secrets,
    purge_certificates,
    purge_secrets,
)
from tests.integration.conftest import Cluster
from tests.integration.objects import EVERY, keybackup, keyrestore, vault_backup

pytestmark = pytest.mark.integration

KEYS = [f"key-{index:02d}" for index in range(20)]
SECRETS = [f"secret-{index:02d}" for index in range(4)]
PER_KEYBACKUP = (
    "kvbackup_keybackup_last_success_timestamp_seconds",
    "kvbackup_keybackup_schedule_interval_seconds",
    "kvbackup_keybackup_snapshot_bytes",
    "kvbackup_keybackup_oldest_artifact_timestamp_seconds",
    "kvbackup_keybackup_failing",
)


def metrics_of(cluster: Cluster) -> OperatorProcess:
    assert cluster.operator is not None
    return cluster.operator


def wait_for_metrics(
    cluster: Cluster, what: str, check: Callable[[Samples], bool], timeout: float = 30
) -> Samples:
    """The first scrape for which ``check`` holds."""
    operator = metrics_of(cluster)
    seen: list[Samples] = []

    def holds() -> bool:
        seen.append(operator.metrics())
        return check(seen[-1])

    cluster.wait_until(what, holds, timeout=timeout, interval=0.2)
    return seen[-1]


def succeeded_run_counted(cluster: Cluster, run: str) -> Samples:
    """The first scrape that counts one succeeded ``run`` (backup, restore, dry-run)."""
    return wait_for_metrics(
        cluster,
        f"the {run} is counted",
        lambda samples: samples.get("kvbackup_runs_total", run=run, result="Succeeded") == 1,
    )


def vault_label(url: str) -> str:
    return url.removeprefix("https://")


def test_a_backup_a_restore_and_a_dry_run_are_graphed_while_they_run_and_after_they_finish(
    own_operator: Callable[..., Cluster], lowkey: Lowkey, proxy: FaultProxy
) -> None:
    # Two keys in flight and 50 ms per call: the backup lasts long enough to be seen.
    cluster = own_operator("metrics", KVBACKUP_MAX_CONCURRENCY="2")
    vault, host = Vault(proxy.url, lowkey.certificate), vault_label(proxy.url)
    vault.create_ec_keys(KEYS)
    proxy.set_faults(Faults(latency_seconds=0.05))
    before = wait_for_metrics(
        cluster, "the operator leads", lambda samples: samples.get("kvbackup_leader") == 1
    )
    (build,) = [labels for name, labels in before.values if name == "kvbackup_build_info"]
    assert dict(build) == {
        "version": __version__,
        "python_version": platform.python_version(),  # the tests' own interpreter runs it
        "kopf_version": importlib.metadata.version("kopf"),
    }
    assert before.get("kvbackup_build_info", **dict(build)) == 1
    assert before.get("kvbackup_runs_in_flight", run="backup") == 0
    assert before.get("kvbackup_runs_total", run="backup", result="Succeeded") == 0

    applied = time.time()
    cluster.apply(keybackup("payments", proxy.url))
    wait_for_metrics(
        cluster,
        "the backup is in flight",
        lambda samples: samples.get("kvbackup_runs_in_flight", run="backup") == 1,
    )
    status = cluster.wait_for_phase("keybackup", "payments", "Succeeded", timeout=120)
    finished = time.time()

    samples = wait_for_metrics(
        cluster,
        "the backup is counted and its KeyBackup's gauges are set",
        lambda samples: (
            samples.get("kvbackup_runs_total", run="backup", result="Succeeded") == 1
            and samples.get(PER_KEYBACKUP[0], namespace=cluster.namespace, name="payments")
            is not None
        ),
    )
    assert samples.get("kvbackup_runs_in_flight", run="backup") == 0
    assert samples.get("kvbackup_run_duration_seconds_count", run="backup") == 1
    duration = samples.get("kvbackup_run_duration_seconds_sum", run="backup")
    assert duration is not None
    assert 0 < duration < finished - applied
    # Every key of the vault backed up, none failed.
    assert samples.get("kvbackup_items_total", run="backup", kind="key", result="Succeeded") == len(
        KEYS
    )
    assert samples.get("kvbackup_items_total", run="backup", kind="key", result="Failed") == 0
    # The first run had no snapshot to compare with: every key was backed up.
    freshness = {
        label: samples.get("kvbackup_item_freshness_total", kind="key", freshness=label)
        for label in ("BackedUp", "Refreshed", "Unchanged")
    }
    assert freshness == {"BackedUp": len(KEYS), "Refreshed": 0, "Unchanged": 0}
    # The last success is the status' own, inside the run's window.
    ours = {"namespace": cluster.namespace, "name": "payments"}
    last_success = samples.get(PER_KEYBACKUP[0], **ours)
    status_time = parse_time(status["lastSuccessfulTime"])
    assert status_time is not None
    assert last_success == status_time.timestamp()
    assert last_success is not None
    assert int(applied) <= last_success <= finished
    assert (
        samples.get("kvbackup_keybackup_snapshot_bytes", **ours)
        == (status["lastSnapshot"]["bytes"])
    )
    assert samples.get("kvbackup_keybackup_failing", **ours) == 0
    # Every backup in the snapshot was taken by its own run, which started it.
    oldest = parse_time(status["lastSnapshot"]["oldestArtifactTime"])
    assert oldest is not None
    assert samples.get("kvbackup_keybackup_oldest_artifact_timestamp_seconds", **ours) == (
        oldest.timestamp()
    )
    assert int(applied) - 1 <= oldest.timestamp() <= last_success
    # Unscheduled: no interval to compare the last success with.
    assert samples.get("kvbackup_keybackup_schedule_interval_seconds", **ours) is None
    # Key Vault calls by operation, as the vault (the proxy) received them.
    received = proxy.counts().by_operation
    calls = {"vault": host, "kind": "key", "code": "2xx"}
    assert samples.get("kvbackup_keyvault_calls_total", operation="backup", **calls) == len(KEYS)
    assert (
        samples.get("kvbackup_keyvault_calls_total", operation="backup", **calls)
        == (received["POST /keys/*/backup"])
    )
    assert (
        samples.get("kvbackup_keyvault_calls_total", operation="list_versions", **calls)
        == (received["GET /keys/*/versions"])
    )
    # The SDK's first request to a vault is its unauthenticated challenge (401), which
    # the operator never sees as a call of its own: the listing's answers are compared.
    assert (
        samples.get("kvbackup_keyvault_calls_total", operation="list", **calls)
        == (proxy.counts().answered["GET /keys 200"])
    )
    # A KeyBackup of keys alone asks nothing about the vault's other kinds.
    assert samples.label_values("kvbackup_keyvault_calls_total", "kind") == {"key"}
    assert samples.total("kvbackup_keyvault_calls_total", code="429") == 0
    assert samples.get("kvbackup_keyvault_pace_rate", vault=host) == 200.0
    # No key name is a label anywhere.
    assert not any(
        key in value for (_, labels) in samples.values for _, value in labels for key in KEYS
    )

    vault.delete_and_purge("key-00")
    cluster.apply(keyrestore("payments", proxy.url, keybackup="payments"))
    cluster.wait_for_phase("keyrestore", "payments", "Succeeded", timeout=120)
    samples = succeeded_run_counted(cluster, "restore")
    assert samples.get("kvbackup_runs_in_flight", run="restore") == 0
    assert samples.get("kvbackup_items_total", run="restore", kind="key", result="Restored") == 1
    assert (
        samples.get("kvbackup_items_total", run="restore", kind="key", result="Skipped")
        == len(KEYS) - 1
    )
    assert samples.get("kvbackup_keyvault_calls_total", operation="restore", **calls) == 1

    # A dry run is counted apart: restores count only what was restored.
    cluster.apply(keyrestore("preview", proxy.url, keybackup="payments", dryRun=True))
    cluster.wait_for_phase("keyrestore", "preview", "Succeeded", timeout=120)
    samples = succeeded_run_counted(cluster, "dry-run")
    assert samples.get(
        "kvbackup_items_total", run="dry-run", kind="key", result="WouldSkip"
    ) == len(KEYS)
    assert samples.get("kvbackup_runs_total", run="restore", result="Succeeded") == 1
    assert (
        samples.get("kvbackup_items_total", run="restore", kind="key", result="Skipped")
        == len(KEYS) - 1
    )

    cluster.plane.kubectl("delete", "keybackup", "payments", "-n", cluster.namespace)
    gone = wait_for_metrics(
        cluster,
        "the deleted KeyBackup's series are removed",
        lambda samples: all(samples.get(name, **ours) is None for name in PER_KEYBACKUP),
    )
    assert gone.get("kvbackup_items_total", run="backup", kind="key", result="Succeeded") == len(
        KEYS
    )


def test_a_backup_and_a_restore_of_every_kind_count_each_kinds_items_and_calls_apart(
    own_operator: Callable[..., Cluster], lowkey: Lowkey, proxy: FaultProxy
) -> None:
    cluster = own_operator("metrics-kinds")
    vault, host = Vault(proxy.url, lowkey.certificate), vault_label(proxy.url)
    vault.create_ec_keys(KEYS[:3])
    create_secrets(vault, SECRETS)
    # Its key and its secret are the certificate's: backed up with it, not counted alone.
    create_certificates(vault, ["tls"])

    cluster.apply(vault_backup("all", proxy.url, keys=EVERY, secrets=EVERY, certificates=EVERY))
    cluster.wait_for_phase("keybackup", "all", "Succeeded", timeout=120)
    samples = succeeded_run_counted(cluster, "backup")

    def items(run: str, kind: str, result: str) -> float | None:
        return samples.get("kvbackup_items_total", run=run, kind=kind, result=result)

    def calls(operation: str, kind: str) -> float | None:
        return samples.get(
            "kvbackup_keyvault_calls_total", vault=host, operation=operation, kind=kind, code="2xx"
        )

    assert [items("backup", kind, "Succeeded") for kind in ("key", "secret", "certificate")] == [
        3,
        len(SECRETS),
        1,
    ]
    assert [calls("backup", kind) for kind in ("key", "secret", "certificate")] == [
        3,
        len(SECRETS),
        1,
    ]
    answered = proxy.counts().answered
    assert [calls("list", kind) for kind in ("key", "secret", "certificate")] == [
        answered["GET /keys 200"],
        answered["GET /secrets 200"],
        answered["GET /certificates 200"],
    ]

    purge_secrets(vault, SECRETS[:1])
    purge_certificates(vault, ["tls"])
    cluster.apply(keyrestore("all", proxy.url, keybackup="all"))
    cluster.wait_for_phase("keyrestore", "all", "Succeeded", timeout=120)
    samples = succeeded_run_counted(cluster, "restore")
    assert [items("restore", kind, "Restored") for kind in ("key", "secret", "certificate")] == [
        0,
        1,
        1,
    ]
    assert [items("restore", kind, "Skipped") for kind in ("key", "secret", "certificate")] == [
        3,
        len(SECRETS) - 1,
        0,
    ]
    assert [calls("restore", kind) for kind in ("key", "secret", "certificate")] == [None, 1, 1]


def test_429s_are_counted_and_slow_the_vaults_pace(
    own_operator: Callable[..., Cluster], lowkey: Lowkey, proxy: FaultProxy
) -> None:
    cluster = own_operator("metrics-429")
    host = vault_label(proxy.url)
    Vault(proxy.url, lowkey.certificate).create_ec_keys(KEYS)
    proxy.set_faults(Faults(throttle_share=0.1))  # 429s without Retry-After

    cluster.apply(keybackup("throttled", proxy.url))
    cluster.wait_for_phase("keybackup", "throttled", "Succeeded", timeout=120)

    throttled = proxy.counts().throttled
    assert throttled >= 3
    samples = succeeded_run_counted(cluster, "backup")
    assert samples.total("kvbackup_keyvault_calls_total", vault=host, code="429") == throttled
    assert samples.label_values("kvbackup_keyvault_calls_total", "code") == {"2xx", "429"}
    assert samples.get("kvbackup_items_total", run="backup", kind="key", result="Succeeded") == len(
        KEYS
    )
    # Each 429 without Retry-After halved the pace; the successes since add back a little.
    rate = samples.get("kvbackup_keyvault_pace_rate", vault=host)
    assert rate is not None
    assert rate < 200.0 / 2


def test_a_schedules_longest_gap_is_exported_until_the_keybackup_is_deleted(
    own_operator: Callable[..., Cluster],
) -> None:
    cluster = own_operator("metrics-schedule")
    unreachable = "https://127.0.0.1:9"
    cluster.apply(keybackup("every-6h", unreachable, keys=["k"], schedule="@every 6h"))
    # Weekdays at 02:00 UTC: the longest gap is Friday to Monday.
    cluster.apply(keybackup("weekdays", unreachable, keys=["k"], schedule="0 2 * * 1-5"))

    def interval(name: str) -> Callable[[Samples], float | None]:
        return lambda samples: samples.get(
            "kvbackup_keybackup_schedule_interval_seconds", namespace=cluster.namespace, name=name
        )

    samples = wait_for_metrics(
        cluster,
        "both schedules are exported",
        lambda samples: (
            interval("every-6h")(samples) is not None and interval("weekdays")(samples) is not None
        ),
    )
    assert interval("every-6h")(samples) == 6 * 3600
    assert interval("weekdays")(samples) == datetime.timedelta(days=3).total_seconds()
    # Neither ran yet: no success to report, and nothing failing.
    ours = {"namespace": cluster.namespace, "name": "weekdays"}
    assert samples.get("kvbackup_keybackup_last_success_timestamp_seconds", **ours) is None
    assert samples.get("kvbackup_keybackup_failing", **ours) == 0

    cluster.apply(
        keybackup("weekdays", unreachable, keys=["k"], schedule="0 2 * * 1-5", suspend=True)
    )
    wait_for_metrics(
        cluster,
        "a suspended schedule exports no interval",
        lambda samples: interval("weekdays")(samples) is None,
    )
    cluster.plane.kubectl("delete", "keybackup", "every-6h", "-n", cluster.namespace)
    wait_for_metrics(
        cluster,
        "the deleted KeyBackup's interval is removed",
        lambda samples: interval("every-6h")(samples) is None,
    )


def test_a_failing_keybackup_is_flagged_until_a_run_succeeds(
    own_operator: Callable[..., Cluster], lowkey: Lowkey, proxy: FaultProxy
) -> None:
    cluster = own_operator("metrics-failing")
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["only"])
    cluster.broken_credentials_secret()
    ours = {"namespace": cluster.namespace, "name": "flaky"}

    cluster.apply(keybackup("flaky", proxy.url, keys=["only"], credentials={"name": "broken"}))
    samples = wait_for_metrics(
        cluster,
        "the KeyBackup is failing",
        lambda samples: samples.get("kvbackup_keybackup_failing", **ours) == 1,
    )
    assert samples.total("kvbackup_runs_total", run="backup", result="Failed") >= 1

    cluster.apply(keybackup("flaky", proxy.url, keys=["only"]))
    wait_for_metrics(
        cluster,
        "the KeyBackup is no longer failing",
        lambda samples: samples.get("kvbackup_keybackup_failing", **ours) == 0,
        timeout=60,
    )
