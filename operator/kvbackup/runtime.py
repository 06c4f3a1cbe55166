"""The composition root: the shared clients, built once at start-up and closed at
clean-up, and the vaults and stores they open for one object's namespace."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from azure.storage.blob.aio import ContainerClient

from kvbackup.adapters import credentials
from kvbackup.adapters.blob_store import BlobSnapshotStore, container_client
from kvbackup.adapters.http import SharedSession, tls_context
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.adapters.kubernetes import KubernetesApi, connect
from kvbackup.adapters.leases import KubernetesLeases
from kvbackup.adapters.metrics import OperatorMetrics
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.api import KEYBACKUP_PLURAL
from kvbackup.api.fields import BlobContainer
from kvbackup.api.keybackup import Destination, SecretDestination, parse_destinations
from kvbackup.api.keyrestore import BlobSnapshotSource
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError, MissingReferenceError, NotFoundError
from kvbackup.services.leadership import Leadership, Timing
from kvbackup.services.ports import Clock, OpenedSnapshot, SnapshotStore, VaultItems, utc_now
from kvbackup.services.tenancy import (
    require_blob_allowed,
    require_manifest_namespace_allowed,
    require_restore_source_allowed,
    require_vault_allowed,
)


def replica_identity() -> str:
    """The pod's name (its host name) and the process: a container restarted in the same
    pod (where the image's entry point is always process 1) takes its own lease back at
    once, and two processes on one host never share one."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Runtime:
    """Implements the services' ``SnapshotStores`` port, and opens vaults."""

    settings: Settings
    kubernetes: KubernetesApi
    vaults: KeyVaultClients
    own_identity: credentials.OwnIdentity
    metrics: OperatorMetrics
    #: What every blob container client sends through.
    blob_http: SharedSession = field(default_factory=SharedSession)
    #: What every token request sends through.
    identity_http: SharedSession = field(default_factory=lambda: SharedSession(trust_env=True))
    clock: Clock = field(default=utc_now)

    @classmethod
    def create(cls, settings: Settings, metrics: OperatorMetrics) -> Runtime:
        api = KubernetesApi(connect())
        # One TLS context for every Azure call: Key Vault, Blob Storage, token requests.
        tls = tls_context(settings.ca_bundle)
        identity_http = SharedSession(tls, trust_env=True)
        return cls(
            settings=settings,
            kubernetes=api,
            vaults=KeyVaultClients(settings, metrics),
            own_identity=credentials.OwnIdentity(identity_http),
            metrics=metrics,
            blob_http=SharedSession(tls),
            identity_http=identity_http,
        )

    async def _secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        try:
            data = await self.kubernetes.read_secret_data(
                namespace, name, label=credentials.CREDENTIALS_LABEL
            )
        except NotFoundError:
            raise MissingReferenceError(
                f"credentials Secret {name} not found in namespace {namespace}",
                reason="CredentialsNotFound",
            ) from None
        if data is None:
            raise credentials.not_labelled(namespace, name)
        return data

    @asynccontextmanager
    async def vault(
        self, namespace: str, vault_url: str, credentials_secret: str | None
    ) -> AsyncIterator[VaultItems]:
        """The vault's items under the object's own credentials, or the operator's identity."""
        if credentials_secret is None:
            require_vault_allowed(self.settings.default_identity_rules, namespace, vault_url)
            yield self.vaults.vault(vault_url, self.own_identity.for_service(vault_url), namespace)
            return
        data = await self._secret_data(namespace, credentials_secret)
        credential = credentials.service_principal(
            credentials_secret, data, vault_url, self.identity_http
        )
        try:
            yield self.vaults.vault(vault_url, credential, namespace)
        finally:
            await self.vaults.release(credential)
            await credential.close()

    @asynccontextmanager
    async def _container(
        self, namespace: str, container: BlobContainer
    ) -> AsyncIterator[ContainerClient]:
        if container.credentials_secret is None:
            require_blob_allowed(
                self.settings.default_identity_rules,
                namespace,
                container.account_url,
                container.name,
            )
            client = container_client(
                container.account_url,
                container.name,
                hosts=self.settings.blob_hosts,
                credential=self.own_identity.for_service(container.account_url),
                http=self.blob_http,
            )
        else:
            data = await self._secret_data(namespace, container.credentials_secret)
            auth = credentials.blob_auth(container.credentials_secret, data)
            try:
                client = container_client(
                    container.account_url,
                    container.name,
                    hosts=self.settings.blob_hosts,
                    connection_string=auth.connection_string,
                    sas_token=auth.sas_token,
                    http=self.blob_http,
                )
            except ValueError:  # the SDK's word for a connection string it cannot parse
                raise credentials.malformed_connection_string(
                    container.credentials_secret
                ) from None
        async with client:
            yield client

    @asynccontextmanager
    async def store(self, namespace: str, destination: Destination) -> AsyncIterator[SnapshotStore]:
        """The snapshot store a KeyBackup's destination names."""
        if isinstance(destination, SecretDestination):
            # One per run: a Secret store gathers the run's keys into packs.
            yield SecretSnapshotStore(self.kubernetes)
            return
        async with self._container(namespace, destination.container) as client:
            yield BlobSnapshotStore(client, destination.prefix)

    @asynccontextmanager
    async def snapshot_at_path(
        self, namespace: str, source: BlobSnapshotSource
    ) -> AsyncIterator[OpenedSnapshot]:
        """The snapshot at a blob path. Read with the operator's identity, it must be the
        namespace's own (or one a rule lets it restore): its folder is checked before
        anything is read, and the namespace its manifest records once that is read."""
        if source.url is not None:  # names a host of its own, refused before anything opens
            self.settings.blob_hosts.check(source.url, "snapshot path")
        rules = self.settings.default_identity_rules
        own_identity = source.container.credentials_secret is None
        if own_identity:
            require_restore_source_allowed(rules, namespace, source)
        async with self._container(namespace, source.container) as client:
            snapshot = await BlobSnapshotStore(client).open_at(source.path)
            if own_identity:
                recorded = snapshot.manifest.keybackup.namespace
                require_manifest_namespace_allowed(rules, namespace, source.container, recorded)
            yield snapshot

    async def destinations_of(
        self, namespace: str, keybackup: str
    ) -> dict[str, Destination] | None:
        body = await self.kubernetes.read_custom_object(KEYBACKUP_PLURAL, namespace, keybackup)
        if body is None:
            return None
        try:
            return parse_destinations(body.get("spec") or {})
        except InvalidSpecError as error:
            raise InvalidSpecError(
                f"KeyBackup {keybackup} is invalid, so its snapshots cannot be found: "
                f"{error.message}"
            ) from None

    def leadership(self) -> Leadership:
        """This replica's part in electing the one that runs backups and restores."""
        settings = self.settings
        timing = Timing(settings.leader_election_lease_seconds)
        leases = (
            KubernetesLeases(
                self.kubernetes,
                settings.leader_election_namespace,
                settings.leader_election_lease,
                timeout=timing.retry_period,
            )
            if settings.leader_election_namespace
            else None
        )
        return Leadership(leases, replica_identity(), timing, self.clock)

    async def close(self) -> None:
        await self.vaults.close()
        await self.blob_http.close()
        await self.own_identity.close()
        await self.identity_http.close()
        self.kubernetes.close()
