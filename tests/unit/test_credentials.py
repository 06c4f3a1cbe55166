"""Credentials from a Secret: a refusal names the Secret's keys and the label to add, never
a value the Secret holds."""

from __future__ import annotations

import pytest

from kvbackup.adapters import credentials
from kvbackup.adapters.http import SharedSession
from kvbackup.errors import InvalidSpecError

SECRET_VALUE = "s3cr3t-value"
VAULT = "https://payments.vault.azure.net"
PRINCIPAL = {"tenantId": b"tenant", "clientId": b"client", "clientSecret": b"secret"}


def _refusal(data: dict[str, bytes]) -> InvalidSpecError:
    with pytest.raises(InvalidSpecError) as refused:
        credentials.service_principal("sp", data, VAULT, SharedSession())
    assert refused.value.reason == "InvalidCredentials"
    assert SECRET_VALUE not in refused.value.message
    return refused.value


def test_a_service_principal_lacking_keys_is_refused_naming_them() -> None:
    refused = _refusal({"tenantId": SECRET_VALUE.encode(), "clientId": b"  \n"})

    assert "credentials Secret sp lacks clientId, clientSecret" in refused.message


def test_a_value_that_is_not_text_is_refused_naming_its_key() -> None:
    refused = _refusal(
        {"tenantId": b"t", "clientId": b"\xff" + SECRET_VALUE.encode(), "clientSecret": b"s"}
    )

    assert refused.message == "credentials Secret sp: clientId must be UTF-8 text"


async def test_a_tenant_id_the_identity_library_would_not_send_is_refused_naming_the_key() -> None:
    refused = _refusal(
        {"tenantId": f"{SECRET_VALUE}/..".encode(), "clientId": b"c", "clientSecret": b"s"}
    )

    assert refused.message == "credentials Secret sp: tenantId must be a tenant's id or domain"


async def test_a_complete_service_principal_gives_a_credential() -> None:
    credential = credentials.service_principal(
        "sp",
        {"tenantId": b"tenant\n", "clientId": b"client", "clientSecret": b"secret"},
        VAULT,
        SharedSession(),
    )

    await credential.close()


# Sovereign clouds: each signs in at its own authority, and a service principal of one
# signing in at another's fails; the authority follows the Secret's word, else the vault.

CHINA, GOVERNMENT, PUBLIC = (
    "login.chinacloudapi.cn",
    "login.microsoftonline.us",
    "login.microsoftonline.com",
)


@pytest.mark.parametrize(
    ("service_url", "authority"),
    [
        ("https://payments.vault.azure.net", PUBLIC),
        ("https://pool.managedhsm.azure.net", PUBLIC),
        ("https://payments.vault.azure.cn", CHINA),
        ("https://pool.managedhsm.azure.cn", CHINA),
        ("https://payments.vault.usgovcloudapi.net", GOVERNMENT),
        ("https://pool.managedhsm.usgovcloudapi.net:443", GOVERNMENT),
        ("https://PAYMENTS.VAULT.USGOVCLOUDAPI.NET/", GOVERNMENT),
        ("https://backups.blob.core.chinacloudapi.cn", CHINA),
        ("https://backups.blob.core.usgovcloudapi.net", GOVERNMENT),
        ("https://backups.z12.blob.storage.azure.net", PUBLIC),
        ("https://127.0.0.1:8443", None),
        ("https://vault.azure.cn.example.com", None),
    ],
)
def test_without_a_word_from_the_secret_the_authority_follows_the_services_cloud(
    service_url: str, authority: str | None
) -> None:
    assert credentials.secret_authority("sp", PRINCIPAL, service_url) == authority
    assert credentials.own_authority(service_url, {}) == authority


@pytest.mark.parametrize(
    ("said", "authority"),
    [
        ({"cloud": b"AzureChinaCloud"}, CHINA),
        ({"cloud": b"azureusgovernment\n"}, GOVERNMENT),
        ({"cloud": b"AzureCloud"}, PUBLIC),
        ({"authorityHost": b"https://login.microsoftonline.us/"}, GOVERNMENT),
        ({"authorityHost": b"login.chinacloudapi.cn"}, CHINA),
    ],
)
def test_a_secret_naming_its_cloud_or_authority_signs_in_there_whatever_the_vault(
    said: dict[str, bytes], authority: str
) -> None:
    data = {**PRINCIPAL, **said}

    assert credentials.secret_authority("sp", data, VAULT) == authority
    assert credentials.secret_authority("sp", data, "https://127.0.0.1:8443") == authority


async def test_the_service_principal_is_built_with_its_clouds_authority() -> None:
    credential = credentials.service_principal(
        "sp", PRINCIPAL, "https://kv.vault.azure.cn", SharedSession()
    )
    try:
        assert credential._credential._client._authority == f"https://{CHINA}"  # type: ignore[attr-defined]
    finally:
        await credential.close()


@pytest.mark.parametrize(
    ("said", "key"),
    [
        ({"cloud": b"AzureGermanCloud"}, "cloud"),
        ({"authorityHost": f"https://{SECRET_VALUE}.example.com".encode()}, "authorityHost"),
    ],
)
async def test_a_cloud_or_authority_of_no_known_cloud_is_refused_naming_the_key(
    said: dict[str, bytes], key: str
) -> None:
    refused = _refusal({**PRINCIPAL, **said})

    assert refused.message.startswith(f"credentials Secret sp: {key} must be one of")
    assert "AzureChinaCloud" in refused.message or CHINA in refused.message


def test_the_operators_own_identity_signs_in_where_azure_authority_host_says_when_set() -> None:
    environment = {"AZURE_AUTHORITY_HOST": f"https://{GOVERNMENT}"}

    # None: azure-identity reads AZURE_AUTHORITY_HOST itself.
    assert credentials.own_authority("https://kv.vault.azure.cn", environment) is None


def test_blob_credentials_take_the_connection_string_before_a_sas_token() -> None:
    auth = credentials.blob_auth("storage", {"connectionString": b" cs \n", "sasToken": b"sas"})

    assert auth == credentials.BlobAuth(connection_string="cs")
    assert credentials.blob_auth("storage", {"sasToken": b"sas"}) == credentials.BlobAuth(
        sas_token="sas"
    )


def test_blob_credentials_without_either_are_refused_naming_both_keys() -> None:
    with pytest.raises(InvalidSpecError, match="needs connectionString or sasToken") as refused:
        credentials.blob_auth("storage", {"accountKey": SECRET_VALUE.encode()})

    assert SECRET_VALUE not in refused.value.message


def test_an_unlabelled_secret_is_refused_with_the_label_and_the_command_that_adds_it() -> None:
    refused = credentials.not_labelled("team-a", "app-sp")

    assert refused.reason == "CredentialsNotLabelled"
    assert "Secret app-sp is not labelled kvbackup.io/credentials=true" in refused.message
    assert "kubectl label secret app-sp -n team-a kvbackup.io/credentials=true" in (refused.message)
