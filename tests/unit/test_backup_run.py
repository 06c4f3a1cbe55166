"""One backup run against an in-memory vault and snapshot store."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from kvbackup.api.conditions import Phase
from kvbackup.api.keybackup import ItemSelector, KeyBackupSpec, NamePattern, Retention
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import (
    AccessDeniedError,
    InvalidSpecError,
    ItemAccessDeniedError,
    TransientError,
)
from kvbackup.services.backup import run_backup
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.snapshot import Artifact, sha256_hex
from tests.unit.fakes import (
    REF,
    SNAPSHOT_ID,
    VAULT_URL,
    InMemoryStore,
    InMemoryVault,
    backup_spec,
    clock,
)

GRACE = datetime.timedelta(hours=1)


async def test_every_named_key_is_stored_and_the_manifest_is_written_last() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("Signing", versions=("v1", "v2"))
    vault.add("encryption", versions=("e1",))

    report = await run_backup(
        backup_spec("Signing", "encryption"), REF, SNAPSHOT_ID, vault, store, clock=clock
    )

    assert report.phase is Phase.SUCCEEDED
    assert report.manifest_written is True
    assert sorted(store.writes[:2]) == ["artifact Signing", "artifact encryption"]
    assert store.writes[2:] == ["manifest"]
    stored = store.artifacts[(REF.namespace, REF.name, SNAPSHOT_ID, "signing")]
    manifest = store.manifests[0]
    assert (manifest.snapshot_id, manifest.keybackup, manifest.vault_url) == (
        SNAPSHOT_ID,
        REF,
        VAULT_URL,
    )
    # The manifest records where the store said it put the bytes, and what the item's
    # versions said of it, for the next run to compare with.
    assert manifest.artifact(ItemKind.KEY, "signing") == Artifact(
        "Signing",
        ("v1", "v2"),
        sha256_hex(stored),
        len(stored),
        "memory:signing",
        change=vault.items[(ItemKind.KEY, "signing")].versions_listed,
    )
    assert manifest.failures == ()
    assert report.total_bytes == sum(len(data) for data in store.artifacts.values())


async def test_a_missing_key_fails_alone_and_the_run_is_partially_failed() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("present")

    report = await run_backup(
        backup_spec("present", "gone"), REF, SNAPSHOT_ID, vault, store, clock=clock
    )

    assert report.phase is Phase.PARTIALLY_FAILED
    assert [(o.name, o.result, o.reason) for o in report.outcomes] == [
        ("present", ItemResult.SUCCEEDED, ""),
        ("gone", ItemResult.FAILED, "NotFound"),
    ]
    manifest = store.manifests[0]
    assert [a.name for a in manifest.artifacts] == ["present"]
    assert [(f.name, f.reason) for f in manifest.failures] == [("gone", "NotFound")]


@pytest.mark.parametrize(("versions", "backed_up"), [(500, True), (501, False)])
async def test_a_key_of_more_versions_than_key_vault_backs_up_fails_alone_before_its_backup_call(
    versions: int, backed_up: bool
) -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("rotated", versions=tuple(f"v{index}" for index in range(versions)))
    vault.add("steady")

    report = await run_backup(
        backup_spec("rotated", "steady"), REF, SNAPSHOT_ID, vault, store, clock=clock
    )

    rotated, steady = report.outcomes
    assert steady.result is ItemResult.SUCCEEDED
    assert (("backup_key", "rotated") in vault.calls) is backed_up
    if backed_up:
        assert rotated.result is ItemResult.SUCCEEDED
        return
    assert (rotated.result, rotated.reason) == (ItemResult.FAILED, "TooManyVersions")
    assert "501 versions" in rotated.message
    assert "at most 500" in rotated.message
    assert [(f.name, f.reason) for f in store.manifests[0].failures] == [
        ("rotated", "TooManyVersions")
    ]


async def test_no_manifest_is_written_when_no_key_could_be_stored() -> None:
    vault, store = InMemoryVault(), InMemoryStore()

    report = await run_backup(
        backup_spec("gone", "lost"), REF, SNAPSHOT_ID, vault, store, clock=clock
    )

    assert report.phase is Phase.FAILED
    assert report.manifest_written is False
    assert store.manifests == []
    assert "manifest" not in store.writes


async def test_a_selector_matching_no_key_is_an_invalid_spec_with_reason_no_keys_matched() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("app-1", tags={"env": "dev"})
    selector = ItemSelector(tags={"env": "prod"})

    with pytest.raises(InvalidSpecError) as caught:
        await run_backup(
            backup_spec(selector=selector), REF, SNAPSHOT_ID, vault, store, clock=clock
        )

    assert caught.value.reason == "NoKeysMatched"
    assert store.writes == []


async def test_a_selector_backs_up_matching_unmanaged_keys_in_name_order() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("app-2", tags={"env": "prod"})
    vault.add("app-1", tags={"env": "prod"})
    vault.add("app-cert", tags={"env": "prod"}, managed=True)
    vault.add("app-3", tags={"env": "dev"})
    vault.add("other", tags={"env": "prod"})
    selector = ItemSelector(
        name_pattern=NamePattern.compile("app-.*", "namePattern"), tags={"env": "prod"}
    )

    report = await run_backup(
        backup_spec(selector=selector), REF, SNAPSHOT_ID, vault, store, clock=clock
    )

    assert [o.name for o in report.outcomes] == ["app-1", "app-2"]
    assert [a.name for a in store.manifests[0].artifacts] == ["app-1", "app-2"]


async def test_a_temporary_error_aborts_the_run_without_writing_a_manifest() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("a")
    vault.add("b")
    vault.fail("backup_key", "b", TransientError("vault unreachable"))

    with pytest.raises(TransientError):
        await run_backup(backup_spec("a", "b"), REF, SNAPSHOT_ID, vault, store, clock=clock)

    assert store.manifests == []


async def test_a_key_the_vault_refuses_fails_alone_with_its_reason_and_the_others_are_kept() -> (
    None
):
    vault, store = InMemoryVault(), InMemoryStore()
    for name in ("app-key", "payroll-key", "web-key"):
        vault.add(name)
    vault.fail(
        "list_versions",
        "payroll-key",
        ItemAccessDeniedError(
            "list versions of key payroll-key: Forbidden: caller is not authorized"
        ),
    )

    report = await run_backup(
        backup_spec("app-key", "payroll-key", "web-key"),
        REF,
        SNAPSHOT_ID,
        vault,
        store,
        clock=clock,
    )

    assert report.phase is Phase.PARTIALLY_FAILED
    assert [(o.name, o.result, o.reason) for o in report.outcomes] == [
        ("app-key", ItemResult.SUCCEEDED, ""),
        ("payroll-key", ItemResult.FAILED, "AccessDenied"),
        ("web-key", ItemResult.SUCCEEDED, ""),
    ]
    assert "not authorized" in report.outcomes[1].message
    assert [a.name for a in store.manifests[0].artifacts] == ["app-key", "web-key"]


async def test_a_vault_that_refuses_every_key_fails_the_run_as_access_denied() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    for name in ("app-key", "web-key"):
        vault.add(name)
        vault.fail("list_versions", name, ItemAccessDeniedError(f"list versions of key {name}"))

    with pytest.raises(AccessDeniedError) as caught:
        await run_backup(
            backup_spec("app-key", "web-key"), REF, SNAPSHOT_ID, vault, store, clock=clock
        )

    assert type(caught.value) is AccessDeniedError
    assert caught.value.temporary
    assert "refused every item of the run (2)" in caught.value.message
    assert store.manifests == []


async def test_an_unreachable_store_fails_the_run_before_the_vault_is_touched() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("signing")
    store.unavailable = AccessDeniedError("403 on the container")

    with pytest.raises(AccessDeniedError):
        await run_backup(backup_spec("signing"), REF, SNAPSHOT_ID, vault, store, clock=clock)

    assert vault.calls == []
    assert store.writes == []


def keep_last(count: int) -> KeyBackupSpec:
    return replace(backup_spec("signing"), retention=Retention(keep_last=count))


async def test_a_run_that_kept_a_snapshot_applies_retention_and_reports_what_remains() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("signing")
    store.add_snapshot("20240101-000000-aaaa")
    store.add_snapshot("20240102-000000-bbbb")

    report = await run_backup(
        keep_last(2), REF, SNAPSHOT_ID, vault, store, clock=clock, incomplete_grace=GRACE
    )

    assert report.kept is not None
    assert [kept.summary.snapshot_id for kept in report.kept] == [
        SNAPSHOT_ID,
        "20240102-000000-bbbb",
    ]
    assert report.kept[0].location == store.location(REF.namespace, REF.name, SNAPSHOT_ID)
    assert "delete manifest 20240101-000000-aaaa" in store.writes
    assert report.retention_error is None


async def test_a_run_that_kept_nothing_deletes_nothing() -> None:
    vault, store = InMemoryVault(), InMemoryStore()  # "signing" is not in the vault
    store.add_snapshot("20240101-000000-aaaa")

    report = await run_backup(
        keep_last(1), REF, SNAPSHOT_ID, vault, store, clock=clock, incomplete_grace=GRACE
    )

    assert report.phase is Phase.FAILED
    assert report.kept is None
    assert not any(write.startswith("delete") for write in store.writes)


class UndeletableStore(InMemoryStore):
    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        raise TransientError("storage refused the deletion")


async def test_a_retention_failure_keeps_the_new_snapshot_and_says_why() -> None:
    vault, store = InMemoryVault(), UndeletableStore()
    vault.add("signing")
    store.add_snapshot("20240101-000000-aaaa")

    report = await run_backup(
        keep_last(1), REF, SNAPSHOT_ID, vault, store, clock=clock, incomplete_grace=GRACE
    )

    assert report.phase is Phase.SUCCEEDED
    assert report.manifest_written
    assert report.kept is None
    assert report.retention_error is not None
    assert report.retention_error.message == "storage refused the deletion"


async def test_a_resumed_run_backs_up_only_the_keys_its_snapshot_lacks() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("signing", versions=("s1", "s2"))
    vault.add("encryption", versions=("e1",))
    await store.write_artifact(
        REF, SNAPSHOT_ID, ItemKind.KEY, "signing", b"stored before the crash", ("s1", "s2")
    )

    report = await run_backup(
        backup_spec("signing", "encryption"), REF, SNAPSHOT_ID, vault, store, clock=clock
    )

    assert report.phase is Phase.SUCCEEDED
    assert vault.names_touched() == {"encryption"}
    [manifest] = store.manifests
    signing = manifest.artifact(ItemKind.KEY, "signing")
    assert signing.versions == ("s1", "s2")
    assert signing.sha256 == sha256_hex(b"stored before the crash")


async def test_a_stored_backup_that_no_longer_matches_its_sha256_is_backed_up_again() -> None:
    vault, store = InMemoryVault(), InMemoryStore()
    vault.add("signing", versions=("s1",))
    await store.write_artifact(
        REF, SNAPSHOT_ID, ItemKind.KEY, "signing", b"stored before the crash", ("s1",)
    )
    store.replace_artifact("signing", b"altered since")

    await run_backup(backup_spec("signing"), REF, SNAPSHOT_ID, vault, store, clock=clock)

    assert vault.names_touched() == {"signing"}
    assert store.manifests[0].artifact(ItemKind.KEY, "signing").sha256 != sha256_hex(
        b"altered since"
    )
