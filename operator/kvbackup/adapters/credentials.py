"""Azure credentials: the operator's own identity, or a service principal from a Secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from kvbackup.errors import InvalidSpecError

#: The keys a credentials Secret must hold.
SERVICE_PRINCIPAL_KEYS = ("tenantId", "clientId", "clientSecret")


def default_credential() -> AsyncTokenCredential:
    """Workload identity on AKS, managed identity, or environment variables, in that spirit."""
    return DefaultAzureCredential()


def service_principal(secret_name: str, data: Mapping[str, bytes]) -> AsyncTokenCredential:
    """A client-secret credential from Secret data; errors name keys, never values."""
    missing = [key for key in SERVICE_PRINCIPAL_KEYS if not data.get(key)]
    if missing:
        raise InvalidSpecError(
            f"credentials Secret {secret_name} lacks {', '.join(missing)} "
            f"(it needs {', '.join(SERVICE_PRINCIPAL_KEYS)})",
            reason="InvalidCredentials",
        )
    return ClientSecretCredential(
        tenant_id=data["tenantId"].decode().strip(),
        client_id=data["clientId"].decode().strip(),
        client_secret=data["clientSecret"].decode().strip(),
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
