"""Azure credentials: the operator's own identity, or a service principal from a Secret."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, NamedTuple

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from kvbackup.adapters.azure_errors import azure_errors
from kvbackup.errors import InvalidSpecError

#: The keys a credentials Secret must hold.
SERVICE_PRINCIPAL_KEYS = ("tenantId", "clientId", "clientSecret")


class FailingFast(AsyncTokenCredential):
    """A credential whose failures leave it already mapped onto the project's taxonomy.

    The Blob Storage SDK retries any Azure error raised while it signs a request, a
    missing identity included: four attempts over about a minute and a half, each of which
    again probes every source of DefaultAzureCredential. Mapped here, the error is none
    of the SDK's, so it fails the request at once, with its own reason.
    """

    def __init__(self, credential: AsyncTokenCredential) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with azure_errors(f"get an Azure token for {' '.join(scopes)}"):
            return await self._credential.get_token(*scopes, **kwargs)

    async def close(self) -> None:
        await self._credential.close()

    async def __aenter__(self) -> FailingFast:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


def default_credential() -> AsyncTokenCredential:
    """Workload identity on AKS, managed identity, or environment variables, in that spirit."""
    return FailingFast(DefaultAzureCredential())


def service_principal(secret_name: str, data: Mapping[str, bytes]) -> AsyncTokenCredential:
    """A client-secret credential from Secret data; errors name keys, never values."""
    missing = [key for key in SERVICE_PRINCIPAL_KEYS if not data.get(key)]
    if missing:
        raise InvalidSpecError(
            f"credentials Secret {secret_name} lacks {', '.join(missing)} "
            f"(it needs {', '.join(SERVICE_PRINCIPAL_KEYS)})",
            reason="InvalidCredentials",
        )
    return FailingFast(
        ClientSecretCredential(
            tenant_id=data["tenantId"].decode().strip(),
            client_id=data["clientId"].decode().strip(),
            client_secret=data["clientSecret"].decode().strip(),
        )
    )


class BlobAuth(NamedTuple):
    connection_string: str | None = None
    sas_token: str | None = None


def blob_auth(secret_name: str, data: Mapping[str, bytes]) -> BlobAuth:
    """A connection string or a SAS token for a blob container, from Secret data."""
    if data.get("connectionString"):
        return BlobAuth(connection_string=data["connectionString"].decode().strip())
    if data.get("sasToken"):
        return BlobAuth(sas_token=data["sasToken"].decode().strip())
    raise InvalidSpecError(
        f"blob credentials Secret {secret_name} needs connectionString or sasToken",
        reason="InvalidCredentials",
    )
