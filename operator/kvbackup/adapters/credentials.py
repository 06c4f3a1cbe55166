"""Azure credentials: the operator's own identity, or a service principal from a Secret."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from kvbackup.adapters.azure_errors import azure_errors
from kvbackup.adapters.http import SharedSession
from kvbackup.api.azure_clouds import CLOUDS, cloud_named, cloud_of_authority, cloud_of_host
from kvbackup.errors import InvalidSpecError, NotPermittedError

#: The keys a credentials Secret must hold.
SERVICE_PRINCIPAL_KEYS = ("tenantId", "clientId", "clientSecret")
#: The label, with the value "true", a Secret must carry to be used as credentials. Without
#: it, ``spec.credentials`` could name any Secret of the namespace (another application's
#: service principal, a backup pack) and have the operator use it, or describe it in
#: status; labelling takes the right to update that Secret, not merely to create objects.
CREDENTIALS_LABEL = "kvbackup.io/credentials"


def not_labelled(namespace: str, secret_name: str) -> NotPermittedError:
    return NotPermittedError(
        f"Secret {secret_name} is not labelled {CREDENTIALS_LABEL}=true, so it is not used as "
        "credentials; if it is meant to be, label it: kubectl label secret "
        f"{secret_name} -n {namespace} {CREDENTIALS_LABEL}=true",
        reason="CredentialsNotLabelled",
    )


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


def default_credential(service_url: str, http: SharedSession) -> AsyncTokenCredential:
    """Workload identity on AKS, managed identity, or environment variables, in that
    spirit, signing in where ``own_authority`` says for ``service_url``; its token requests
    go through ``http`` (the process's one TLS context)."""
    authority = own_authority(service_url, os.environ)
    where = {"authority": authority} if authority else {}
    return FailingFast(DefaultAzureCredential(transport=http.transport(), **where))


class OwnIdentity:
    """The operator's own identity: one credential per authority it signs in at, made
    when first needed (most operators need one), all closed together."""

    def __init__(self, http: SharedSession) -> None:
        self._http = http
        self._by_authority: dict[str | None, AsyncTokenCredential] = {}

    def for_service(self, service_url: str) -> AsyncTokenCredential:
        authority = own_authority(service_url, os.environ)
        credential = self._by_authority.get(authority)
        if credential is None:
            credential = default_credential(service_url, self._http)
            self._by_authority[authority] = credential
        return credential

    async def close(self) -> None:
        for credential in self._by_authority.values():
            await credential.close()


def own_authority(service_url: str, environment: Mapping[str, str]) -> str | None:
    """Where the operator's own identity signs in to reach ``service_url``: the
    environment's AZURE_AUTHORITY_HOST when set (the AKS workload identity webhook sets it),
    else the authority of the cloud serving the URL's host; None: azure-identity's default."""
    if environment.get("AZURE_AUTHORITY_HOST"):
        return None
    cloud = cloud_of_host(urlsplit(service_url).hostname or "")
    return cloud.authority_host if cloud is not None else None


def secret_authority(secret_name: str, data: Mapping[str, bytes], service_url: str) -> str | None:
    """Where a credentials Secret's service principal signs in: the cloud its ``cloud`` or
    ``authorityHost`` names, else the cloud serving ``service_url``'s host; None (the public
    cloud's, or AZURE_AUTHORITY_HOST) for a host of no known cloud, such as an emulator."""
    if data.get("cloud"):
        named = cloud_named(_text(secret_name, data, "cloud"))
        if named is None:
            raise _invalid(secret_name, "cloud", f"one of {', '.join(c.name for c in CLOUDS)}")
        return named.authority_host
    if data.get("authorityHost"):
        authority = cloud_of_authority(_text(secret_name, data, "authorityHost"))
        if authority is None:
            hosts = ", ".join(c.authority_host for c in CLOUDS)
            raise _invalid(secret_name, "authorityHost", f"one of {hosts}")
        return authority.authority_host
    cloud = cloud_of_host(urlsplit(service_url).hostname or "")
    return cloud.authority_host if cloud is not None else None


def service_principal(
    secret_name: str, data: Mapping[str, bytes], service_url: str, http: SharedSession
) -> AsyncTokenCredential:
    """A client-secret credential from Secret data, signing in at the authority of its
    cloud (``secret_authority``) through ``http``; errors name keys, never values."""
    texts = {key: _text(secret_name, data, key) for key in SERVICE_PRINCIPAL_KEYS if key in data}
    missing = [key for key in SERVICE_PRINCIPAL_KEYS if not texts.get(key)]
    if missing:
        raise InvalidSpecError(
            f"credentials Secret {secret_name} lacks {', '.join(missing)} "
            f"(it needs {', '.join(SERVICE_PRINCIPAL_KEYS)})",
            reason="InvalidCredentials",
        )
    authority = secret_authority(secret_name, data, service_url)
    try:
        credential = ClientSecretCredential(
            tenant_id=texts["tenantId"],
            client_id=texts["clientId"],
            client_secret=texts["clientSecret"],
            transport=http.transport(),
            **({"authority": authority} if authority else {}),
        )
    except ValueError:  # azure-identity's word for a tenant id it would not send
        raise _invalid(secret_name, "tenantId", "a tenant's id or domain") from None
    return FailingFast(credential)


def _text(secret_name: str, data: Mapping[str, bytes], key: str) -> str:
    try:
        return data[key].decode().strip()
    except UnicodeDecodeError:
        raise _invalid(secret_name, key, "UTF-8 text") from None


def _invalid(secret_name: str, key: str, wanted: str) -> InvalidSpecError:
    """Names the key at fault, never its value."""
    return InvalidSpecError(
        f"credentials Secret {secret_name}: {key} must be {wanted}", reason="InvalidCredentials"
    )


class BlobAuth(NamedTuple):
    connection_string: str | None = None
    sas_token: str | None = None


def malformed_connection_string(secret_name: str) -> InvalidSpecError:
    """The storage SDK could not parse the Secret's connection string; its own message is
    not passed on, in case a later version quotes the string."""
    return InvalidSpecError(
        f"blob credentials Secret {secret_name}: its connectionString is malformed (it needs "
        "BlobEndpoint or AccountName, and AccountKey or SharedAccessSignature)",
        reason="InvalidCredentials",
    )


def blob_auth(secret_name: str, data: Mapping[str, bytes]) -> BlobAuth:
    """A connection string or a SAS token for a blob container, from Secret data."""
    if data.get("connectionString"):
        return BlobAuth(connection_string=_text(secret_name, data, "connectionString"))
    if data.get("sasToken"):
        return BlobAuth(sas_token=_text(secret_name, data, "sasToken"))
    raise InvalidSpecError(
        f"blob credentials Secret {secret_name} needs connectionString or sasToken",
        reason="InvalidCredentials",
    )
