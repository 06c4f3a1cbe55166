"""Mapping of Azure SDK exceptions (Key Vault, Blob Storage, identity) to the project's
taxonomy. What a service or the SDK said is kept only through ``foreign_text``: bounded,
and, since requests go only to allowed hosts and redirects are not followed, only ever
from a host the allow-lists name."""

from __future__ import annotations

import datetime
import email.utils
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from kvbackup import errors
from kvbackup.adapters.http import CA_BUNDLE_SETTING
from kvbackup.services.retry_policy import bounded_retry_after

#: Retry-After's delay-seconds (RFC 9110 allows digits only; a fraction is tolerated).
RETRY_AFTER_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
#: Longer than any delay-seconds or HTTP-date: such a header is not parsed at all.
RETRY_AFTER_MAX_LENGTH = 64


def parse_retry_after(header: str | None, now: datetime.datetime) -> float | None:
    """Seconds to wait from ``now`` by a Retry-After header (delay-seconds or an HTTP-date),
    clamped by ``bounded_retry_after``; None when absent or not of either form (nan, inf,
    negative, 1e9, a date without a zone). A date already past means now: 0."""
    if not header or len(header) > RETRY_AFTER_MAX_LENGTH:
        return None
    text = header.strip(" \t")  # HTTP's optional white space, nothing else
    if RETRY_AFTER_SECONDS.fullmatch(text):
        return bounded_retry_after(float(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return bounded_retry_after(max(0.0, (moment - now).total_seconds()))


def _retry_after(error: HttpResponseError) -> float | None:
    response: Any = error.response  # the SDK types it without its headers
    header = response.headers.get("Retry-After") if response is not None else None
    return parse_retry_after(header, datetime.datetime.now(datetime.UTC))


def _service_message(error: HttpResponseError) -> str:
    """The service's own error text, bounded, never the request or response bodies."""
    if error.error is not None and error.error.message:
        return errors.foreign_text(
            f"{error.error.code or error.status_code}: {error.error.message}"
        )
    return errors.foreign_text(f"HTTP {error.status_code}: {error.reason or 'error'}")


#: What to configure when no identity answers, on one line for status, Events and the
#: command line (which shares the adapters, without objects of its own).
NO_IDENTITY = (
    "no Azure identity is available where this runs: give it a workload identity "
    "(AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE), a managed identity "
    "or a service principal (AZURE_CLIENT_SECRET), or name a credentials Secret in the "
    "object's spec"
)


def map_azure_error(
    error: Exception, what: str, *, about_one_item: bool = False
) -> errors.KvBackupError:
    """Translate one SDK exception raised while doing ``what`` (e.g. "back up secret x").

    ``about_one_item``: the call concerns one vault item (a key, a secret, a certificate),
    so a 403 may refuse that item alone (a role assignment scoped to it); a 401 never
    does, it refuses the identity itself.
    """
    if isinstance(error, errors.KvBackupError):
        return error
    untrusted = _untrusted_certificate(error)
    if untrusted is not None:
        return errors.TransientError(
            f"{what}: the service's TLS certificate is not trusted ({untrusted}); behind a "
            f"TLS-inspecting proxy or with a private CA, trust that CA in {CA_BUNDLE_SETTING}",
            reason="CertificateNotTrusted",
        )
    if isinstance(error, ResourceNotFoundError):
        return errors.NotFoundError(f"{what}: not found ({_service_message(error)})")
    if isinstance(error, ResourceExistsError):
        return errors.ConflictError(f"{what}: {_service_message(error)}")
    if isinstance(error, ClientAuthenticationError):
        if error.status_code is None:
            # Raised by the credential itself: no token service answered with a refusal
            # (DefaultAzureCredential found no identity, or its endpoint is unreachable).
            return errors.CredentialUnavailableError(f"{what}: {NO_IDENTITY}")
        return errors.AccessDeniedError(
            f"{what}: authentication failed: {errors.foreign_text(error.message)}"
        )
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        message = f"{what}: {_service_message(error)}"
        if status == 403 and about_one_item:
            return errors.ItemAccessDeniedError(message)
        if status == 403:
            return errors.AccessDeniedError(message)
        if status == 401:
            return errors.AccessDeniedError(message)
        if status == 429:
            return errors.ThrottledError(message, retry_after=_retry_after(error))
        # No status: the connection broke mid-answer (IncompleteReadError, DecodeError).
        if status == 0 or status >= 500 or status == 408:
            return errors.TransientError(message)
        if status == 409:
            return errors.ConflictError(message)
        if 300 <= status < 400:
            message += " (a redirect: not followed, requests go only to allowed hosts)"
        return errors.KvBackupError(message, reason="RequestRejected")
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return errors.TransientError(
            f"{what}: cannot reach the service "
            f"({errors.foreign_text(f'{type(error).__name__}: {error.message}')})",
            reason="VaultUnreachable",
        )
    if isinstance(error, (TimeoutError, ConnectionError)):
        return errors.TransientError(f"{what}: {type(error).__name__}", reason="VaultUnreachable")
    # azure.identity raises CredentialUnavailableError (a ClientAuthenticationError subclass
    # in most versions); anything else from the identity stack means no token either.
    if type(error).__module__.startswith("azure.identity"):
        return errors.CredentialUnavailableError(f"{what}: {NO_IDENTITY}")
    raise error


#: How a failed certificate check reads once an SDK has turned it into text (azure-identity
#: reports an unreachable token endpoint in a message of its own).
_CERTIFICATE_CHECK_FAILED = "certificate verify failed"


def _untrusted_certificate(error: BaseException) -> str | None:
    """The certificate check that failed somewhere in ``error``'s chain, as OpenSSL said it;
    None when no TLS certificate was refused."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ssl.SSLCertVerificationError):
            return errors.foreign_text(link.verify_message or str(link))
        if _CERTIFICATE_CHECK_FAILED in str(link):
            return _CERTIFICATE_CHECK_FAILED
        link = link.__cause__ or link.__context__
    return None


def answered_status(error: errors.KvBackupError) -> int | None:
    """The HTTP status of the answer ``error`` was mapped from; None when none came."""
    cause = error.__cause__
    return cause.status_code if isinstance(cause, HttpResponseError) else None


@contextmanager
def azure_errors(what: str, *, about_one_item: bool = False) -> Iterator[None]:
    try:
        yield
    except errors.KvBackupError:
        raise
    except Exception as error:  # mapped or re-raised unchanged by map_azure_error
        raise map_azure_error(error, what, about_one_item=about_one_item) from error
