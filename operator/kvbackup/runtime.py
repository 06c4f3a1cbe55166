"""The shared clients, built once at start-up and closed at clean-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential

from kvbackup.adapters import credentials
from kvbackup.adapters.keyvault import KeyVaultClients
from kvbackup.adapters.kubernetes import KubernetesApi, connect
from kvbackup.adapters.secret_store import SecretSnapshotStore
from kvbackup.config import Settings
from kvbackup.errors import MissingReferenceError, NotFoundError
from kvbackup.services.ports import SnapshotStore, VaultKeys


@dataclass
class Runtime:
    settings: Settings
    kubernetes: KubernetesApi
    store: SnapshotStore
    vaults: KeyVaultClients
    default_credential: AsyncTokenCredential

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        api = KubernetesApi(connect())
        return cls(
            settings=settings,
            kubernetes=api,
            store=SecretSnapshotStore(api),
            vaults=KeyVaultClients(settings),
            default_credential=credentials.default_credential(),
        )

    @asynccontextmanager
    async def vault(
        self, namespace: str, vault_url: str, credentials_secret: str | None
    ) -> AsyncIterator[VaultKeys]:
        """The vault's keys under the object's own credentials, or the operator's identity."""
        if credentials_secret is None:
            yield self.vaults.keys(vault_url, self.default_credential)
            return
        try:
            data = await self.kubernetes.read_secret_data(namespace, credentials_secret)
        except NotFoundError:
            raise MissingReferenceError(
                f"credentials Secret {credentials_secret} not found in namespace {namespace}",
                reason="CredentialsNotFound",
            ) from None
        credential = credentials.service_principal(credentials_secret, data)
        try:
            yield self.vaults.keys(vault_url, credential)
        finally:
            await self.vaults.release(credential)
            await credential.close()

    async def close(self) -> None:
        await self.vaults.close()
        await self.default_credential.close()
        self.kubernetes.close()
