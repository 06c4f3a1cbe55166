"""Credentials from a Secret: a refusal names the Secret's keys and the label to add, never
a value the Secret holds."""

from __future__ import annotations

import pytest

from kvbackup.adapters import credentials
from kvbackup.errors import InvalidSpecError

SECRET_VALUE = "s3cr3t-value"


def _refusal(data: dict[str, bytes]) -> InvalidSpecError:
    with pytest.raises(InvalidSpecError) as refused:
        credentials.service_principal("sp", data)
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


def test_a_tenant_id_the_identity_library_would_not_send_is_refused_naming_the_key() -> None:
    refused = _refusal(
        {"tenantId": f"{SECRET_VALUE}/..".encode(), "clientId": b"c", "clientSecret": b"s"}
    )

    assert refused.message == "credentials Secret sp: tenantId must be a tenant's id or domain"


async def test_a_complete_service_principal_gives_a_credential() -> None:
    credential = credentials.service_principal(
        "sp", {"tenantId": b"tenant\n", "clientId": b"client", "clientSecret": b"secret"}
    )

    await credential.close()


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
