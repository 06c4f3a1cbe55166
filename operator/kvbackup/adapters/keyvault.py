"""Key Vault keys through the async SDK, bounded in rate per vault and in concurrency per
process, shared fairly between namespaces (fairshare.py).

A call first takes a token of its vault's pace, then a process-wide slot: a call that
waits for a paused or slowed vault holds no slot. Every page of a listing is a call of its
own. A vault's pace, its metric series and its default-identity clients are forgotten once
unused for ``IDLE_VAULT_SECONDS``, so vault names that come and go leave nothing behind.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from azure.core.async_paging import AsyncPageIterator
from azure.core.credentials_async import AsyncTokenCredential
from azure.keyvault.keys.aio import KeyClient

from kvbackup.adapters.azure_errors import answered_status, azure_errors
from kvbackup.adapters.fairshare import COMMAND_LINE, FairSlots
from kvbackup.adapters.http import SharedSession
from kvbackup.adapters.metrics import ANSWERED_OK, NO_ANSWER, OperatorMetrics, VaultCalls
from kvbackup.adapters.proxies import proxies_for
from kvbackup.adapters.ratelimit import VaultPace
from kvbackup.adapters.request_checks import AllowedHostsPolicy, BoundedPages
from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError, KvBackupError, NotFoundError, ThrottledError
from kvbackup.services.ports import KeyInfo, KeyState
from kvbackup.services.retry_policy import retry_per_call

_T = TypeVar("_T")

#: How long a purge may take to finish before the purged name can be restored.
PURGE_WAIT_SECONDS = 120.0
#: A vault unused for this long (and not paused) is forgotten: its pace, metric series
#: and clients. Its next run starts again at the configured rate.
IDLE_VAULT_SECONDS = 15 * 60.0


class KeyVaultKeys:
    """``VaultKeys`` for one vault under one credential."""

    def __init__(
        self,
        client: KeyClient,
        pace: VaultPace,
        slots: FairSlots,
        calls: VaultCalls,
        *,
        namespace: str = COMMAND_LINE,
    ) -> None:
        self._client = client
        self._pace = pace
        self._slots = slots
        self._calls = calls
        self._namespace = namespace

    async def _request(
        self,
        operation: str,
        what: str,
        send: Callable[[], Awaitable[_T]],
        *,
        about_one_key: bool = True,
    ) -> _T:
        """One call to the vault: a token of the vault's pace, then a slot of the namespace's
        share, the SDK's errors mapped, each attempt counted under ``operation``; retried
        on its own when throttled or overloaded. Every call but the listing of the vault's
        keys concerns one key (``about_one_key``)."""

        async def attempt() -> _T:
            await self._pace.acquire()
            async with self._slots.slot(self._namespace):
                try:
                    with azure_errors(what, about_one_key=about_one_key):
                        answer = await send()
                except KvBackupError as error:
                    status = answered_status(error)
                    self._calls.count(operation, str(status) if status else NO_ANSWER)
                    if isinstance(error, ThrottledError):
                        self._pace.throttled(error.retry_after)
                    raise
            self._calls.count(operation, ANSWERED_OK)
            self._pace.succeeded()
            return answer

        return await retry_per_call(attempt)

    async def _pages(
        self,
        operation: str,
        what: str,
        pages: AsyncIterator[AsyncIterator[_T]],
        *,
        about_one_key: bool = True,
    ) -> AsyncIterator[AsyncIterator[_T]]:
        """A listing (``by_page()``) page by page, each page a call of its own: paced,
        holding a slot only while it is fetched, and fetched again when throttled instead
        of listing from the start. After a page without a link to the next, nothing more
        is sent or paced; after MAX_LISTING_PAGES pages the listing fails."""
        bounded = BoundedPages(pages, what)
        while (
            page := await self._request(
                operation, what, partial(_next_page, bounded), about_one_key=about_one_key
            )
        ) is not None:
            yield page
            if cast(AsyncPageIterator[_T], pages).continuation_token is None:
                return

    async def list_keys(self) -> AsyncIterator[KeyInfo]:
        pages = self._client.list_properties_of_keys().by_page()
        async for page in self._pages("list_keys", "list keys", pages, about_one_key=False):
            async for props in page:
                yield KeyInfo(
                    name=props.name or "", tags=dict(props.tags or {}), managed=bool(props.managed)
                )

    async def list_versions(self, name: str) -> tuple[str, ...]:
        pages = self._client.list_properties_of_key_versions(name).by_page()
        versions: list[tuple[Any, str]] = []
        async for page in self._pages("list_versions", f"list versions of key {name}", pages):
            versions.extend([(props.created_on, props.version or "") async for props in page])
        return tuple(version for _, version in sorted(versions, key=_created_then_id))

    async def backup_key(self, name: str) -> bytes:
        return await self._request(
            "backup_key", f"back up key {name}", partial(self._client.backup_key, name)
        )

    async def key_state(self, name: str) -> KeyState:
        try:
            await self._request("get_key", f"read key {name}", partial(self._client.get_key, name))
            return KeyState.ACTIVE
        except NotFoundError:
            pass
        try:
            await self._deleted(name)
            return KeyState.SOFT_DELETED
        except NotFoundError:
            return KeyState.ABSENT

    async def _deleted(self, name: str) -> None:
        await self._request(
            "get_deleted_key",
            f"read deleted key {name}",
            partial(self._client.get_deleted_key, name),
        )

    async def restore_key(self, backup: bytes) -> str:
        key = await self._request(
            "restore_key", "restore a key backup", partial(self._client.restore_key_backup, backup)
        )
        return key.name or ""

    async def recover_key(self, name: str) -> None:
        await self._request(
            "recover_key", f"recover key {name}", partial(self._client.recover_deleted_key, name)
        )

    async def purge_key(self, name: str) -> None:
        await self._request(
            "purge_key", f"purge key {name}", partial(self._client.purge_deleted_key, name)
        )
        # Purging completes asynchronously; a restore under the same name fails until then.
        deadline = asyncio.get_running_loop().time() + PURGE_WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            try:
                await self._deleted(name)
            except NotFoundError:
                return
            await asyncio.sleep(2)


async def _next_page(pages: AsyncIterator[AsyncIterator[_T]]) -> AsyncIterator[_T] | None:
    try:
        return await anext(pages)
    except StopAsyncIteration:
        return None


def _created_then_id(item: tuple[Any, str]) -> tuple[float, str]:
    created, version = item
    return (created.timestamp() if created else 0.0, version)


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
    """Builds one ``KeyVaultKeys`` per (vault, credential), sharing the per-vault limiter.

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
        self._clients: dict[tuple[str, int], KeyClient] = {}
        self._http = SharedSession(tls_context(settings.ca_bundle))

    def _client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
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

    def keys(
        self, vault_url: str, credential: AsyncTokenCredential, namespace: str = COMMAND_LINE
    ) -> KeyVaultKeys:
        """The vault's keys, for calls on behalf of ``namespace``; HostNotAllowedError,
        before anything is sent, for a vault outside KVBACKUP_VAULT_HOSTS."""
        self._settings.vault_hosts.check(vault_url, "vault")
        self._forget_idle_vaults()
        cache_key = (vault_url, id(credential))
        client = self._clients.get(cache_key)
        if client is None:
            client = KeyClient(
                vault_url, credential, proxies=proxies_for(vault_url), **self._client_options()
            )
            self._clients[cache_key] = client
        host = vault_host(vault_url)
        paced = self._paces.get(host)
        if paced is None:
            pace = VaultPace(self._settings.vault_rate_limit, clock=self._clock)
            paced = pace, self._metrics.vault(host)
            self._paces[host] = paced
        pace, calls = paced
        return KeyVaultKeys(client, pace, self._slots, calls, namespace=namespace)

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
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self._http.close()
