"""Key Vault's keys, secrets and certificates through each kind's async SDK client, bounded
in rate per vault and in concurrency per process, shared fairly between namespaces
(fairshare.py).

The calls of every backup run (listings and backups) are sent as plain requests through
the client's own pipeline (``send_request``: authentication, the allowed-hosts check,
proxies, transport) and their JSON read here: the SDK's models, deserialized anew on each
property read, cost more of the operator's CPU than the rest of a key's backup. Restores,
recoveries and purges, a few per run at most, go through the SDK's methods.

A call first takes a token of its vault's pace, then a process-wide slot: a call that
waits for a paused or slowed vault holds no slot. Key Vault throttles a vault whatever
kind of item a call concerns, so the three kinds share the vault's one pace. Every page
of a listing is a call of its own. A vault's pace, its metric series and its
default-identity clients are forgotten once unused for ``IDLE_VAULT_SECONDS``, so vault
names that come and go leave nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ODataV4Format,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.keyvault.certificates.aio import CertificateClient
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.secrets.aio import SecretClient

from kvbackup.adapters import request_checks
from kvbackup.adapters.azure_errors import answered_status, azure_errors
from kvbackup.adapters.fairshare import COMMAND_LINE, FairSlots
from kvbackup.adapters.http import SharedSession, request_id, tls_context
from kvbackup.adapters.metrics import (
    ANSWERED_OK,
    NO_ANSWER,
    OperatorMetrics,
    VaultCalls,
    VaultOperation,
)
from kvbackup.adapters.proxies import proxies_for
from kvbackup.adapters.ratelimit import VaultPace
from kvbackup.adapters.request_checks import AllowedHostsPolicy
from kvbackup.api.fields import KEY_NAME
from kvbackup.api.kinds import ItemKind
from kvbackup.config import Settings
from kvbackup.errors import (
    IntegrityError,
    KvBackupError,
    NotFoundError,
    ThrottledError,
    TooLargeError,
)
from kvbackup.services.ports import ItemInfo, ItemState, ItemVersions
from kvbackup.services.retry_policy import retry_per_call
from kvbackup.services.snapshot import ARTIFACT_MAX_BYTES, VERSION_ID, ChangeRecord

_T = TypeVar("_T")

#: How long a purge may take to finish before the purged name can be restored.
PURGE_WAIT_SECONDS = 120.0
#: The items Key Vault keeps for a certificate, under its name, managed by it.
CERTIFICATE_PARTS = (ItemKind.KEY, ItemKind.SECRET)
#: A vault unused for this long (and not paused) is forgotten: its pace, metric series
#: and clients. Its next run starts again at the configured rate.
IDLE_VAULT_SECONDS = 15 * 60.0
#: Entries a listing page holds at most: Key Vault's own bound, and its default.
PAGE_SIZE = 25
#: What the SDK raises for each answer status, mapped in turn by azure_errors.
ERROR_MAP: Mapping[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
}
#: The longest answer read from a vault: a backup of the largest artifact a snapshot may
#: hold, base64url in its JSON, with room to spare. A listing page is far shorter.
ANSWER_MAX_BYTES = ARTIFACT_MAX_BYTES * 4 // 3 + 64 * 1024
#: A backup's bytes as Key Vault sends them: base64url, its padding left out.
BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")

#: A listing entry, or any JSON object of an answer, as the service gave it.
Entry = Mapping[str, Any]


class VaultClient(Protocol):
    """What every kind's SDK client offers for requests made here."""

    @property
    def vault_url(self) -> str: ...

    def send_request(
        self, request: HttpRequest, *, stream: bool = False, **kwargs: Any
    ) -> Awaitable[AsyncHttpResponse]: ...


@dataclass(frozen=True)
class KindCalls:
    """One kind's calls, under the names every kind shares: its client, for the requests
    sent here, and the SDK's methods for the rest. A restored item's answer that matters:
    its ``name``."""

    client: VaultClient
    api_version: str
    get_deleted: Callable[[str], Awaitable[object]]
    restore: Callable[[bytes], Awaitable[Any]]
    recover: Callable[[str], Awaitable[object]]
    purge: Callable[[str], Awaitable[None]]
    #: The member of a listing entry that holds its id: a key's is ``kid``.
    id_member: str = "id"
    #: Added to the listing's query.
    listing_query: str = ""
    #: Keys and secrets say whether a certificate manages them; a certificate has no such
    #: flag, as nothing manages it.
    flags_managed: bool = True

    def url(self, path: str, query: str = "") -> str:
        """The vault's URL of ``path``, at the REST API version every kind speaks."""
        return f"{self.client.vault_url}/{path}?api-version={self.api_version}{query}"


class SdkClients:
    """The SDK's three clients of one vault under one credential, one per kind of item."""

    def __init__(
        self, keys: KeyClient, secrets: SecretClient, certificates: CertificateClient
    ) -> None:
        self.keys, self.secrets, self.certificates = keys, secrets, certificates
        # Every kind speaks the keys client's version (KeyVaultClients._sdk_clients).
        version = keys.api_version
        self.calls: Mapping[ItemKind, KindCalls] = {
            ItemKind.KEY: KindCalls(
                client=keys,
                api_version=version,
                get_deleted=keys.get_deleted_key,
                restore=keys.restore_key_backup,
                recover=keys.recover_deleted_key,
                purge=keys.purge_deleted_key,
                id_member="kid",
            ),
            ItemKind.SECRET: KindCalls(
                client=secrets,
                api_version=version,
                get_deleted=secrets.get_deleted_secret,
                restore=secrets.restore_secret_backup,
                recover=secrets.recover_deleted_secret,
                purge=secrets.purge_deleted_secret,
            ),
            ItemKind.CERTIFICATE: KindCalls(
                client=certificates,
                api_version=version,
                get_deleted=certificates.get_deleted_certificate,
                restore=certificates.restore_certificate_backup,
                recover=certificates.recover_deleted_certificate,
                purge=certificates.purge_deleted_certificate,
                # A certificate whose first version is still being issued has nothing to
                # back up yet. Said, not left to each service's default: the emulator's
                # is to list them.
                listing_query="&includePending=false",
                flags_managed=False,
            ),
        }

    async def close(self) -> None:
        await self.keys.close()
        await self.secrets.close()
        await self.certificates.close()


class KeyVaultItems:
    """``VaultItems`` for one vault under one credential: its keys, secrets and
    certificates, every call paced by the vault's one pace."""

    def __init__(
        self,
        sdk: Mapping[ItemKind, KindCalls],
        pace: VaultPace,
        slots: FairSlots,
        calls: VaultCalls,
        *,
        namespace: str = COMMAND_LINE,
    ) -> None:
        self._sdk = sdk
        self._pace = pace
        self._slots = slots
        self._calls = calls
        self._namespace = namespace

    async def _request(
        self,
        operation: VaultOperation,
        kind: ItemKind,
        what: str,
        send: Callable[[], Awaitable[_T]],
        *,
        about_one_item: bool = True,
    ) -> _T:
        """One call to the vault: a token of the vault's pace, then a slot of the namespace's
        share, the SDK's errors mapped, each attempt counted under ``operation`` and
        ``kind``; retried on its own when throttled or overloaded. Every call but the
        listing of a kind's items concerns one item (``about_one_item``)."""

        async def attempt() -> _T:
            await self._pace.acquire()
            async with self._slots.slot(self._namespace):
                try:
                    with azure_errors(what, about_one_item=about_one_item):
                        answer = await send()
                except KvBackupError as error:
                    status = answered_status(error)
                    self._calls.count(operation, kind, str(status) if status else NO_ANSWER)
                    if isinstance(error, ThrottledError):
                        self._pace.throttled(error.retry_after)
                    raise
            self._calls.count(operation, kind, ANSWERED_OK)
            self._pace.succeeded()
            return answer

        return await retry_per_call(attempt)

    async def _listing(
        self,
        operation: VaultOperation,
        kind: ItemKind,
        what: str,
        url: str,
        *,
        about_one_item: bool = True,
    ) -> AsyncGenerator[list[Entry], None]:
        """The entries of a listing that starts at ``url``, page by page, each page a call
        of its own: paced, holding a slot only while it is fetched, and fetched again when
        throttled instead of listing from the start. Each page's ``nextLink`` is followed as
        given: the client's pipeline checks its host. After a page without one, nothing
        more is sent or paced; a page that links on past MAX_LISTING_PAGES fails the
        listing before the next is asked for."""
        client = self._sdk[kind].client
        next_url: str | None = url
        pages = 0
        while next_url is not None:
            if pages == request_checks.MAX_LISTING_PAGES:
                raise TooLargeError(
                    f"{what}: stopped after {pages:,} pages, the most a listing may take; "
                    "the service kept answering with a next page"
                )
            answer = await self._request(
                operation,
                kind,
                what,
                partial(_answered, client, "GET", next_url),
                about_one_item=about_one_item,
            )
            pages += 1
            entries, next_url = _page(_json_object(answer, what), what)
            yield entries

    async def list_items(self, kind: ItemKind) -> AsyncGenerator[ItemInfo, None]:
        calls = self._sdk[kind]
        what = f"list {kind.plural}"
        url = calls.url(kind.plural, f"&maxresults={PAGE_SIZE}{calls.listing_query}")
        async with aclosing(
            self._listing(VaultOperation.LIST, kind, what, url, about_one_item=False)
        ) as pages:
            async for entries in pages:
                for entry in entries:
                    updated = _updated(entry, what)
                    yield ItemInfo(
                        name=_id_segments(entry, calls.id_member, 1, what)[0],
                        tags=_tags(entry, what),
                        managed=calls.flags_managed and entry.get("managed") is True,
                        # Everything the listing gives of the item, as it gave it.
                        change=ChangeRecord.of(updated, [entry]) if updated else None,
                    )

    def _versions_url(self, kind: ItemKind, name: str) -> str:
        return self._sdk[kind].url(
            f"{kind.plural}/{quote(name, safe='')}/versions", f"&maxresults={PAGE_SIZE}"
        )

    async def list_versions(self, kind: ItemKind, name: str) -> ItemVersions:
        what = f"list versions of {kind} {name}"
        id_member = self._sdk[kind].id_member
        listed: list[tuple[str, Entry]] = []
        async with aclosing(
            self._listing(VaultOperation.LIST_VERSIONS, kind, what, self._versions_url(kind, name))
        ) as pages:
            async for entries in pages:
                listed.extend((_version_of(entry, id_member, what), entry) for entry in entries)
        by_id = sorted(listed, key=lambda version: version[0])
        # Oldest first; versions created in the same second in the order of their ids.
        oldest_first = sorted(by_id, key=lambda version: _created(version[1], what))
        updated = max(filter(None, (_updated(entry, what) for _, entry in listed)), default=None)
        # Every version counts, not only the current one: a named item has no listing
        # entry, and an older version's changed attributes must show too.
        facts = [entry for _, entry in by_id]
        return ItemVersions(
            ids=tuple(version for version, _ in oldest_first),
            change=ChangeRecord.of(updated, facts) if updated else None,
        )

    async def backup(self, kind: ItemKind, name: str) -> bytes:
        calls = self._sdk[kind]
        what = f"back up {kind} {name}"
        url = calls.url(f"{kind.plural}/{quote(name, safe='')}/backup")
        answer = await self._request(
            VaultOperation.BACKUP, kind, what, partial(_answered, calls.client, "POST", url)
        )
        return _backup_bytes(_json_object(answer, what), what)

    async def item_state(self, kind: ItemKind, name: str) -> ItemState:
        if await self._has_versions(kind, name):
            return ItemState.ACTIVE
        try:
            await self._deleted(kind, name)
            return ItemState.SOFT_DELETED
        except NotFoundError:
            return ItemState.ABSENT

    async def _has_versions(self, kind: ItemKind, name: str) -> bool:
        """Whether the item is active, told by the first entry of its versions' listing:
        reading the item itself would send back a secret's value, which nothing here
        needs, and Key Vault refuses (403) to read a disabled secret at all."""
        what = f"list versions of {kind} {name}"
        try:
            async with aclosing(
                self._listing(
                    VaultOperation.LIST_VERSIONS, kind, what, self._versions_url(kind, name)
                )
            ) as pages:
                async for entries in pages:
                    if entries:
                        return True
        except NotFoundError:
            pass
        return False

    async def _deleted(self, kind: ItemKind, name: str) -> None:
        await self._request(
            VaultOperation.GET_DELETED,
            kind,
            f"read deleted {kind} {name}",
            partial(self._sdk[kind].get_deleted, name),
        )

    async def restore(self, kind: ItemKind, backup: bytes) -> str:
        restored = await self._request(
            VaultOperation.RESTORE,
            kind,
            f"restore a {kind} backup",
            partial(self._sdk[kind].restore, backup),
        )
        return str(restored.name or "")

    async def recover(self, kind: ItemKind, name: str) -> None:
        await self._request(
            VaultOperation.RECOVER,
            kind,
            f"recover {kind} {name}",
            partial(self._sdk[kind].recover, name),
        )

    async def purge(self, kind: ItemKind, name: str) -> None:
        await self._request(
            VaultOperation.PURGE, kind, f"purge {kind} {name}", partial(self._sdk[kind].purge, name)
        )
        # Purging completes asynchronously; a restore under the same name fails until then.
        # A certificate's purge takes its key and secret with it, and restoring the
        # certificate brings them back, so their deleted entries must be gone too.
        purged = [kind, *(CERTIFICATE_PARTS if kind is ItemKind.CERTIFICATE else ())]
        deadline = asyncio.get_running_loop().time() + PURGE_WAIT_SECONDS
        while purged and asyncio.get_running_loop().time() < deadline:
            try:
                await self._deleted(purged[0], name)
            except NotFoundError:
                purged.pop(0)
                continue
            await asyncio.sleep(2)


@dataclass(frozen=True)
class _Answer:
    """A vault's 2xx answer: its body, or None when it ran past ANSWER_MAX_BYTES."""

    body: bytes | None


async def _answered(client: VaultClient, method: str, url: str) -> _Answer:
    """The vault's 2xx answer to ``method url``. Any other raises what the SDK's own methods
    raise for it, for azure_errors to map alike. The body is streamed and read here, no
    further than ANSWER_MAX_BYTES, rather than read whole (and parsed, unasked) by the
    pipeline."""
    request = HttpRequest(
        method, url, headers={"Accept": "application/json", "Accept-Encoding": "identity"}
    )
    response = await client.send_request(request, stream=True, request_id=request_id())
    try:
        body = await _bounded_body(response)
    finally:
        await response.close()
    if 200 <= response.status_code < 300:
        return _Answer(body)
    raise _refusal(response, body)


async def _bounded_body(response: AsyncHttpResponse) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    async for part in response.iter_bytes():
        size += len(part)
        if size > ANSWER_MAX_BYTES:
            return None
        parts.append(part)
    return b"".join(parts)


def _refusal(response: AsyncHttpResponse, body: bytes | None) -> HttpResponseError:
    """The SDK's exception for a non-2xx answer, with the service's error as its body
    gives it (``{"error": {"code", "message"}}``)."""
    error_type = ERROR_MAP.get(response.status_code, HttpResponseError)
    try:
        said = ODataV4Format(json.loads(body)) if body else None
    except (ValueError, TypeError, AttributeError):
        said = None
    refusal = error_type(message=str(said) if said else None, response=response)
    refusal.error = said
    return refusal


def _json_object(answer: _Answer, what: str) -> Entry:
    """A 2xx answer's body: a JSON object, or IntegrityError (TooLargeError past
    ANSWER_MAX_BYTES). Read once the call is over, so its metric counts the answer as the
    2xx it was."""
    if answer.body is None:
        raise TooLargeError(
            f"{what}: the vault's answer runs past {ANSWER_MAX_BYTES:,} bytes, more than "
            "any backup or listing page holds"
        )
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        raise IntegrityError(f"{what}: the vault's answer is not JSON") from None
    if not isinstance(parsed, dict):
        raise IntegrityError(f"{what}: the vault's answer is not a JSON object")
    return parsed


def _page(answer: Entry, what: str) -> tuple[list[Entry], str | None]:
    """A listing page's entries, and the link to the next page: None after the last."""
    entries = answer.get("value")
    if entries is None:
        entries = []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise IntegrityError(f"{what}: a listing page's value is not a list of objects")
    next_link = answer.get("nextLink")
    if next_link is not None and not isinstance(next_link, str):
        raise IntegrityError(f"{what}: a listing page's nextLink is not a string")
    return entries, next_link or None


def _id_segments(entry: Entry, member: str, count: int, what: str) -> list[str]:
    """The last ``count`` segments of the entry's id (an item's name, then its version),
    each checked: a name against Key Vault's grammar, a version against VERSION_ID."""
    identifier = entry.get(member)
    # A query or a fragment after them fails their grammar.
    segments = identifier.split("/")[-count:] if isinstance(identifier, str) else []
    grammars = (KEY_NAME, VERSION_ID)[:count]
    if len(segments) != count or not all(
        grammar.fullmatch(segment) for grammar, segment in zip(grammars, segments, strict=True)
    ):
        raise IntegrityError(
            f"{what}: a listing entry's {member} does not end in a Key Vault "
            + ("name" if count == 1 else "name and version")
        )
    return segments


def _version_of(entry: Entry, member: str, what: str) -> str:
    return _id_segments(entry, member, 2, what)[1]


def _attributes(entry: Entry, what: str) -> Entry:
    attributes = entry.get("attributes")
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise IntegrityError(f"{what}: a listing entry's attributes are not an object")
    return attributes


def _time(entry: Entry, member: str, what: str) -> datetime.datetime | None:
    """An entry's ``attributes.<member>`` (unix seconds) as a time; None when absent."""
    seconds = _attributes(entry, what).get(member)
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise IntegrityError(f"{what}: a listing entry's {member} time is not a number")
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise IntegrityError(f"{what}: a listing entry's {member} time is out of range") from None


def _updated(entry: Entry, what: str) -> datetime.datetime | None:
    return _time(entry, "updated", what)


def _created(entry: Entry, what: str) -> float:
    """When a version was created; one without a creation time counts as the oldest."""
    created = _time(entry, "created", what)
    return created.timestamp() if created else 0.0


def _tags(entry: Entry, what: str) -> dict[str, str]:
    tags = entry.get("tags")
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in tags.items()
    ):
        raise IntegrityError(f"{what}: a listing entry's tags are not strings by name")
    return tags


def _backup_bytes(answer: Entry, what: str) -> bytes:
    """A backup answer's bytes: its ``value``, base64url."""
    value = answer.get("value")
    if not isinstance(value, str) or not BASE64URL.fullmatch(value):
        raise IntegrityError(f"{what}: the vault's answer holds no base64url backup")
    unpadded = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except binascii.Error:
        raise IntegrityError(f"{what}: the vault's answer holds no base64url backup") from None


def vault_host(vault_url: str) -> str:
    """What identifies a vault: its host, with the port when the URL names one."""
    parts = urlsplit(vault_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


class KeyVaultClients:
    """Builds one ``KeyVaultItems`` per (vault, credential), sharing the per-vault limiter.

    Every client sends through one HTTP session whose connector holds the one TLS context.
    Given ``connection_verify`` as a path instead, azure-core would build a new context
    per request, and aiohttp pools connections per context: every request would then
    open a new TLS connection.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: OperatorMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._slots = FairSlots(settings.max_vault_calls)
        self._clock = clock
        #: By vault host: Key Vault throttles a vault, however its URL is spelled.
        self._paces: dict[str, tuple[VaultPace, VaultCalls]] = {}
        self._metrics = metrics if metrics is not None else OperatorMetrics()
        self._metrics.follow_paces(self.pace_rates)
        self._clients: dict[tuple[str, int], SdkClients] = {}
        self._http = SharedSession(tls_context(settings.ca_bundle))

    def _client_options(self, vault_url: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            "proxies": proxies_for(vault_url),
            "verify_challenge_resource": self._settings.verify_challenge_resource,
            "transport": self._http.transport(),
            # 429s and 5xx answers are retried per call by retry_per_call, after the
            # vault's pace has heard of them; the SDK retrying them too would hide them.
            "retry_status": 0,
            # A redirect could lead anywhere; requests go only to hosts the list allows.
            "permit_redirects": False,
            # And so does a page's absolute nextLink: every request is checked again.
            "per_retry_policies": [AllowedHostsPolicy(self._settings.vault_hosts, "Key Vault")],
        }
        if self._settings.keyvault_api_version:
            options["api_version"] = self._settings.keyvault_api_version
        return options

    def _sdk_clients(self, vault_url: str, credential: AsyncTokenCredential) -> SdkClients:
        keys = KeyClient(vault_url, credential, **self._client_options(vault_url))
        # Every kind speaks the REST API version the keys client does: the configured one,
        # else the keys SDK's default. Left to themselves, the secrets and certificates
        # SDKs default to a newer version than the keys SDK knows (2026-04-01 against
        # 2025-07-01), which a service that answers the keys' may refuse: Lowkey Vault does.
        same_version = {**self._client_options(vault_url), "api_version": keys.api_version}
        return SdkClients(
            keys,
            SecretClient(vault_url, credential, **same_version),
            CertificateClient(vault_url, credential, **same_version),
        )

    def vault(
        self, vault_url: str, credential: AsyncTokenCredential, namespace: str = COMMAND_LINE
    ) -> KeyVaultItems:
        """The vault's items of every kind, for calls on behalf of ``namespace``;
        HostNotAllowedError, before anything is sent, for a vault outside
        KVBACKUP_VAULT_HOSTS."""
        self._settings.vault_hosts.check(vault_url, "vault")
        self._forget_idle_vaults()
        cache_key = (vault_url, id(credential))
        sdk = self._clients.get(cache_key)
        if sdk is None:
            sdk = self._clients[cache_key] = self._sdk_clients(vault_url, credential)
        host = vault_host(vault_url)
        paced = self._paces.get(host)
        if paced is None:
            pace = VaultPace(self._settings.vault_rate_limit, clock=self._clock)
            paced = pace, self._metrics.vault(host)
            self._paces[host] = paced
        pace, calls = paced
        return KeyVaultItems(sdk.calls, pace, self._slots, calls, namespace=namespace)

    def _forget_idle_vaults(self) -> None:
        """Drops the pace, metric series and clients of every vault unused (and not
        paused) for IDLE_VAULT_SECONDS. A client holds no connection of its own (they
        belong to the shared session), so dropping it releases all it has, and a run that
        still holds it keeps working."""
        since = self._clock() - IDLE_VAULT_SECONDS
        for host in [h for h, (pace, _) in self._paces.items() if pace.idle_since(since)]:
            _, calls = self._paces.pop(host)
            calls.forget()
            for cache_key in [k for k in self._clients if vault_host(k[0]) == host]:
                del self._clients[cache_key]

    def pace_rates(self) -> list[tuple[str, float]]:
        """Each vault's current pace. Called from the metrics server's thread: copying the
        items is one step the event loop's thread cannot interleave with."""
        return [(host, pace.rate) for host, (pace, _) in list(self._paces.items())]

    async def release(self, credential: AsyncTokenCredential) -> None:
        """Close the clients built for a per-object credential once its run is over."""
        for cache_key in [k for k in self._clients if k[1] == id(credential)]:
            await self._clients.pop(cache_key).close()

    async def close(self) -> None:
        for sdk in self._clients.values():
            await sdk.close()
        self._clients.clear()
        await self._http.close()
