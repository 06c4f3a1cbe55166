"""Where the command line reads snapshots and restores items: a KeyBackup's Secrets
through a kubeconfig, or a blob container; a vault; each under the usual Azure
authentication, with every given name and URL checked as the operator checks a spec."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from kvbackup.adapters import credentials
from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.adapters.http import SharedSession, tls_context
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.adapters.kubernetes import KubernetesApi, connect_to
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api import fields
from kvbackup.api.hosts import HostAllowList
from kvbackup.api.keybackup import PRIMARY, BlobDestination, Destination, SecretDestination
from kvbackup.api.keyrestore import LATEST, BlobSnapshotSource, SnapshotSource
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError
from kvbackup.services.ports import OpenedSnapshot, SnapshotStore, VaultItems
from kvbackup.services.restore import opened_snapshot

#: A connection string for the blob container, instead of the Azure identity.
CONNECTION_STRING_VARIABLE = "AZURE_STORAGE_CONNECTION_STRING"


@dataclass(frozen=True)
class StorageOptions:
    """Where snapshots are, as given on the command line (unchecked)."""

    namespace: str | None = None
    keybackup: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    account_url: str | None = None
    container: str | None = None
    prefix: str | None = None


@dataclass(frozen=True)
class Location:
    """Checked: a KeyBackup's snapshots in its Secrets or under a container's prefix."""

    destination: Destination
    namespace: str
    keybackup: str


def keybackup_location(options: StorageOptions) -> Location:
    namespace = fields.object_name(options.namespace, "--namespace", pattern=fields.NAMESPACE_NAME)
    keybackup = fields.object_name(options.keybackup, "--keybackup")
    return Location(destination(options), namespace, keybackup)


def destination(options: StorageOptions) -> Destination:
    if options.account_url is None:
        if options.container is not None or options.prefix is not None:
            raise InvalidSpecError("--container and --prefix need --account-url")
        return SecretDestination()
    container = fields.BlobContainer(
        account_url=fields.account_url(options.account_url, "--account-url"),
        name=fields.container_name(options.container, "--container"),
    )
    return BlobDestination(container, fields.blob_prefix(options.prefix, "--prefix"))


def snapshot_source(options: StorageOptions, snapshot: str) -> SnapshotSource | BlobSnapshotSource:
    """SNAPSHOT of a KeyBackup (``latest`` or an id), or, in a container without
    ``--keybackup``, a snapshot's folder or URL as a KeyBackup's status shows it."""
    where = destination(options)
    if options.keybackup is None and isinstance(where, BlobDestination):
        return BlobSnapshotSource(where.container, fields.snapshot_path(snapshot, "SNAPSHOT"))
    location = keybackup_location(options)
    return SnapshotSource(
        location.keybackup, fields.snapshot_choice(snapshot, "SNAPSHOT", latest=LATEST)
    )


class Storage:
    """The one store the command line names, as the restore service's ``SnapshotStores``."""

    def __init__(
        self,
        store: SnapshotStore,
        where: Destination,
        blob: BlobSnapshotStore | None,
        blob_hosts: HostAllowList,
    ) -> None:
        self._store = store
        self._destination = where
        self._blob = blob
        self._blob_hosts = blob_hosts

    @property
    def snapshots(self) -> SnapshotStore:
        return self._store

    @asynccontextmanager
    async def store(self, namespace: str, destination: Destination) -> AsyncIterator[SnapshotStore]:
        yield self._store

    @asynccontextmanager
    async def snapshot_at_path(
        self, namespace: str, source: BlobSnapshotSource
    ) -> AsyncIterator[OpenedSnapshot]:
        if self._blob is None:
            raise InvalidSpecError("a snapshot's path needs --account-url and --container")
        if source.url is not None:
            self._blob_hosts.check(source.url, "snapshot path")
        yield await self._blob.open_at(source.path)

    async def destinations_of(self, namespace: str, keybackup: str) -> dict[str, Destination]:
        return {PRIMARY: self._destination}


@asynccontextmanager
async def opened_storage(options: StorageOptions, settings: Settings) -> AsyncIterator[Storage]:
    """Secrets through the kubeconfig, or the container: with the connection string in
    $AZURE_STORAGE_CONNECTION_STRING, else the Azure identity (DefaultAzureCredential)."""
    where = destination(options)
    if isinstance(where, SecretDestination):
        api = KubernetesApi(connect_to(options.kubeconfig, options.context))
        try:
            yield Storage(SecretSnapshotStore(api), where, None, settings.blob_hosts)
        finally:
            api.close()
        return
    container = where.container
    connection_string = os.environ.get(CONNECTION_STRING_VARIABLE) or None
    tls = tls_context(settings.ca_bundle)
    blob_http, identity_http = SharedSession(tls), SharedSession(tls, trust_env=True)
    identity = (
        None
        if connection_string
        else credentials.default_credential(container.account_url, identity_http)
    )
    try:
        client = container_client(
            container.account_url,
            container.name,
            hosts=settings.blob_hosts,
            connection_string=connection_string,
            credential=identity,
            http=blob_http,
        )
        async with client:
            blob = BlobSnapshotStore(client, where.prefix)
            yield Storage(blob, where, blob, settings.blob_hosts)
    finally:
        if identity is not None:
            await identity.close()
        await blob_http.close()
        await identity_http.close()


@asynccontextmanager
async def opened_source(
    options: StorageOptions, snapshot: str, settings: Settings
) -> AsyncIterator[OpenedSnapshot]:
    """SNAPSHOT, found as a KeyRestore finds its source."""
    source = snapshot_source(options, snapshot)
    namespace = options.namespace or ""
    async with (
        opened_storage(options, settings) as storage,
        opened_snapshot(storage, namespace, source) as opened,
    ):
        yield opened


@asynccontextmanager
async def opened_vault(vault_url: str, settings: Settings) -> AsyncIterator[VaultItems]:
    """The vault under the Azure identity (DefaultAzureCredential: environment, workload
    or managed identity, the Azure CLI's login, ...)."""
    clients = KeyVaultClients(settings)
    identity_http = SharedSession(tls_context(settings.ca_bundle), trust_env=True)
    identity = credentials.default_credential(vault_url, identity_http)
    try:
        yield clients.vault(vault_url, identity)
    finally:
        await clients.close()
        await identity.close()
        await identity_http.close()
