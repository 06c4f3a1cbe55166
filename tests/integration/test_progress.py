"""A long backup shows how far it has come while it runs, as users watch it with kubectl."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.lowkey import Lowkey
from tests.harness.operator import start_operator
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration

KEYS = 200


@pytest.fixture
def slow_operator(control_plane: ControlPlane, lowkey: Lowkey, tmp_path: Path) -> Iterator[Cluster]:
    """An operator of its own, paced at 20 Key Vault calls a second: a 200-key backup
    takes about 20 s."""
    name = f"progress-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    process = start_operator(
        control_plane.kubeconfig,
        tmp_path / "operator.log",
        {
            "KVBACKUP_WATCH_NAMESPACES": name,
            "KVBACKUP_VAULT_RATE_LIMIT": "20",
            **lowkey.operator_env(),
        },
    )
    try:
        yield Cluster(control_plane, name)
    finally:
        process.stop()


def test_a_running_backup_shows_its_keys_done_out_of_the_total_every_few_seconds(
    slow_operator: Cluster, vault: VaultUnderTest
) -> None:
    cluster = slow_operator
    vault.create_ec_keys([f"key-{index:03d}" for index in range(KEYS)])
    cluster.apply(keybackup("watched", vault.url))

    seen: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = cluster.status("keybackup", "watched")
        if status.get("phase") == "Succeeded":
            break
        active = status.get("activeRun") or {}
        if "keysDone" in active:
            assert active["keysTotal"] == KEYS
            seen.append(active["keysDone"])
        time.sleep(1)

    assert cluster.status("keybackup", "watched")["phase"] == "Succeeded"
    distinct = sorted(set(seen))
    assert len(distinct) >= 2, seen  # it moved while we watched
    assert all(0 < done < KEYS for done in distinct)
    assert not cluster.status("keybackup", "watched").get("activeRun")
