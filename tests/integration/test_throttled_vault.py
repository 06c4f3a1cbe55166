"""Key Vault throttles. Through a proxy that answers a share of requests with 429 (as
Key Vault does beyond its limits, which the emulator does not simulate), a backup still
completes with every key, in one run, retrying each throttled call on its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness.fault_proxy import FaultProxy, Faults
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess
from tests.harness.vault import Vault, create_certificates, create_secrets
from tests.integration.conftest import Cluster
from tests.integration.objects import EVERY, keybackup, vault_backup

pytestmark = pytest.mark.integration

KEYS = [f"key-{index:02d}" for index in range(60)]


@pytest.mark.parametrize(
    "retry_after", [pytest.param(1.0, id="with Retry-After"), pytest.param(None, id="without")]
)
def test_a_backup_with_one_request_in_ten_throttled_completes_every_key_in_one_run(
    operator: OperatorProcess,
    cluster: Cluster,
    lowkey: Lowkey,
    proxy: FaultProxy,
    retry_after: float | None,
) -> None:
    Vault(proxy.url, lowkey.certificate).create_ec_keys(KEYS)
    proxy.set_faults(Faults(throttle_share=0.1, retry_after_seconds=retry_after))

    cluster.apply(keybackup("throttled", proxy.url))
    status = cluster.wait_for_phase("keybackup", "throttled", "Succeeded", timeout=180)

    counts = proxy.counts()
    assert counts.throttled >= len(KEYS) // 5  # about 120 requests, one in ten throttled
    assert status["lastRun"]["keysSucceeded"] == len(KEYS)
    assert cluster.event_count("throttled", "BackupStarted") == 1
    # Every key was backed up once; the throttled backups were sent again, nothing more.
    backups = counts.by_operation["POST /keys/*/backup"]
    assert len(KEYS) < backups <= len(KEYS) + counts.throttled


def test_a_backup_of_every_kind_with_one_request_in_ten_throttled_completes_every_item(
    operator: OperatorProcess, cluster: Cluster, lowkey: Lowkey, proxy: FaultProxy
) -> None:
    vault = Vault(proxy.url, lowkey.certificate)
    vault.create_ec_keys(KEYS[:20])
    create_secrets(vault, [f"secret-{index:02d}" for index in range(20)])
    create_certificates(vault, ["tls-a", "tls-b"])
    proxy.set_faults(Faults(throttle_share=0.1, retry_after_seconds=1.0))

    cluster.apply(
        vault_backup("all-kinds", proxy.url, keys=EVERY, secrets=EVERY, certificates=EVERY)
    )
    status = cluster.wait_for_phase("keybackup", "all-kinds", "Succeeded", timeout=180)

    counts = proxy.counts()
    run = status["lastRun"]
    assert (run["keysSucceeded"], run["secretsSucceeded"], run["certificatesSucceeded"]) == (
        20,
        20,
        2,
    )
    # Calls of every kind were throttled, and each throttled backup was sent again once:
    # the secrets and certificates clients retry nothing behind the operator's back.
    throttled = {
        kind: sum(
            n
            for answer, n in counts.answered.items()
            if answer.endswith(" 429") and f"/{kind}" in answer
        )
        for kind in ("keys", "secrets", "certificates")
    }
    assert throttled["keys"] > 0, throttled
    assert throttled["secrets"] > 0, throttled
    for kind, items in (("keys", 20), ("secrets", 20), ("certificates", 2)):
        backups = counts.by_operation[f"POST /{kind}/*/backup"]
        assert items <= backups <= items + throttled[kind], (kind, backups)
    assert cluster.event_count("all-kinds", "BackupStarted") == 1


def test_a_call_throttled_every_time_is_sent_six_times_then_the_run_backs_off(
    own_operator: Callable[..., Cluster], lowkey: Lowkey, proxy: FaultProxy
) -> None:
    # An operator that waits a minute before retrying a failed run.
    cluster = own_operator(
        "throttle", KVBACKUP_RETRY_BASE_SECONDS="60", KVBACKUP_RETRY_MAX_SECONDS="60"
    )
    Vault(proxy.url, lowkey.certificate).create_ec_keys(["only"])
    proxy.set_faults(Faults(throttle_share=1.0, retry_after_seconds=1.0))

    cluster.apply(keybackup("hammered", proxy.url, keys=["only"]))
    cluster.wait_until(
        "the run backs off as Throttled",
        lambda: cluster.ready_condition("keybackup", "hammered").get("reason") == "Throttled",
        timeout=60,
    )

    # Six tries of the one call, each after the Retry-After; the SDK adds none of its own
    # (the one more request is the authentication challenge, which is never throttled).
    counts = proxy.counts()
    assert counts.throttled == 6
    assert counts.by_operation["GET /keys/*/versions"] == 1 + 6
    assert "retrying in 60s" in cluster.ready_condition("keybackup", "hammered")["message"]
