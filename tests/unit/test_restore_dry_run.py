"""A dry run: the decisions and the verification of a real restore, with reads only."""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace

import pytest

from kvbackup.api.conditions import Phase
from kvbackup.api.keyrestore import OnConflict, Strategy
from kvbackup.errors import ItemAccessDeniedError
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.ports import ItemState
from kvbackup.services.restore import run_restore
from tests.unit.fakes import (
    TARGET_URL,
    VAULT_URL,
    InMemoryStore,
    InMemoryVault,
    clock,
    opened,
    restore_spec,
    take_snapshot,
)

SIGNING = ("signing", ("s1", "s2"))
#: What a dry run says for each result of a real restore.
WOULD = {
    ItemResult.RESTORED: ItemResult.WOULD_RESTORE,
    ItemResult.RECOVERED: ItemResult.WOULD_RECOVER,
    ItemResult.SKIPPED: ItemResult.WOULD_SKIP,
    ItemResult.FAILED: ItemResult.WOULD_FAIL,
}
READS = {"key_state", "list_versions"}


def vault_with_signing(state: ItemState) -> InMemoryVault:
    vault = InMemoryVault()
    if state is not ItemState.ABSENT:
        vault.add("signing", versions=("s1", "s2", "s3"), deleted=state is ItemState.SOFT_DELETED)
    return vault


@pytest.mark.parametrize(
    ("strategy", "state", "on_conflict", "purge"),
    [
        combination
        for combination in itertools.product(Strategy, ItemState, OnConflict, (False, True))
        # The API server refuses purgeDeletedKeys with RecoverOnly.
        if not (combination[0] is Strategy.RECOVER_ONLY and combination[3])
    ],
)
async def test_a_dry_run_foretells_what_the_real_restore_then_does_in_every_case(
    strategy: Strategy, state: ItemState, on_conflict: OnConflict, purge: bool
) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, SIGNING)
    vault = vault_with_signing(state)
    before = copy.deepcopy(vault.items)
    dry_spec = restore_spec(
        strategy=strategy, on_conflict=on_conflict, purge_deleted=purge, dry_run=True
    )

    dry = await run_restore(dry_spec, opened(store, manifest), vault, clock=clock)
    assert vault.items == before
    assert {operation for operation, _ in vault.calls} <= READS
    real_spec = replace(dry_spec, dry_run=False)
    real = await run_restore(real_spec, opened(store, manifest), vault, clock=clock)

    [foretold], [done] = dry.outcomes, real.outcomes
    assert foretold.result is WOULD[done.result]
    if done.result is ItemResult.FAILED:
        assert foretold.reason == done.reason
    if done.result is ItemResult.RESTORED:
        assert foretold.versions == done.versions


async def test_a_dry_run_says_per_key_what_it_found_and_why_and_succeeds_as_a_run() -> None:
    store, vault = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(
        store, SIGNING, ("wrapping", ("w1",)), ("tokens", ("t1",)), ("payroll", ("p1",))
    )
    vault.add("wrapping", deleted=True)
    vault.add("tokens")
    vault.fail("key_state", "payroll", ItemAccessDeniedError("read key payroll: 403"))

    report = await run_restore(
        restore_spec(dry_run=True), opened(store, manifest), vault, clock=clock
    )

    assert report.dry_run
    assert report.phase is Phase.SUCCEEDED
    assert [(o.name, o.result, o.reason, o.message) for o in report.outcomes] == [
        (
            "signing",
            ItemResult.WOULD_RESTORE,
            "KeyAbsent",
            "would restore 2 version(s) from the backup",
        ),
        (
            "wrapping",
            ItemResult.WOULD_RECOVER,
            "KeySoftDeleted",
            "would recover the soft-deleted key",
        ),
        ("tokens", ItemResult.WOULD_SKIP, "KeyExists", "key tokens is active; onConflict is Skip"),
        ("payroll", ItemResult.WOULD_FAIL, "AccessDenied", "read key payroll: 403"),
    ]
    assert report.outcomes[0].versions == ("s1", "s2")


@pytest.mark.parametrize("dry_run", [True, False])
async def test_a_dry_run_into_another_vault_reminds_where_key_vault_restores_a_backup(
    dry_run: bool,
) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, SIGNING)

    report = await run_restore(
        restore_spec(dry_run=dry_run), opened(store, manifest), InMemoryVault(), clock=clock
    )

    if not dry_run:  # a real restore tells what Key Vault answered instead
        assert report.reminder == ""
        return
    assert f"the snapshot is of {VAULT_URL}, not {TARGET_URL}" in report.reminder
    assert "same Azure subscription and the same geography" in report.reminder


async def test_a_dry_run_into_the_vault_the_snapshot_came_from_reminds_of_nothing() -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, SIGNING)
    into_its_own = replace(restore_spec(dry_run=True), vault_url=VAULT_URL.upper() + "/")

    report = await run_restore(into_its_own, opened(store, manifest), InMemoryVault(), clock=clock)

    assert report.reminder == ""


async def test_a_dry_run_verifies_every_backup_and_fails_a_key_whose_backup_was_altered() -> None:
    store, vault = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ("tokens", ("t1",)))
    vault.add("tokens")  # would be skipped, but a real run checks its backup first too
    store.replace_artifact("tokens", b"altered")

    report = await run_restore(
        restore_spec(dry_run=True), opened(store, manifest), vault, clock=clock
    )

    assert [(o.name, o.result, o.reason) for o in report.outcomes] == [
        ("signing", ItemResult.WOULD_RESTORE, "KeyAbsent"),
        ("tokens", ItemResult.WOULD_FAIL, "IntegrityCheckFailed"),
    ]
    assert "sha256" in report.outcomes[1].message


async def test_under_recover_only_a_dry_run_tells_of_a_bad_backup_the_recovery_would_not_use() -> (
    None
):
    store, vault = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    vault.add("signing", deleted=True)
    store.replace_artifact("signing", b"altered")

    report = await run_restore(
        restore_spec(dry_run=True, strategy=Strategy.RECOVER_ONLY),
        opened(store, manifest),
        vault,
        clock=clock,
    )

    [outcome] = report.outcomes
    assert outcome.result is ItemResult.WOULD_RECOVER
    assert "backup is unusable" in outcome.message
    assert "sha256" in outcome.message


async def test_a_key_the_snapshot_lacks_would_fail_and_the_vault_is_not_asked_about_it() -> None:
    store, vault = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)

    report = await run_restore(
        restore_spec(dry_run=True, keys=("elsewhere",)), opened(store, manifest), vault, clock=clock
    )

    assert [(o.result, o.reason) for o in report.outcomes] == [
        (ItemResult.WOULD_FAIL, "KeyNotInSnapshot")
    ]
    assert vault.calls == []
