"""A long backup shows how far it has come while it runs, as users watch it with kubectl."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration

KEYS = 200


def test_a_running_backup_shows_its_keys_done_out_of_the_total_every_few_seconds(
    own_operator: Callable[..., Cluster], vault: VaultUnderTest
) -> None:
    # Paced at 20 Key Vault calls a second: a 200-key backup takes about 20 s.
    cluster = own_operator("progress", KVBACKUP_VAULT_RATE_LIMIT="20")
    vault.create_ec_keys([f"key-{index:03d}" for index in range(KEYS)])
    cluster.apply(keybackup("watched", vault.url))

    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = cluster.status("keybackup", "watched")
        if status.get("phase") == "Succeeded":
            break
        active = status.get("activeRun") or {}
        if "itemsDone" in active:
            seen.append((active["itemsDone"], active["itemsTotal"]))
        time.sleep(1)

    final = cluster.status("keybackup", "watched")
    assert final["phase"] == "Succeeded"
    assert final["lastRun"]["keysSucceeded"] == KEYS
    assert len({done for done, _ in seen}) >= 2, seen  # it moved while we watched
    assert all(0 < done <= total <= KEYS for done, total in seen), seen
    # The total counts the keys listed so far: it only grows, up to the vault's size.
    totals = [total for _, total in seen]
    assert totals == sorted(totals), seen
    assert not final.get("activeRun")
