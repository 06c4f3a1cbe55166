"""How each Key Vault call is admitted: the vault's pace first, then a slot of the
namespace's share; every page of a listing on its own; and vaults unused for long
forgotten, metric series and all."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity.aio import ClientSecretCredential

from kvbackup.adapters.fairshare import FairSlots
from kvbackup.adapters.keyvault import IDLE_VAULT_SECONDS, KeyVaultClients, KeyVaultKeys
from kvbackup.adapters.metrics import OperatorMetrics
from kvbackup.adapters.ratelimit import VaultPace
from kvbackup.config import Settings
from kvbackup.services.retry_policy import retry_per_call
from tests.unit.test_metrics import samples
from tests.unit.test_vault_pace import FakeTime


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture(autouse=True)
def retries_without_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "kvbackup.adapters.keyvault.retry_per_call", partial(retry_per_call, sleep=_no_sleep)
    )


def throttled() -> HttpResponseError:
    error = HttpResponseError(message="slow down", response=None)
    error.status_code = 429
    return error


def keys_of(
    client: Any, pace: VaultPace, slots: FairSlots, namespace: str, metrics: OperatorMetrics
) -> KeyVaultKeys:
    return KeyVaultKeys(
        client, pace, slots, metrics.vault("v.vault.azure.net"), namespace=namespace
    )


def call_count(metrics: OperatorMetrics, operation: str, code: str) -> float:
    labels = frozenset({"vault": "v.vault.azure.net", "operation": operation, "code": code}.items())
    return samples(metrics).get(("kvbackup_keyvault_calls_total", labels), 0.0)


# --- Pace before slot ------------------------------------------------------------------


async def test_calls_waiting_for_a_paused_vault_hold_no_slot_and_others_go_on() -> None:
    slots, metrics = FairSlots(2), OperatorMetrics()
    paused = VaultPace(100.0)
    paused.throttled(30.0)
    waiting = keys_of(None, paused, slots, "a", metrics)
    other = keys_of(None, VaultPace(100.0), slots, "a", metrics)

    async def answer() -> str:
        return "answered"

    blocked = [
        asyncio.create_task(waiting._request("get_key", "read key k", answer)) for _ in range(5)
    ]
    await asyncio.sleep(0.01)
    try:
        assert slots.held("a") == 0
        # The same namespace's call to another vault is not held up by them.
        assert await asyncio.wait_for(other._request("get_key", "read key k", answer), 1) == (
            "answered"
        )
        assert not any(task.done() for task in blocked)
    finally:
        for task in blocked:
            task.cancel()
        await asyncio.gather(*blocked, return_exceptions=True)


async def test_a_call_holds_its_slot_only_while_it_is_sent() -> None:
    slots = FairSlots(4)
    held_while_sent: list[int] = []
    keys = keys_of(None, VaultPace(100.0), slots, "a", OperatorMetrics())

    async def send() -> None:
        held_while_sent.append(slots.held("a"))

    await keys._request("get_key", "read key k", send)

    assert held_while_sent == [1]
    assert slots.held("a") == 0


# --- Every page paced ------------------------------------------------------------------


class Pages:
    """A listing's pages as the SDK's page iterator hands them out: a page that fails is
    asked for again by the next ``anext``, not skipped."""

    def __init__(self, pages: list[list[str]], failures: dict[int, int]) -> None:
        self._pages = pages
        self._failures = dict(failures)
        self._next = 0
        self.fetched: list[int] = []
        #: As the SDK's: None once the last page has been handed out.
        self.continuation_token: str | None = "first"

    def __aiter__(self) -> Pages:
        return self

    async def __anext__(self) -> AsyncIterator[Any]:
        if self._next == len(self._pages):
            raise StopAsyncIteration
        self.fetched.append(self._next)
        if self._failures.get(self._next, 0):
            self._failures[self._next] -= 1
            raise throttled()
        page, self._next = self._pages[self._next], self._next + 1
        self.continuation_token = None if self._next == len(self._pages) else f"page {self._next}"
        return _items(page)


async def _items(versions: list[str]) -> AsyncIterator[Any]:
    for version in versions:
        # Each version created a minute after the one before, in the order of its name.
        created = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            minutes=int(version[1:])
        )
        yield SimpleNamespace(created_on=created, version=version)


class VersionsClient:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def list_properties_of_key_versions(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(by_page=lambda: self.pages)


async def test_every_page_of_a_versions_listing_is_a_paced_call_of_its_own() -> None:
    time, metrics = FakeTime(), OperatorMetrics()
    # One call a second, and no burst: each further call waits one second.
    pace = VaultPace(1.0, clock=time.clock, sleep=time.sleep)
    pages = Pages([["v3", "v1"], ["v2"], ["v4"]], failures={})
    keys = keys_of(VersionsClient(pages), pace, FairSlots(2), "a", metrics)

    versions = await keys.list_versions("k")

    assert versions == ("v1", "v2", "v3", "v4")
    # Three pages, three tokens of the pace; nothing is sent after the last.
    assert time.now == pytest.approx(2.0)
    assert call_count(metrics, "list_versions", "2xx") == 3


async def test_a_throttled_page_is_fetched_again_without_listing_from_the_start() -> None:
    metrics = OperatorMetrics()
    pages = Pages([["v1"], ["v2"], ["v3"]], failures={1: 2})
    keys = keys_of(VersionsClient(pages), VaultPace(100.0), FairSlots(2), "a", metrics)

    versions = await keys.list_versions("k")

    assert versions == ("v1", "v2", "v3")
    assert pages.fetched == [0, 1, 1, 1, 2]
    assert call_count(metrics, "list_versions", "429") == 2


# --- Idle vaults forgotten -------------------------------------------------------------


@pytest.fixture
async def credential() -> AsyncIterator[ClientSecretCredential]:
    """A real credential; nothing here asks it for a token, so it never sends a request."""
    credential = ClientSecretCredential("tenant", "client", "never-used")
    yield credential
    await credential.close()


def vault_series(metrics: OperatorMetrics) -> set[str]:
    return {
        dict(labels)["vault"]
        for name, labels in samples(metrics)
        if name in {"kvbackup_keyvault_calls_total", "kvbackup_keyvault_pace_rate"}
    }


async def _answer() -> str:
    return "answered"


@pytest.fixture
async def clients_at() -> AsyncIterator[tuple[KeyVaultClients, OperatorMetrics, FakeTime]]:
    time, metrics = FakeTime(), OperatorMetrics()
    vaults = KeyVaultClients(Settings(), metrics, clock=time.clock)
    yield vaults, metrics, time
    await vaults.close()


async def test_a_vault_unused_for_long_is_forgotten_with_its_series_and_clients(
    clients_at: tuple[KeyVaultClients, OperatorMetrics, FakeTime],
    credential: ClientSecretCredential,
) -> None:
    vaults, metrics, time = clients_at
    first = vaults.keys("https://gone.vault.azure.net", credential, "a")
    await first._request("get_key", "read key k", _answer)
    time.now += IDLE_VAULT_SECONDS / 2
    await vaults.keys("https://kept.vault.azure.net", credential, "a")._request(
        "get_key", "read key k", _answer
    )
    assert vault_series(metrics) == {"gone.vault.azure.net", "kept.vault.azure.net"}

    time.now += IDLE_VAULT_SECONDS / 2 + 1
    again = vaults.keys("https://kept.vault.azure.net", credential, "a")

    assert vault_series(metrics) == {"kept.vault.azure.net"}
    assert [host for host, _ in vaults.pace_rates()] == ["kept.vault.azure.net"]
    # Opened again, the forgotten vault starts afresh: a new client, a new pace.
    reopened = vaults.keys("https://gone.vault.azure.net", credential, "a")
    assert reopened._client is not first._client
    assert reopened._pace is not first._pace
    assert again._pace is vaults.keys("https://kept.vault.azure.net", credential, "b")._pace
