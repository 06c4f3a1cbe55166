"""Backups and restores of keys, secrets and certificates in one run: each item is kept
and brought back under its own kind, and certificate-backed items are covered once."""

from __future__ import annotations

import pytest

from kvbackup.api.conditions import Phase
from kvbackup.api.keybackup import ItemChoice, ItemSelector
from kvbackup.api.keyrestore import Strategy
from kvbackup.api.kinds import ItemKind
from kvbackup.errors import InvalidSpecError
from kvbackup.services.backup import run_backup
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.ports import ItemState
from kvbackup.services.restore import run_restore
from kvbackup.services.snapshot import Manifest
from tests.unit.fakes import (
    REF,
    SNAPSHOT_ID,
    InMemoryStore,
    InMemoryVault,
    backup_spec,
    clock,
    opened,
    restore_spec,
)

KEY, SECRET, CERTIFICATE = ItemKind.KEY, ItemKind.SECRET, ItemKind.CERTIFICATE
EVERYTHING = ItemChoice(selector=ItemSelector())


def whole_vault() -> InMemoryVault:
    """A key and a secret that share a name, a certificate with its managed key and
    secret, and one more secret."""
    vault = InMemoryVault()
    vault.add("shared", versions=("k1", "k2"))
    vault.add("shared", versions=("s1", "s2", "s3"), kind=SECRET)
    vault.add("db-password", versions=("p1",), kind=SECRET)
    vault.add_certificate("api-tls", versions=("c1", "c2"))
    return vault


async def back_up(
    vault: InMemoryVault, store: InMemoryStore, *kinds: ItemKind
) -> tuple[Manifest, dict[ItemKind, int]]:
    report = await run_backup(
        backup_spec(choices={kind: EVERYTHING for kind in kinds}),
        REF,
        SNAPSHOT_ID,
        vault,
        store,
        clock=clock,
    )
    assert report.phase is Phase.SUCCEEDED
    return store.manifests[-1], dict(report.left_out)


async def test_one_snapshot_holds_every_kind_each_item_under_its_own_kind() -> None:
    store = InMemoryStore()

    manifest, left_out = await back_up(whole_vault(), store, KEY, SECRET, CERTIFICATE)

    assert [(a.kind, a.name, a.versions) for a in manifest.artifacts] == [
        (KEY, "shared", ("k1", "k2")),
        (SECRET, "db-password", ("p1",)),
        (SECRET, "shared", ("s1", "s2", "s3")),
        (CERTIFICATE, "api-tls", ("c1", "c2")),
    ]
    # The certificate's key and secret are in its backup, so nothing is left out.
    assert left_out == {}
    assert manifest.summary.stored(SECRET) == 2


async def test_items_that_back_a_certificate_are_counted_as_left_out_when_it_is_not_selected() -> (
    None
):
    store = InMemoryStore()

    manifest, left_out = await back_up(whole_vault(), store, KEY, SECRET)

    assert ("api-tls" in {a.name for a in manifest.artifacts}) is False
    assert left_out == {KEY: 1, SECRET: 1}


async def test_selectors_that_match_nothing_of_any_kind_fail_the_run() -> None:
    vault = InMemoryVault()
    vault.add_certificate("api-tls")

    with pytest.raises(InvalidSpecError) as refused:
        await back_up(vault, InMemoryStore(), KEY, SECRET)

    assert refused.value.reason == "NothingMatched"
    assert "spec.keys.selector, spec.secrets.selector" in refused.value.message


async def test_a_restore_brings_back_each_kind_and_leaves_a_same_named_item_of_another_be() -> None:
    store = InMemoryStore()
    manifest, _ = await back_up(whole_vault(), store, KEY, SECRET, CERTIFICATE)
    target = InMemoryVault()
    target.add("shared", versions=("kept",))  # a key of the same name as the secret

    report = await run_restore(
        restore_spec(items={SECRET: ("shared",), CERTIFICATE: ("api-tls",)}),
        opened(store, manifest),
        target,
        clock=clock,
    )

    assert [(o.kind, o.name, o.result) for o in report.outcomes] == [
        (SECRET, "shared", ItemResult.RESTORED),
        (CERTIFICATE, "api-tls", ItemResult.RESTORED),
    ]
    assert target.items[(SECRET, "shared")].versions == ("s1", "s2", "s3")
    assert target.items[(KEY, "shared")].versions == ("kept",)
    assert (SECRET, "db-password") not in target.items


async def test_each_kind_gets_reasons_of_its_own_and_purging_only_for_the_kinds_asked() -> None:
    store = InMemoryStore()
    manifest, _ = await back_up(whole_vault(), store, KEY, SECRET)
    target = InMemoryVault()
    target.add("shared", versions=("old",), deleted=True)
    target.add("shared", versions=("old",), deleted=True, kind=SECRET)
    target.add("db-password", versions=("live",), kind=SECRET)

    report = await run_restore(
        restore_spec(strategy=Strategy.RESTORE_ONLY, purge_deleted=frozenset({SECRET})),
        opened(store, manifest),
        target,
        clock=clock,
    )

    assert [(o.kind, o.name, o.result, o.reason) for o in report.outcomes] == [
        (KEY, "shared", ItemResult.FAILED, "KeySoftDeleted"),
        (SECRET, "db-password", ItemResult.SKIPPED, "SecretExists"),
        (SECRET, "shared", ItemResult.RESTORED, "Restored"),
    ]
    assert "purgeDeletedKeys" in report.outcomes[0].message
    assert target.state_of("shared", KEY) is ItemState.SOFT_DELETED


async def test_a_tampered_secret_fails_that_secret_only() -> None:
    store = InMemoryStore()
    manifest, _ = await back_up(whole_vault(), store, KEY, SECRET, CERTIFICATE)
    store.replace_artifact("db-password", b"forged", SECRET)

    report = await run_restore(
        restore_spec(), opened(store, manifest), InMemoryVault(), clock=clock
    )

    failed = [(o.kind, o.name, o.reason) for o in report.outcomes if o.failed]
    assert failed == [(SECRET, "db-password", "IntegrityCheckFailed")]
    assert report.phase is Phase.PARTIALLY_FAILED


async def test_a_dry_run_tells_per_kind_what_a_restore_would_do() -> None:
    store = InMemoryStore()
    manifest, _ = await back_up(whole_vault(), store, KEY, SECRET, CERTIFICATE)
    target = InMemoryVault()
    target.add("api-tls", deleted=True, kind=CERTIFICATE)

    report = await run_restore(
        restore_spec(dry_run=True), opened(store, manifest), target, clock=clock
    )

    assert [(o.kind, o.result, o.reason) for o in report.outcomes] == [
        (KEY, ItemResult.WOULD_RESTORE, "KeyAbsent"),
        (SECRET, ItemResult.WOULD_RESTORE, "SecretAbsent"),
        (SECRET, ItemResult.WOULD_RESTORE, "SecretAbsent"),
        (CERTIFICATE, ItemResult.WOULD_RECOVER, "CertificateSoftDeleted"),
    ]
    assert target.items.keys() == {(CERTIFICATE, "api-tls")}
