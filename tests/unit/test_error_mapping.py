"""Azure and Kubernetes errors mapped onto the project's taxonomy, and their retry delays."""

from __future__ import annotations

import datetime
import json
import ssl
from typing import Any, ClassVar, cast

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from kubernetes.client.exceptions import ApiException

from kvbackup import errors
from kvbackup.adapters.azure_errors import map_azure_error, parse_retry_after
from kvbackup.adapters.kubernetes import map_api_error
from kvbackup.services.retry_policy import LONGEST_RETRY_AFTER_SECONDS


def http_error(status_code: int) -> HttpResponseError:
    error = HttpResponseError(message="the service said no", response=None)
    error.status_code = status_code
    return error


def service_refusal(status_code: int) -> ClientAuthenticationError:
    """What the SDKs raise on a 401 from Key Vault, Storage or Entra ID: it has a status."""
    error = ClientAuthenticationError(message="bad token")
    error.status_code = status_code
    return error


#: What DefaultAzureCredential raises when none of its sources gives a token: no status.
NO_IDENTITY = ClientAuthenticationError(
    message="DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
    "Attempted credentials:\n\tManagedIdentityCredential: Cannot connect to host"
)


class ThrottledResponse:
    """The parts of an SDK response that HttpResponseError and the mapping read."""

    status_code = 429
    reason = "Too Many Requests"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "42"}

    def text(self) -> str:
        return ""


@pytest.mark.parametrize(
    ("error", "mapped", "temporary", "reason"),
    [
        pytest.param(http_error(403), errors.AccessDeniedError, True, "AccessDenied", id="403"),
        pytest.param(http_error(408), errors.TransientError, True, "Unavailable", id="408"),
        pytest.param(http_error(409), errors.ConflictError, False, "Conflict", id="409"),
        pytest.param(http_error(503), errors.TransientError, True, "Unavailable", id="503"),
        pytest.param(http_error(400), errors.KvBackupError, False, "RequestRejected", id="400"),
        pytest.param(
            ResourceNotFoundError(message="no such key"),
            errors.NotFoundError,
            False,
            "NotFound",
            id="resource-not-found",
        ),
        pytest.param(
            service_refusal(401),
            errors.AccessDeniedError,
            True,
            "AccessDenied",
            id="client-authentication",
        ),
        pytest.param(
            NO_IDENTITY,
            errors.CredentialUnavailableError,
            True,
            "CredentialUnavailable",
            id="no-identity",
        ),
        pytest.param(
            ServiceRequestError(message="name resolution failed"),
            errors.TransientError,
            True,
            "VaultUnreachable",
            id="service-request",
        ),
    ],
)
def test_an_azure_error_maps_to_its_class_temporariness_and_reason(
    error: Exception, mapped: type[errors.KvBackupError], temporary: bool, reason: str
) -> None:
    result = map_azure_error(error, "back up key k1")

    assert type(result) is mapped
    assert (result.temporary, result.reason) == (temporary, reason)
    assert result.message.startswith("back up key k1: ")


@pytest.mark.parametrize(
    ("error", "mapped", "temporary"),
    [
        pytest.param(http_error(403), errors.ItemAccessDeniedError, False, id="403"),
        pytest.param(http_error(401), errors.AccessDeniedError, True, id="401"),
        pytest.param(
            service_refusal(401), errors.AccessDeniedError, True, id="client-authentication"
        ),
    ],
)
def test_only_a_403_about_one_item_refuses_that_item_alone(
    error: Exception, mapped: type[errors.KvBackupError], temporary: bool
) -> None:
    result = map_azure_error(error, "back up secret payroll", about_one_item=True)

    assert type(result) is mapped
    assert result.temporary is temporary
    assert result.reason == "AccessDenied"


def test_a_missing_identity_says_on_one_line_what_to_configure() -> None:
    result = map_azure_error(NO_IDENTITY, "get an Azure token for https://vault.azure.net")

    assert "\n" not in result.message
    assert "DefaultAzureCredential" not in result.message
    assert "workload identity" in result.message
    assert "credentials Secret" in result.message


def _refused_certificate() -> ServiceRequestError:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "self-signed certificate in certificate chain"
    try:
        raise ServiceRequestError("Cannot connect to host") from verify
    except ServiceRequestError as error:
        return error


@pytest.mark.parametrize(
    "error",
    [
        _refused_certificate(),
        # azure-identity tells of an unreachable token endpoint in words of its own.
        ClientAuthenticationError(
            "ManagedIdentityCredential: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
            "failed: unable to get local issuer certificate"
        ),
    ],
    ids=["a vault or storage call", "a token request"],
)
def test_a_refused_tls_certificate_names_the_setting_that_trusts_its_ca(error: Exception) -> None:
    result = map_azure_error(error, "back up key signing")

    assert result.reason == "CertificateNotTrusted"
    assert result.temporary
    assert "KVBACKUP_CA_BUNDLE" in result.message
    assert result.message.startswith("back up key signing: the service's TLS certificate")


def test_a_throttled_azure_answer_keeps_the_retry_after_header() -> None:
    error = HttpResponseError(message="slow down", response=cast(Any, ThrottledResponse()))

    result = map_azure_error(error, "list keys")

    assert isinstance(result, errors.ThrottledError)
    assert result.retry_after == 42.0
    assert result.temporary is True


THROTTLED_AT = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("42", 42.0, id="seconds"),
        pytest.param(" 7 ", 7.0, id="padded"),
        pytest.param("0.5", 0.5, id="a-fraction"),
        pytest.param("1000000000", LONGEST_RETRY_AFTER_SECONDS, id="a-billion-is-clamped"),
        pytest.param("Wed, 25 Nov 2026 12:00:30 GMT", 30.0, id="an-http-date"),
        pytest.param("Wed, 25 Nov 2026 13:00:00 GMT", LONGEST_RETRY_AFTER_SECONDS, id="far-date"),
        pytest.param("Wed, 25 Nov 2026 11:00:00 GMT", 0.0, id="a-date-past-means-now"),
    ],
)
def test_a_retry_after_is_read_as_seconds_from_now_and_clamped(header: str, seconds: float) -> None:
    assert parse_retry_after(header, THROTTLED_AT) == seconds


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("inf", id="inf"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("nan", id="nan"),
        pytest.param("-1", id="negative"),
        pytest.param("1e9", id="an-exponent"),
        pytest.param("1_000", id="underscores"),
        pytest.param("+5", id="a-sign"),
        pytest.param("\u0665", id="a-non-ascii-digit"),
        pytest.param("5\n", id="a-trailing-newline"),
        pytest.param("Wed, 25 Nov 2026 12:00:30 -0000", id="a-date-without-a-zone"),
        pytest.param("soon", id="words"),
        pytest.param("9" * 100, id="too-long-to-read"),
        pytest.param("", id="empty"),
        pytest.param(None, id="absent"),
    ],
)
def test_a_retry_after_that_is_no_finite_delay_counts_as_none(header: str | None) -> None:
    assert parse_retry_after(header, THROTTLED_AT) is None


def test_an_error_outside_the_azure_taxonomy_is_raised_unchanged() -> None:
    bug = KeyError("programming error")

    with pytest.raises(KeyError) as caught:
        map_azure_error(bug, "list keys")

    assert caught.value is bug


@pytest.mark.parametrize(
    ("status", "mapped", "temporary", "reason"),
    [
        pytest.param(404, errors.NotFoundError, False, "NotFound", id="404"),
        pytest.param(403, errors.AccessDeniedError, True, "AccessDenied", id="403"),
        pytest.param(413, errors.TooLargeError, False, "TooLarge", id="413"),
        pytest.param(422, errors.InvalidSpecError, False, "InvalidSpec", id="422"),
        pytest.param(429, errors.TransientError, True, "KubernetesUnavailable", id="429"),
        pytest.param(400, errors.KvBackupError, False, "KubernetesRejected", id="400"),
    ],
)
def test_a_kubernetes_api_error_maps_to_its_class_temporariness_and_reason(
    status: int, mapped: type[errors.KvBackupError], temporary: bool, reason: str
) -> None:
    result = map_api_error(ApiException(status=status, reason="Nope"), "write Secret ns/s")

    assert type(result) is mapped
    assert (result.temporary, result.reason) == (temporary, reason)
    assert result.message == f"write Secret ns/s: HTTP {status} Nope"


def test_a_connection_broken_mid_answer_is_temporary_not_a_rejection() -> None:
    error = HttpResponseError(message="IncompleteRead", response=None)
    error.status_code = None
    mapped = map_azure_error(error, "back up key k")
    assert mapped.temporary
    assert mapped.reason == "Unavailable"


def test_the_api_servers_own_explanation_is_kept_and_a_secret_too_large_says_so() -> None:
    explanation = 'Secret "kb-s" is invalid: data: Too long: may not be more than 1048576 bytes'
    body = json.dumps({"kind": "Status", "message": explanation})

    refusal = ApiException(status=422, reason="Unprocessable Entity")
    refusal.body = body

    result = map_api_error(refusal, "write Secret ns/kb-s")

    assert type(result) is errors.TooLargeError
    assert result.reason == "TooLarge"
    assert result.message == f"write Secret ns/kb-s: HTTP 422 Unprocessable Entity: {explanation}"


def test_a_services_message_is_kept_on_one_line_and_bounded() -> None:
    error = http_error(400)
    error.reason = "Bad Request\nErrorCode:InvalidInput\n" + "x" * 5000

    result = map_azure_error(error, "list blobs")

    assert result.message.startswith("list blobs: HTTP 400: Bad Request ErrorCode:InvalidInput x")
    assert len(result.message) == len("list blobs: ") + errors.FOREIGN_TEXT_LIMIT


def test_an_authentication_failure_keeps_a_bounded_part_of_what_the_service_said() -> None:
    result = map_azure_error(ClientAuthenticationError(message="no " * 1000), "read key k")

    assert len(result.message) <= len("read key k: authentication failed: ") + (
        errors.FOREIGN_TEXT_LIMIT
    )


def test_a_redirect_is_a_rejection_that_says_it_was_not_followed() -> None:
    result = map_azure_error(http_error(307), "back up key k")

    assert result.reason == "RequestRejected"
    assert result.message.endswith("(a redirect: not followed, requests go only to allowed hosts)")


def test_the_api_servers_explanation_is_bounded() -> None:
    refusal = ApiException(status=422, reason="Unprocessable Entity")
    refusal.body = json.dumps({"kind": "Status", "message": "y" * 5000})

    result = map_api_error(refusal, "write Secret ns/s")

    kept = "y" * errors.FOREIGN_TEXT_LIMIT
    assert result.message == f"write Secret ns/s: HTTP 422 Unprocessable Entity: {kept}"
