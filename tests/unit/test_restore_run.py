"""One restore run from an in-memory snapshot store into an in-memory vault."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kvbackup.api.conditions import Phase
from kvbackup.api.keyrestore import OnConflict, Strategy
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import ItemAccessDeniedError, TransientError
from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import ItemOutcome, ItemResult
from kvbackup.services.ports import ItemState
from kvbackup.services.restore import run_restore
from tests.unit.fakes import (
    InMemoryStore,
    InMemoryVault,
    clock,
    opened,
    restore_spec,
    take_snapshot,
)

SIGNING = ("signing", ("s1", "s2"))
ENCRYPTION = ("encryption", ("e1",))


def results(outcomes: Sequence[ItemOutcome]) -> list[tuple[str, ItemResult, str]]:
    return [(o.name, o.result, o.reason) for o in outcomes]


async def test_absent_keys_are_restored_with_the_versions_of_their_backup() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)

    report = await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert report.phase is Phase.SUCCEEDED
    assert report.snapshot_id == manifest.snapshot_id
    assert [(o.name, o.result, o.versions) for o in report.outcomes] == [
        ("signing", ItemResult.RESTORED, ("s1", "s2")),
        ("encryption", ItemResult.RESTORED, ("e1",)),
    ]
    assert target.state_of("signing") is ItemState.ACTIVE
    assert target.state_of("encryption") is ItemState.ACTIVE


async def test_a_key_absent_from_the_vault_costs_one_call_to_restore() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)

    await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert sorted(target.calls) == [("restore_key", "encryption"), ("restore_key", "signing")]


async def test_recover_only_never_restores_even_an_absent_key() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)

    report = await run_restore(
        restore_spec(strategy=Strategy.RECOVER_ONLY), opened(store, manifest), target, clock=clock
    )

    assert [(o.result, o.reason) for o in report.outcomes] == [(ItemResult.FAILED, "KeyNotDeleted")]
    assert "restore_key" not in [operation for operation, _ in target.calls]


async def test_a_soft_deleted_key_is_recovered_by_auto_instead_of_restored() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    target.add("signing", versions=("s1", "s2", "s3"), deleted=True)

    report = await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert [(o.result, o.versions) for o in report.outcomes] == [
        (ItemResult.RECOVERED, ("s1", "s2", "s3"))
    ]
    assert target.state_of("signing") is ItemState.ACTIVE
    # The restore tried first was refused for the name being taken; the key was recovered.
    assert ("recover_key", "signing") in target.calls


async def test_a_soft_deleted_key_is_purged_then_restored_when_purge_deleted_keys_is_set() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    target.add("signing", versions=("s1", "s2", "s3"), deleted=True)

    report = await run_restore(
        restore_spec(purge_deleted=True), opened(store, manifest), target, clock=clock
    )

    assert [(o.result, o.versions) for o in report.outcomes] == [
        (ItemResult.RESTORED, ("s1", "s2"))
    ]
    operations = [operation for operation, _ in target.calls]
    assert operations[-2:] == ["purge_key", "restore_key"]


async def test_a_soft_deleted_key_is_never_purged_for_a_backup_that_fails_verification() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    target.add("signing", versions=("s1", "s2", "s3"), deleted=True)
    store.replace_artifact("signing", b"corrupted")

    report = await run_restore(
        restore_spec(purge_deleted=True), opened(store, manifest), target, clock=clock
    )

    assert results(report.outcomes) == [("signing", ItemResult.FAILED, "IntegrityCheckFailed")]
    assert target.state_of("signing") is ItemState.SOFT_DELETED
    assert "purge_key" not in [operation for operation, _ in target.calls]


async def test_an_active_key_is_left_alone_when_on_conflict_is_skip() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)
    target.add("signing", versions=("newer",))

    report = await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert report.phase is Phase.SUCCEEDED
    assert results(report.outcomes) == [
        ("signing", ItemResult.SKIPPED, "KeyExists"),
        ("encryption", ItemResult.RESTORED, "Restored"),
    ]
    assert target.items[(ItemKind.KEY, "signing")].versions == ("newer",)


async def test_an_active_key_fails_when_on_conflict_is_fail() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)
    target.add("signing", versions=("newer",))

    report = await run_restore(
        restore_spec(on_conflict=OnConflict.FAIL), opened(store, manifest), target, clock=clock
    )

    assert report.phase is Phase.PARTIALLY_FAILED
    assert results(report.outcomes) == [
        ("signing", ItemResult.FAILED, "KeyExists"),
        ("encryption", ItemResult.RESTORED, "Restored"),
    ]
    assert target.items[(ItemKind.KEY, "signing")].versions == ("newer",)


async def test_an_altered_backup_fails_its_integrity_check_while_the_others_are_restored() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)
    store.replace_artifact("signing", b'{"name": "signing", "versions": ["forged"]}')

    report = await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert report.phase is Phase.PARTIALLY_FAILED
    assert results(report.outcomes) == [
        ("signing", ItemResult.FAILED, "IntegrityCheckFailed"),
        ("encryption", ItemResult.RESTORED, "Restored"),
    ]
    assert target.state_of("signing") is ItemState.ABSENT


async def test_a_key_the_vault_refuses_fails_alone_while_the_others_are_restored() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)
    for operation in ("restore_key", "key_state"):
        target.fail(operation, "signing", ItemAccessDeniedError(f"{operation} signing: Forbidden"))

    report = await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert report.phase is Phase.PARTIALLY_FAILED
    assert results(report.outcomes) == [
        ("signing", ItemResult.FAILED, "AccessDenied"),
        ("encryption", ItemResult.RESTORED, "Restored"),
    ]


async def test_only_the_listed_keys_are_restored_whatever_their_case() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)

    report = await run_restore(
        restore_spec(keys=("ENCRYPTION",)), opened(store, manifest), target, clock=clock
    )

    assert results(report.outcomes) == [("ENCRYPTION", ItemResult.RESTORED, "Restored")]
    assert target.state_of("encryption") is ItemState.ACTIVE
    assert target.state_of("signing") is ItemState.ABSENT


async def test_a_key_not_in_the_snapshot_fails_without_touching_the_vault() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    target.add("unknown", deleted=True)

    report = await run_restore(
        restore_spec(keys=("signing", "unknown")), opened(store, manifest), target, clock=clock
    )

    assert results(report.outcomes) == [
        ("signing", ItemResult.RESTORED, "Restored"),
        ("unknown", ItemResult.FAILED, "KeyNotInSnapshot"),
    ]
    assert "unknown" not in target.names_touched()
    assert target.state_of("unknown") is ItemState.SOFT_DELETED


async def test_a_resumed_restore_reports_a_key_its_interrupted_attempt_restored_as_restored() -> (
    None
):
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)
    target.add("signing", versions=("s1", "s2"))  # brought back before the crash

    report = await run_restore(
        restore_spec(on_conflict=OnConflict.FAIL),
        opened(store, manifest),
        target,
        resumed=True,
        clock=clock,
    )

    assert report.phase is Phase.SUCCEEDED
    assert [(o.name, o.result, o.versions) for o in report.outcomes] == [
        ("signing", ItemResult.RESTORED, ("s1", "s2")),
        ("encryption", ItemResult.RESTORED, ("e1",)),
    ]
    assert "purge_key" not in [operation for operation, _ in target.calls]


async def test_a_resumed_restore_still_refuses_an_active_key_whose_versions_differ() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    target.add("signing", versions=("s1", "s2", "s3"))

    report = await run_restore(
        restore_spec(on_conflict=OnConflict.FAIL),
        opened(store, manifest),
        target,
        resumed=True,
        clock=clock,
    )

    assert results(report.outcomes) == [("signing", ItemResult.FAILED, "KeyExists")]


async def test_a_first_attempt_skips_an_active_key_even_with_the_snapshots_versions() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING)
    target.add("signing", versions=("s1", "s2"))

    report = await run_restore(restore_spec(), opened(store, manifest), target, clock=clock)

    assert results(report.outcomes) == [("signing", ItemResult.SKIPPED, "KeyExists")]


@pytest.mark.parametrize(
    ("on_conflict", "conflict"),
    [
        pytest.param(OnConflict.SKIP, ItemResult.SKIPPED, id="onConflict Skip"),
        pytest.param(OnConflict.FAIL, ItemResult.FAILED, id="onConflict Fail"),
    ],
)
async def test_a_restore_attempted_again_reports_each_key_as_the_interrupted_attempt_left_it(
    on_conflict: OnConflict, conflict: ItemResult
) -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(
        store, ("absent", ("a1",)), ("deleted", ("d1",)), ("intact", ("i1",)), ("last", ("l1",))
    )
    target.add("deleted", versions=("d1",), deleted=True)
    target.add("intact", versions=("i1",))  # never lost: the snapshot's very versions
    target.fail("restore_key", "last", TransientError("vault unreachable"))
    spec, journal = restore_spec(on_conflict=on_conflict), RestoreJournal()
    with pytest.raises(TransientError):
        await run_restore(
            spec, opened(store, manifest), target, journal=journal, concurrency=1, clock=clock
        )

    target.failures.clear()
    target.calls.clear()
    carried = RestoreJournal(snapshot_id=journal.snapshot_id, carried=journal.encoded())
    report = await run_restore(
        spec, opened(store, manifest), target, resumed=True, journal=carried, clock=clock
    )

    assert results(report.outcomes) == [
        ("absent", ItemResult.RESTORED, "Restored"),
        ("deleted", ItemResult.RECOVERED, "Recovered"),
        ("intact", conflict, "KeyExists"),
        ("last", ItemResult.RESTORED, "Restored"),
    ]
    assert report.outcomes[1].versions == ("d1",)
    # Keys restored or recovered before cost no change to the vault this time.
    changed = {name for operation, name in target.calls if operation != "list_versions"}
    assert "last" in changed
    assert not {"absent", "deleted"} & changed


async def test_a_key_that_failed_is_tried_again_by_the_next_attempt() -> None:
    store, target = InMemoryStore(), InMemoryVault()
    manifest = await take_snapshot(store, SIGNING, ENCRYPTION)
    target.fail("restore_key", "signing", ItemAccessDeniedError("not this key"))
    target.fail("restore_key", "encryption", TransientError("vault unreachable"))
    journal = RestoreJournal()
    with pytest.raises(TransientError):
        await run_restore(
            restore_spec(),
            opened(store, manifest),
            target,
            journal=journal,
            concurrency=1,
            clock=clock,
        )

    target.failures.clear()
    carried = RestoreJournal(snapshot_id=journal.snapshot_id, carried=journal.encoded())
    report = await run_restore(
        restore_spec(),
        opened(store, manifest),
        target,
        resumed=True,
        journal=carried,
        clock=clock,
    )

    assert results(report.outcomes) == [
        ("signing", ItemResult.RESTORED, "Restored"),
        ("encryption", ItemResult.RESTORED, "Restored"),
    ]
