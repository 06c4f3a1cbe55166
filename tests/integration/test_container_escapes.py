"""A spec cannot steer the operator's own identity out of the blob container it names.

Azurite here serves HTTPS and accepts bearer tokens, as Blob Storage does for the
operator's identity: a token is good for every container the identity may use, so what a
request reaches depends on its URL alone. A shared key or a container SAS would be refused
for another container, and would hide an escape."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.adapters.credentials import FailingFast
from kvbackup.adapters.http import SharedSession
from kvbackup.api import keybackup, keyrestore
from kvbackup.api.keybackup import BlobDestination, KeyBackupRef
from kvbackup.api.keyrestore import BlobSnapshotSource
from kvbackup.errors import IntegrityError, InvalidSpecError
from kvbackup.services.snapshot import Manifest
from tests.harness import azurite as azurite_harness
from tests.harness.azurite import Azurite, BearerToken
from tests.integration.conftest import SNAPSHOT, store_snapshot

pytestmark = pytest.mark.integration

VAULT = "https://v.vault.azure.net"
REF = KeyBackupRef("team-b", "keys", "uid-b")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = azurite_harness.start(tmp_path_factory.mktemp("azurite-oauth"), oauth=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def containers(azurite: Azurite) -> AsyncIterator[tuple[ContainerClient, ContainerClient]]:
    """Team a's container and another one, through the plain SDK, to inspect them."""
    clients = [
        ContainerClient.from_connection_string(
            azurite.connection_string(),
            f"{team}-{uuid.uuid4().hex[:8]}",
            connection_verify=str(azurite.certificate),
        )
        for team in ("team-a", "other")
    ]
    for client in clients:
        await client.create_container()
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.close()


@asynccontextmanager
async def _identity_store(
    azurite: Azurite, container: str, prefix: str = ""
) -> AsyncIterator[BlobSnapshotStore]:
    """The store as the operator opens it for a container with its own identity."""
    http = SharedSession(azurite.tls())
    client = container_client(
        azurite.blob_endpoint,
        container,
        hosts=azurite.blob_hosts,
        credential=FailingFast(BearerToken()),  # wrapped as the operator wraps its identity
        http=http,
    )
    try:
        async with client:
            yield BlobSnapshotStore(client, prefix)
    finally:
        await http.close()


async def _back_up_as_the_operator_would(azurite: Azurite, spec: dict[str, Any]) -> None:
    destination = keybackup.parse_spec(spec).destination
    assert isinstance(destination, BlobDestination)
    async with _identity_store(azurite, destination.container.name, destination.prefix) as store:
        await store_snapshot(store, REF, SNAPSHOT, {"app-key": b"team b's backup"})


async def _read_as_the_operator_would(azurite: Azurite, spec: dict[str, Any]) -> Manifest:
    source = keyrestore.parse_spec(spec).source
    assert isinstance(source, BlobSnapshotSource)
    async with _identity_store(azurite, source.container.name) as store:
        return await store.read_manifest_at(source.path)


async def _outcome(attempt: Awaitable[object]) -> object:
    """What the attempt returned, or the refusal it raised: awaited before anything is
    asserted, so that an escape shows as what it wrote or read elsewhere."""
    try:
        return await attempt
    except (InvalidSpecError, IntegrityError) as error:
        return error


async def _blob_names(container: ContainerClient) -> list[str]:
    return sorted([blob.name async for blob in container.list_blobs()])


async def test_the_operators_identity_writes_and_reads_its_own_container(
    azurite: Azurite, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    team_a, other = containers
    blob = {"accountUrl": azurite.blob_endpoint, "container": team_a.container_name}
    await _back_up_as_the_operator_would(
        azurite,
        {"vaultUrl": VAULT, "keys": {"names": ["app-key"]}, "destination": {"blob": blob}},
    )
    path = f"team-b/keys/{SNAPSHOT}"
    manifest = await _read_as_the_operator_would(
        azurite, {"vaultUrl": VAULT, "source": {"blob": {**blob, "path": path}}}
    )

    assert manifest.snapshot_id == SNAPSHOT
    assert len(await _blob_names(team_a)) == 2
    assert await _blob_names(other) == []


@pytest.mark.parametrize(
    "climb", [pytest.param("..", id="parent-segment"), pytest.param("%2e%2e", id="encoded")]
)
async def test_a_prefix_that_climbs_out_of_its_container_writes_nothing_anywhere(
    azurite: Azurite, containers: tuple[ContainerClient, ContainerClient], climb: str
) -> None:
    team_a, other = containers
    blob = {
        "accountUrl": azurite.blob_endpoint,
        "container": team_a.container_name,
        "prefix": f"{climb}/{other.container_name}",
    }
    spec = {"vaultUrl": VAULT, "keys": {"names": ["app-key"]}, "destination": {"blob": blob}}

    outcome = await _outcome(_back_up_as_the_operator_would(azurite, spec))

    assert await _blob_names(other) == []
    assert await _blob_names(team_a) == []
    assert isinstance(outcome, InvalidSpecError)
    assert outcome.message.startswith("spec.destination.blob.prefix must be")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../{other}/team-b/keys/{snapshot}", id="folder"),
        pytest.param("{account}/{team_a}/../{other}/team-b/keys/{snapshot}/", id="url"),
    ],
)
async def test_a_snapshot_path_that_climbs_out_of_its_container_reads_nothing_there(
    azurite: Azurite, containers: tuple[ContainerClient, ContainerClient], path: str
) -> None:
    team_a, other = containers
    async with _identity_store(azurite, other.container_name) as their_store:
        await store_snapshot(their_store, REF, SNAPSHOT, {"app-key": b"another team's backup"})
    blob = {
        "accountUrl": azurite.blob_endpoint,
        "container": team_a.container_name,
        "path": path.format(
            account=azurite.blob_endpoint,
            team_a=team_a.container_name,
            other=other.container_name,
            snapshot=SNAPSHOT,
        ),
    }

    spec = {"vaultUrl": VAULT, "source": {"blob": blob}}

    outcome = await _outcome(_read_as_the_operator_would(azurite, spec))

    assert not isinstance(outcome, Manifest), "another team's snapshot was read"
    assert isinstance(outcome, InvalidSpecError)
    assert outcome.message.startswith("spec.source.blob.path must be")


async def test_a_stored_in_that_climbs_out_of_its_container_reads_nothing_there(
    azurite: Azurite, containers: tuple[ContainerClient, ContainerClient]
) -> None:
    team_a, other = containers
    async with _identity_store(azurite, other.container_name) as their_store:
        await store_snapshot(their_store, REF, SNAPSHOT, {"app-key": b"another team's backup"})
    async with _identity_store(azurite, team_a.container_name) as store:
        [artifact] = (await store_snapshot(store, REF, SNAPSHOT, {"app-key": b"x"})).artifacts
        # What no manifest parses to, handed to the store as if one had.
        climbing = f"../../../{other.container_name}/team-b/keys/{SNAPSHOT}"

        outcome = await _outcome(
            store.read_artifact_at(f"team-b/keys/{SNAPSHOT}", replace(artifact, stored_in=climbing))
        )

    assert not isinstance(outcome, bytes), "another team's backup was read"
    assert isinstance(outcome, IntegrityError)
    assert "which is not a snapshot id" in outcome.message
