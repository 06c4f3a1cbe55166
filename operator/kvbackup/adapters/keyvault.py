"""Key Vault's keys, secrets and certificates through the async SDK, bounded in rate per
vault and in concurrency per process, shared fairly between namespaces (fairshare.py).

A call first takes a token of its vault's pace, then a process-wide slot: a call that
waits for a paused or slowed vault holds no slot. Key Vault throttles a vault whatever
kind of item a call concerns, so the three kinds share the vault's one pace. Every page
of a listing is a call of its own. A vault's pace, its metric series and its
default-identity clients are forgotten once unused for ``IDLE_VAULT_SECONDS``, so vault
names that come and go leave nothing behind.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from azure.core.async_paging import AsyncItemPaged, AsyncPageIterator
from azure.core.credentials_async import AsyncTokenCredential
from azure.keyvault.certificates.aio import CertificateClient
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.secrets.aio import SecretClient

from kvbackup.adapters.azure_errors import answered_status, azure_errors
from kvbackup.adapters.fairshare import COMMAND_LINE, FairSlots
from kvbackup.adapters.http import SharedSession
from kvbackup.adapters.metrics import (
    ANSWERED_OK,
    NO_ANSWER,
    OperatorMetrics,
    VaultCalls,
    VaultOperation,
)
from kvbackup.adapters.proxies import proxies_for
from kvbackup.adapters.ratelimit import VaultPace
from kvbackup.adapters.request_checks import AllowedHostsPolicy, BoundedPages
from kvbackup.api.kinds import ItemKind
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError, KvBackupError, NotFoundError, ThrottledError
from kvbackup.services.ports import ItemInfo, ItemState, ItemVersions
from kvbackup.services.retry_policy import retry_per_call
from kvbackup.services.snapshot import ChangeRecord

_T = TypeVar("_T")

#: How long a purge may take to finish before the purged name can be restored.
PURGE_WAIT_SECONDS = 120.0
#: The items Key Vault keeps for a certificate, under its name, managed by it.
CERTIFICATE_PARTS = (ItemKind.KEY, ItemKind.SECRET)
#: A vault unused for this long (and not paused) is forgotten: its pace, metric series
#: and clients. Its next run starts again at the configured rate.
IDLE_VAULT_SECONDS = 15 * 60.0


@dataclass(frozen=True)
class KindCalls:
    """One kind's SDK calls, under the names every kind shares. Each call's answer that
    matters: a listing's items (``name``, ``tags``, ``version``, ``created_on``,
    ``updated_on`` and every other attribute they carry, for the item's change record),
    a backup's bytes, a restored item's ``name``."""

    listing: Callable[[], AsyncItemPaged[Any]]
    version_listing: Callable[[str], AsyncItemPaged[Any]]
    get_deleted: Callable[[str], Awaitable[object]]
    backup: Callable[[str], Awaitable[bytes]]
    restore: Callable[[bytes], Awaitable[Any]]
    recover: Callable[[str], Awaitable[object]]
    purge: Callable[[str], Awaitable[None]]
    #: Keys and secrets say whether a certificate manages them; a certificate has no such
    #: flag, as nothing manages it.
    flags_managed: bool = True


class SdkClients:
    """The SDK's three clients of one vault under one credential, one per kind of item."""

    def __init__(
        self, keys: KeyClient, secrets: SecretClient, certificates: CertificateClient
    ) -> None:
        self.keys, self.secrets, self.certificates = keys, secrets, certificates
        self.calls: Mapping[ItemKind, KindCalls] = {
            ItemKind.KEY: KindCalls(
                listing=keys.list_properties_of_keys,
                version_listing=keys.list_properties_of_key_versions,
                get_deleted=keys.get_deleted_key,
                backup=keys.backup_key,
                restore=keys.restore_key_backup,
                recover=keys.recover_deleted_key,
                purge=keys.purge_deleted_key,
            ),
            ItemKind.SECRET: KindCalls(
                listing=secrets.list_properties_of_secrets,
                version_listing=secrets.list_properties_of_secret_versions,
                get_deleted=secrets.get_deleted_secret,
                backup=secrets.backup_secret,
                restore=secrets.restore_secret_backup,
                recover=secrets.recover_deleted_secret,
                purge=secrets.purge_deleted_secret,
            ),
            ItemKind.CERTIFICATE: KindCalls(
                # A certificate whose first version is still being issued has nothing to
                # back up yet. Said, not left to each service's default: the emulator's
                # is to list them.
                listing=partial(
                    certificates.list_properties_of_certificates, include_pending=False
                ),
                version_listing=certificates.list_properties_of_certificate_versions,
                get_deleted=certificates.get_deleted_certificate,
                backup=certificates.backup_certificate,
                restore=certificates.restore_certificate_backup,
                recover=certificates.recover_deleted_certificate,
                purge=certificates.purge_deleted_certificate,
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

    async def _pages(
        self,
        operation: VaultOperation,
        kind: ItemKind,
        what: str,
        pages: AsyncIterator[AsyncIterator[_T]],
        *,
        about_one_item: bool = True,
    ) -> AsyncGenerator[AsyncIterator[_T], None]:
        """A listing (``by_page()``) page by page, each page a call of its own: paced,
        holding a slot only while it is fetched, and fetched again when throttled instead
        of listing from the start. After a page without a link to the next, nothing more
        is sent or paced; after MAX_LISTING_PAGES pages the listing fails."""
        bounded = BoundedPages(pages, what)
        while (
            page := await self._request(
                operation, kind, what, partial(_next_page, bounded), about_one_item=about_one_item
            )
        ) is not None:
            yield page
            if cast(AsyncPageIterator[_T], pages).continuation_token is None:
                return

    async def list_items(self, kind: ItemKind) -> AsyncIterator[ItemInfo]:
        calls = self._sdk[kind]
        pages = calls.listing().by_page()
        async for page in self._pages(
            VaultOperation.LIST, kind, f"list {kind.plural}", pages, about_one_item=False
        ):
            async for props in page:
                updated = props.updated_on
                yield ItemInfo(
                    name=props.name or "",
                    tags=dict(props.tags or {}),
                    managed=calls.flags_managed and bool(props.managed),
                    change=ChangeRecord.of(updated, _listed_facts(props)) if updated else None,
                )

    async def list_versions(self, kind: ItemKind, name: str) -> ItemVersions:
        pages = self._sdk[kind].version_listing(name).by_page()
        listed: list[Any] = []
        what = f"list versions of {kind} {name}"
        async for page in self._pages(VaultOperation.LIST_VERSIONS, kind, what, pages):
            listed.extend([props async for props in page])
        by_id = sorted(listed, key=_version_id)
        # Oldest first; versions created in the same second in the order of their ids.
        oldest_first = sorted(by_id, key=_created_on)
        updated = max(filter(None, (props.updated_on for props in listed)), default=None)
        # Every version counts, not only the current one: a named item has no listing
        # entry, and an older version's changed attributes must show too.
        facts = [(props.version, props.updated_on, *_listed_facts(props)) for props in by_id]
        return ItemVersions(
            ids=tuple(_version_id(props) for props in oldest_first),
            change=ChangeRecord.of(updated, facts) if updated else None,
        )

    async def backup(self, kind: ItemKind, name: str) -> bytes:
        return await self._request(
            VaultOperation.BACKUP,
            kind,
            f"back up {kind} {name}",
            partial(self._sdk[kind].backup, name),
        )

    async def item_state(self, kind: ItemKind, name: str) -> ItemState:
        if await self._has_versions(kind, name):
            return ItemState.ACTIVE
        try:
            await self._deleted(kind, name)
            return ItemState.SOFT_DELETED
        except NotFoundError:
            return ItemState.ABSENT

    async def _has_versions(self, kind: ItemKind, name: str) -> bool:
        """Whether the item is active, told by the first page of its versions' properties:
        reading the item itself would send back a secret's value, which nothing here
        needs, and Key Vault refuses (403) to read a disabled secret at all."""
        pages = self._sdk[kind].version_listing(name).by_page()
        what = f"list versions of {kind} {name}"
        try:
            async with aclosing(
                self._pages(VaultOperation.LIST_VERSIONS, kind, what, pages)
            ) as listed:
                async for page in listed:
                    async for _ in page:
                        return True
                    return False
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


async def _next_page(pages: AsyncIterator[AsyncIterator[_T]]) -> AsyncIterator[_T] | None:
    try:
        return await anext(pages)
    except StopAsyncIteration:
        return None


def _version_id(props: Any) -> str:
    return str(props.version or "")


def _created_on(props: Any) -> float:
    """When a version was created; one without a creation time counts as the oldest."""
    return props.created_on.timestamp() if props.created_on else 0.0


def _listed_facts(props: Any) -> list[object]:
    """All that a listing entry (of an item, or of one of its versions) says besides when it
    was updated, in one order for every kind. What a kind's properties lack counts as
    None: a secret has no thumbprint, a certificate no content type. Made for every item
    of every run, so only attribute reads and the tags sorted: no parsing, no deep copies."""
    thumbprint = getattr(props, "x509_thumbprint", None)
    release_policy = getattr(props, "release_policy", None)
    return [
        props.id or props.name,
        props.created_on,
        props.enabled,
        props.not_before,
        props.expires_on,
        sorted((props.tags or {}).items()),
        props.recovery_level,
        props.recoverable_days,
        getattr(props, "managed", None),
        getattr(props, "content_type", None),
        thumbprint.hex() if thumbprint else None,
        getattr(props, "exportable", None),
        getattr(release_policy, "immutable", None),
        getattr(props, "hsm_platform", None),
    ]


def vault_host(vault_url: str) -> str:
    """What identifies a vault: its host, with the port when the URL names one."""
    parts = urlsplit(vault_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The one TLS context for every vault: the system's CAs, or the configured bundle."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise InvalidSpecError(
            f"KVBACKUP_CA_BUNDLE={ca_bundle} is not a readable PEM bundle: {error}"
        ) from None


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
