"""What a vault's listings tell of a change: the record of an item's listing entry, and
the record of its versions' listing, read through the operator's Key Vault adapter from
Lowkey Vault, while the items are changed with the plain Azure SDK
(tests/harness/vault.py).

A change to the current version or to the name shows in both records; a change to an
older version shows in the versions' record alone (the full-backup rule catches it for
listed items). Lowkey keeps times to the second: changes compared are a second apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from secrets import token_urlsafe
from typing import Any

import pytest

from kvbackup.adapters.keyvault import KeyVaultClients, KeyVaultItems
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.config import Settings
from kvbackup.services.snapshot import ChangeRecord
from tests.harness.vault import SELF_SIGNED, Vault, certificate_client, secret_client
from tests.integration.conftest import VaultUnderTest
from tests.unit.fakes import StaticToken

pytestmark = pytest.mark.integration

KEY, SECRET, CERTIFICATE = ITEM_KINDS
#: Longer than a second: Lowkey's ``updated`` times, like Key Vault's, are whole seconds.
NEXT_SECOND = 1.1
NAME = "payments"


@pytest.fixture
async def items(vault: VaultUnderTest) -> AsyncIterator[KeyVaultItems]:
    """The vault's items through the operator's adapter."""
    settings = Settings.from_env(
        {
            "KVBACKUP_VAULT_HOSTS": "127.0.0.1:*",
            "KVBACKUP_CA_BUNDLE": str(vault.certificate),
            "KVBACKUP_VERIFY_CHALLENGE_RESOURCE": "false",
        }
    )
    vaults = KeyVaultClients(settings)
    try:
        # Lowkey accepts any bearer token.
        yield vaults.vault(vault.url, StaticToken())
    finally:
        await vaults.close()


class Arranged:
    """One kind of item, changed as a person would with the plain SDK."""

    def __init__(self, vault: Vault, kind: ItemKind) -> None:
        self.vault, self.kind = vault, kind

    def _client(self) -> Any:
        opened: dict[ItemKind, Callable[[Vault], Any]] = {
            KEY: lambda vault: vault.client,
            SECRET: secret_client,
            CERTIFICATE: certificate_client,
        }
        return opened[self.kind](self.vault)

    def new_version(self, name: str) -> None:
        with self._client() as client:
            if self.kind is KEY:
                client.create_ec_key(name, curve="P-256")
            elif self.kind is SECRET:
                client.set_secret(name, token_urlsafe(16))
            else:
                client.begin_create_certificate(name, SELF_SIGNED).wait()

    def versions(self, name: str) -> list[str]:
        """The item's version ids, oldest first."""
        with self._client() as client:
            listed = getattr(client, f"list_properties_of_{self.kind}_versions")(name)
            return [p.version for p in sorted(listed, key=lambda p: (p.created_on, p.version))]

    def update(self, name: str, version: str, **attributes: Any) -> None:
        """Lowkey refuses (405) an update without a version: each names the one it changes."""
        with self._client() as client:
            getattr(client, f"update_{self.kind}_properties")(name, version, **attributes)

    def delete_and_purge(self, name: str) -> None:
        with self._client() as client:
            getattr(client, f"begin_delete_{self.kind}")(name).wait()
            getattr(client, f"purge_deleted_{self.kind}")(name)


async def records(
    items: KeyVaultItems, kind: ItemKind, name: str
) -> tuple[ChangeRecord | None, ChangeRecord | None]:
    """The record of the item's listing entry and the record of its versions' listing."""
    (listed,) = [info.change async for info in items.list_items(kind) if info.name == name]
    return listed, (await items.list_versions(kind, name)).change


async def item_with_records(
    items: KeyVaultItems, arranged: Arranged, versions: int = 1
) -> tuple[ChangeRecord, ChangeRecord]:
    """An item of ``versions`` versions, each created a second after the one before (so
    that which is the current one is told by their times), and its records once the next
    second has begun."""
    for _ in range(versions):
        arranged.new_version(NAME)
        await asyncio.sleep(NEXT_SECOND)
    listed, versioned = await records(items, arranged.kind, NAME)
    # Lowkey's listings carry an updated time, for items and for their versions.
    assert listed is not None
    assert versioned is not None
    return listed, versioned


@pytest.mark.parametrize("kind", ITEM_KINDS)
async def test_an_unchanged_item_listed_again_has_the_same_records(
    items: KeyVaultItems, vault: VaultUnderTest, kind: ItemKind
) -> None:
    before = await item_with_records(items, Arranged(vault, kind))

    assert await records(items, kind, NAME) == before


def new_version(arranged: Arranged) -> None:
    arranged.new_version(NAME)


def tag_current_version(arranged: Arranged) -> None:
    arranged.update(NAME, arranged.versions(NAME)[-1], tags={"team": "payments"})


def disable_current_version(arranged: Arranged) -> None:
    arranged.update(NAME, arranged.versions(NAME)[-1], enabled=False)


def delete_purge_and_create_again(arranged: Arranged) -> None:
    arranged.delete_and_purge(NAME)
    arranged.new_version(NAME)


@pytest.mark.parametrize("kind", ITEM_KINDS)
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(new_version, id="a new version"),
        pytest.param(tag_current_version, id="a changed tag on the current version"),
        pytest.param(disable_current_version, id="the current version disabled"),
        pytest.param(delete_purge_and_create_again, id="deleted, purged and created again"),
    ],
)
async def test_a_change_to_the_current_version_or_the_name_changes_both_records(
    items: KeyVaultItems,
    vault: VaultUnderTest,
    kind: ItemKind,
    change: Callable[[Arranged], None],
) -> None:
    arranged = Arranged(vault, kind)
    listed, versioned = await item_with_records(items, arranged)

    change(arranged)
    listed_after, versioned_after = await records(items, kind, NAME)

    assert listed_after is not None
    assert listed_after != listed
    assert versioned_after is not None
    assert versioned_after != versioned


@pytest.mark.parametrize("kind", ITEM_KINDS)
async def test_an_older_versions_change_shows_in_the_versions_record_alone(
    items: KeyVaultItems, vault: VaultUnderTest, kind: ItemKind
) -> None:
    arranged = Arranged(vault, kind)
    listed, versioned = await item_with_records(items, arranged, versions=2)
    oldest = arranged.versions(NAME)[0]

    arranged.update(NAME, oldest, enabled=False, tags={"retired": "yes"})
    listed_after, versioned_after = await records(items, kind, NAME)

    assert listed_after == listed
    assert versioned_after is not None
    assert versioned_after != versioned
    assert versioned_after.updated > versioned.updated
