"""The shared clients, built once at start-up and closed at clean-up, and what they open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from azure.core.credentials_async import AsyncTokenCredential
from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters import credentials
from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.adapters.kubernetes import KubernetesApi, connect
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api import KEYBACKUP_PLURAL
from kvbackup.api.fields import BlobContainer
from kvbackup.api.keybackup import Destination, SecretDestination, parse_spec
from kvbackup.api.keyrestore import BlobSnapshotSource, SnapshotSource
from kvbackup.config import Settings
from kvbackup.errors import (
    InvalidSpecError,
    MissingReferenceError,
    NotFoundError,
    NotPermittedError,
)
from kvbackup.services.ports import SnapshotStore, VaultKeys
from kvbackup.services.restore import OpenedSnapshot, choose_snapshot
from kvbackup.services.tenancy import blob_allowed, vault_allowed


@dataclass
class Runtime:
    settings: Settings
    kubernetes: KubernetesApi
    secret_store: SecretSnapshotStore
    vaults: KeyVaultClients
    default_credential: AsyncTokenCredential

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        api = KubernetesApi(connect())
        return cls(
            settings=settings,
            kubernetes=api,
            secret_store=SecretSnapshotStore(api),
            vaults=KeyVaultClients(settings),
            default_credential=credentials.default_credential(),
        )

    async def _secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        try:
            return await self.kubernetes.read_secret_data(namespace, name)
        except NotFoundError:
            raise MissingReferenceError(
                f"credentials Secret {name} not found in namespace {namespace}",
                reason="CredentialsNotFound",
            ) from None

    @asynccontextmanager
    async def vault(
        self, namespace: str, vault_url: str, credentials_secret: str | None
    ) -> AsyncIterator[VaultKeys]:
        """The vault's keys under the object's own credentials, or the operator's identity."""
        if credentials_secret is None:
            if not vault_allowed(self.settings.default_identity_rules, namespace, vault_url):
                raise NotPermittedError(
                    f"namespace {namespace} may not use the operator's identity for {vault_url}; "
                    "reference a credentials Secret, or ask a cluster admin to allow it",
                    reason="IdentityNotAllowed",
                )
            yield self.vaults.keys(vault_url, self.default_credential)
            return
        data = await self._secret_data(namespace, credentials_secret)
        credential = credentials.service_principal(credentials_secret, data)
        try:
            yield self.vaults.keys(vault_url, credential)
        finally:
            await self.vaults.release(credential)
            await credential.close()

    @asynccontextmanager
    async def _container(
        self, namespace: str, container: BlobContainer
    ) -> AsyncIterator[ContainerClient]:
        if container.credentials_secret is None:
            rules = self.settings.default_identity_rules
            if not blob_allowed(rules, namespace, container.account_url, container.name):
                raise NotPermittedError(
                    f"namespace {namespace} may not use the operator's identity for blob "
                    f"container {container.account_url}/{container.name}; reference a "
                    "credentials Secret, or ask a cluster admin to allow it",
                    reason="IdentityNotAllowed",
                )
            client = container_client(
                container.account_url, container.name, credential=self.default_credential
            )
        else:
            data = await self._secret_data(namespace, container.credentials_secret)
            auth = credentials.blob_auth(container.credentials_secret, data)
            client = container_client(
                container.account_url,
                container.name,
                connection_string=auth.connection_string,
                sas_token=auth.sas_token,
            )
        async with client:
            yield client

    @asynccontextmanager
    async def store(self, namespace: str, destination: Destination) -> AsyncIterator[SnapshotStore]:
        """The snapshot store a KeyBackup's destination names."""
        if isinstance(destination, SecretDestination):
            yield self.secret_store
            return
        async with self._container(namespace, destination.container) as client:
            yield BlobSnapshotStore(client, destination.prefix)

    async def _destination_of(self, namespace: str, keybackup: str) -> Destination:
        """Where a KeyBackup keeps its snapshots; Secrets once the object is gone."""
        body = await self.kubernetes.read_custom_object(KEYBACKUP_PLURAL, namespace, keybackup)
        if body is None:
            return SecretDestination()
        try:
            return parse_spec(body.get("spec") or {}).destination
        except InvalidSpecError as error:
            raise InvalidSpecError(
                f"KeyBackup {keybackup} is invalid, so its snapshots cannot be found: "
                f"{error.message}"
            ) from None

    @asynccontextmanager
    async def opened_snapshot(
        self, namespace: str, source: SnapshotSource | BlobSnapshotSource
    ) -> AsyncIterator[OpenedSnapshot]:
        """The snapshot a KeyRestore names, ready to be read."""
        if isinstance(source, BlobSnapshotSource):
            async with self._container(namespace, source.container) as client:
                store = BlobSnapshotStore(client)
                manifest = await store.read_manifest_at(source.path)
                yield OpenedSnapshot(manifest, partial(store.read_artifact_at, source.path))
            return
        destination = await self._destination_of(namespace, source.keybackup)
        async with self.store(namespace, destination) as snapshots:
            manifest = choose_snapshot(
                await snapshots.list_snapshots(namespace, source.keybackup),
                source.snapshot,
                source.keybackup,
            )
            yield OpenedSnapshot(
                manifest,
                partial(snapshots.read_artifact, namespace, source.keybackup, manifest.snapshot_id),
            )

    async def close(self) -> None:
        await self.vaults.close()
        await self.default_credential.close()
        self.kubernetes.close()
