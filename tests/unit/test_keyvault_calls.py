"""How each Key Vault call is made: every kind of item through its own SDK client, all
of them at one REST API version, naming the kind in their errors and metrics; each call
admitted by the vault's one pace first, then a slot of the namespace's share; every page
of a listing on its own; and vaults unused for long forgotten, metric series and all."""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity.aio import ClientSecretCredential

from kvbackup.adapters import keyvault
from kvbackup.adapters.fairshare import FairSlots
from kvbackup.adapters.keyvault import (
    IDLE_VAULT_SECONDS,
    KeyVaultClients,
    KeyVaultItems,
    SdkClients,
)
from kvbackup.adapters.metrics import OperatorMetrics, VaultOperation
from kvbackup.adapters.ratelimit import VaultPace
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.config import Settings
from kvbackup.errors import HostNotAllowedError, NotFoundError
from kvbackup.services.ports import ItemInfo, ItemState, ItemVersions
from kvbackup.services.retry_policy import retry_per_call
from kvbackup.services.snapshot import ChangeRecord
from tests.unit.fakes import StaticToken
from tests.unit.test_metrics import samples
from tests.unit.test_request_checks import (
    ELSEWHERE,
    VAULT,
    HostileService,
    _Session,
)
from tests.unit.test_vault_pace import FakeTime

KEY, SECRET, CERTIFICATE = ITEM_KINDS


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


def not_found() -> ResourceNotFoundError:
    error = ResourceNotFoundError(message="gone", response=None)
    error.status_code = 404
    return error


class RecordingClient:
    """Stands for an SDK client of any kind: records each method called, with its
    arguments, and answers with ``answers[method]`` (raised when an exception; a listing
    answers with one page of the items given)."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.called: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("list_properties_of_"):

            def listing(*args: Any, **kwargs: Any) -> SimpleNamespace:
                self.called.append((method, args, kwargs))
                answer = self.answers.get(method, [])
                if isinstance(answer, BaseException):
                    return SimpleNamespace(by_page=lambda: _refused(answer))
                pages = Pages([answer], failures={})
                return SimpleNamespace(by_page=lambda: pages)

            return listing

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.called.append((method, args, kwargs))
            answer = self.answers.get(method)
            if isinstance(answer, list):  # one answer per call, in turn
                answer = answer.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.called]


def sdk_of(
    keys: RecordingClient | None = None,
    secrets: RecordingClient | None = None,
    certificates: RecordingClient | None = None,
) -> SdkClients:
    def client(given: RecordingClient | None) -> Any:
        return given if given is not None else RecordingClient()

    return SdkClients(client(keys), client(secrets), client(certificates))


def items_of(
    sdk: Any, pace: VaultPace, slots: FairSlots, namespace: str, metrics: OperatorMetrics
) -> KeyVaultItems:
    calls = sdk.calls if isinstance(sdk, SdkClients) else sdk
    return KeyVaultItems(
        calls, pace, slots, metrics.vault("v.vault.azure.net"), namespace=namespace
    )


def call_count(metrics: OperatorMetrics, operation: str, code: str, kind: ItemKind = KEY) -> float:
    labels = {"vault": "v.vault.azure.net", "operation": operation, "kind": kind, "code": code}
    return samples(metrics).get(("kvbackup_keyvault_calls_total", frozenset(labels.items())), 0.0)


# --- Each kind through its own client ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "noun", "listing", "versions"),
    [
        pytest.param(KEY, "key", "list_properties_of_keys", "key_versions", id="key"),
        pytest.param(
            SECRET, "secret", "list_properties_of_secrets", "secret_versions", id="secret"
        ),
        pytest.param(
            CERTIFICATE,
            "certificate",
            "list_properties_of_certificates",
            "certificate_versions",
            id="certificate",
        ),
    ],
)
async def test_every_operation_on_an_item_goes_to_the_sdk_client_of_its_kind_alone(
    kind: ItemKind, noun: str, listing: str, versions: str
) -> None:
    restored = SimpleNamespace(name="x")
    ours = RecordingClient(
        **{
            f"backup_{noun}": b"backup",
            f"restore_{noun}_backup": restored,
            f"get_deleted_{noun}": not_found(),
            f"list_properties_of_{versions}": [entry("x", version="v1")],
        }
    )
    clients = {kind: ours} | {
        other: RecordingClient(**{f"get_deleted_{other}": not_found()})
        for other in ITEM_KINDS
        if other != kind
    }
    sdk = sdk_of(clients[KEY], clients[SECRET], clients[CERTIFICATE])
    items = items_of(sdk, VaultPace(100.0), FairSlots(2), "a", OperatorMetrics())

    assert [info async for info in items.list_items(kind)] == []
    assert (await items.list_versions(kind, "x")).ids == ("v1",)
    assert await items.backup(kind, "x") == b"backup"
    assert await items.item_state(kind, "x") is ItemState.ACTIVE
    assert await items.restore(kind, b"backup") == "x"
    await items.recover(kind, "x")
    await items.purge(kind, "x")

    assert ours.methods() == [
        listing,
        f"list_properties_of_{versions}",
        f"backup_{noun}",
        f"list_properties_of_{versions}",  # the item's state, told by its versions
        f"restore_{noun}_backup",
        f"recover_deleted_{noun}",
        f"purge_deleted_{noun}",
        # The purge is over once the deleted item is no more.
        f"get_deleted_{noun}",
    ]
    # Only a certificate's purge looks at other kinds: at its key's and secret's deleted
    # entries, gone with it.
    parts = {KEY: "get_deleted_key", SECRET: "get_deleted_secret"}
    assert {other: clients[other].methods() for other in ITEM_KINDS if other != kind} == {
        other: [parts[other]] if kind is CERTIFICATE else []
        for other in ITEM_KINDS
        if other != kind
    }


async def test_a_certificates_purge_is_over_once_its_key_and_secret_are_purged_too() -> None:
    certificates = RecordingClient(get_deleted_certificate=not_found())
    keys = RecordingClient(get_deleted_key=[object(), not_found()])  # purged a moment later
    secrets = RecordingClient(get_deleted_secret=not_found())
    items = items_of(
        sdk_of(keys, secrets, certificates), VaultPace(100.0), FairSlots(2), "a", OperatorMetrics()
    )

    await items.purge(CERTIFICATE, "api-tls")

    assert certificates.methods() == ["purge_deleted_certificate", "get_deleted_certificate"]
    assert keys.methods() == ["get_deleted_key", "get_deleted_key"]
    assert secrets.methods() == ["get_deleted_secret"]


@pytest.mark.parametrize(
    ("kind", "call", "message"),
    [
        pytest.param(SECRET, "backup", "back up secret x: not found", id="secret backup"),
        pytest.param(
            CERTIFICATE, "recover", "recover certificate x: not found", id="certificate recover"
        ),
        pytest.param(
            CERTIFICATE,
            "purge",
            "purge certificate x: not found",
            id="certificate purge",
        ),
    ],
)
async def test_an_error_names_the_kind_of_item_the_call_was_about(
    kind: ItemKind, call: str, message: str
) -> None:
    failing = RecordingClient(
        backup_secret=not_found(),
        recover_deleted_certificate=not_found(),
        purge_deleted_certificate=not_found(),
    )
    sdk = sdk_of(secrets=failing, certificates=failing)
    metrics = OperatorMetrics()
    items = items_of(sdk, VaultPace(100.0), FairSlots(2), "a", metrics)

    with pytest.raises(NotFoundError, match=f"^{message}"):
        await getattr(items, call)(kind, "x")

    assert call_count(metrics, call, "404", kind) == 1


async def test_a_soft_deleted_certificate_is_read_back_as_such_naming_its_kind() -> None:
    certificates = RecordingClient(
        list_properties_of_certificate_versions=not_found(), get_deleted_certificate=object()
    )
    metrics = OperatorMetrics()
    items = items_of(
        sdk_of(certificates=certificates), VaultPace(100.0), FairSlots(2), "a", metrics
    )

    assert await items.item_state(CERTIFICATE, "tls") is ItemState.SOFT_DELETED
    assert call_count(metrics, "list_versions", "404", CERTIFICATE) == 1
    assert call_count(metrics, "get_deleted", "2xx", CERTIFICATE) == 1


async def test_an_active_secret_is_told_by_its_versions_without_reading_its_value() -> None:
    secrets = RecordingClient(
        list_properties_of_secret_versions=[entry("db-password", version="v1")]
    )
    items = items_of(
        sdk_of(secrets=secrets), VaultPace(100.0), FairSlots(2), "a", OperatorMetrics()
    )

    assert await items.item_state(SECRET, "db-password") is ItemState.ACTIVE
    # A secret's value is never asked for, and a disabled one (whose value Key Vault
    # refuses to hand out) is active all the same.
    assert secrets.methods() == ["list_properties_of_secret_versions"]


async def test_an_item_without_versions_is_not_active() -> None:
    keys = RecordingClient(get_deleted_key=not_found())
    items = items_of(sdk_of(keys=keys), VaultPace(100.0), FairSlots(2), "a", OperatorMetrics())

    assert await items.item_state(KEY, "gone") is ItemState.ABSENT
    assert keys.methods() == ["list_properties_of_key_versions", "get_deleted_key"]


#: When the entries below were created and last updated, unless a test says otherwise.
CREATED = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def entry(name: str, version: str | None = None, **attributes: Any) -> SimpleNamespace:
    """An entry of a listing (of items, or of an item's versions, when ``version`` is given)
    as the SDK's properties of every kind carry it; ``attributes`` add to or replace those
    every kind has."""
    shared = {
        "id": f"{VAULT}/items/{name}" + (f"/{version}" if version else ""),
        "name": name,
        "version": version,
        "created_on": CREATED,
        "updated_on": CREATED,
        "enabled": True,
        "not_before": None,
        "expires_on": None,
        "tags": None,
        "recovery_level": "Recoverable+Purgeable",
        "recoverable_days": 90,
    }
    return SimpleNamespace(**(shared | attributes))


def listed(name: str, managed: bool | None = None) -> SimpleNamespace:
    return entry(name, tags={"team": "a"}, managed=managed)


def without_records(infos: list[ItemInfo]) -> list[ItemInfo]:
    return [replace(info, change=None) for info in infos]


async def test_keys_and_secrets_backing_a_certificate_are_listed_as_managed() -> None:
    keys = RecordingClient(list_properties_of_keys=[listed("tls", True), listed("alone", None)])
    secrets = RecordingClient(list_properties_of_secrets=[listed("tls", True)])
    items = items_of(sdk_of(keys, secrets), VaultPace(100.0), FairSlots(2), "a", OperatorMetrics())

    assert without_records([info async for info in items.list_items(KEY)]) == [
        ItemInfo("tls", {"team": "a"}, managed=True),
        ItemInfo("alone", {"team": "a"}, managed=False),
    ]
    assert without_records([info async for info in items.list_items(SECRET)]) == [
        ItemInfo("tls", {"team": "a"}, managed=True)
    ]


async def test_certificates_are_listed_once_issued_and_never_as_managed() -> None:
    # A certificate's properties have no managed flag at all.
    issued = entry("tls", x509_thumbprint=b"\x01\x02")
    certificates = RecordingClient(list_properties_of_certificates=[issued])
    items = items_of(
        sdk_of(certificates=certificates), VaultPace(100.0), FairSlots(2), "a", OperatorMetrics()
    )

    assert without_records([info async for info in items.list_items(CERTIFICATE)]) == [
        ItemInfo("tls")
    ]
    assert certificates.called == [
        ("list_properties_of_certificates", (), {"include_pending": False})
    ]


# --- Change records --------------------------------------------------------------------

LATER = CREATED + datetime.timedelta(days=30)
#: An entry of each kind, with the attributes only that kind's properties carry.
ENTRIES = {
    KEY: entry("k", tags={"team": "a"}, managed=None, exportable=False),
    SECRET: entry("k", tags={"team": "a"}, managed=None, content_type="text/plain"),
    CERTIFICATE: entry("k", tags={"team": "a"}, x509_thumbprint=bytes.fromhex("0a0b")),
}
#: What may change in a listing entry of any kind, without or with a new ``updated``.
CHANGES = {
    "a tag's value": {"tags": {"team": "b"}},
    "another tag": {"tags": {"team": "a", "tier": "gold"}},
    "disabled": {"enabled": False},
    "an expiry": {"expires_on": LATER},
    "an activation date": {"not_before": LATER},
    "updated": {"updated_on": CREATED + datetime.timedelta(seconds=1)},
    "created again": {"created_on": LATER, "updated_on": LATER},
    "its recovery level": {"recovery_level": "Recoverable"},
}
KIND_CHANGES = [
    (SECRET, "its content type", {"content_type": "application/x-pkcs12"}),
    (SECRET, "managed", {"managed": True}),
    (KEY, "exportable", {"exportable": True}),
    (CERTIFICATE, "its thumbprint", {"x509_thumbprint": bytes.fromhex("0a0c")}),
]


async def listing_record(kind: ItemKind, props: SimpleNamespace) -> ChangeRecord | None:
    """The change record of ``props``, listed as the one item of its kind."""
    client = RecordingClient(**{f"list_properties_of_{kind.plural}": [props]})
    sdk = sdk_of(**{kind.plural: client})
    items = items_of(sdk, VaultPace(100.0), FairSlots(2), "a", OperatorMetrics())
    (info,) = [info async for info in items.list_items(kind)]
    return info.change


def changed(props: SimpleNamespace, **attributes: Any) -> SimpleNamespace:
    return SimpleNamespace(**(vars(props) | attributes))


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        *[
            pytest.param(kind, change, id=f"{kind} {what}")
            for kind in ITEM_KINDS
            for what, change in CHANGES.items()
        ],
        *[pytest.param(kind, change, id=f"{kind} {what}") for kind, what, change in KIND_CHANGES],
    ],
)
async def test_a_listing_entrys_record_changes_with_any_attribute_it_gives(
    kind: ItemKind, change: dict[str, Any]
) -> None:
    before = await listing_record(kind, ENTRIES[kind])
    after = await listing_record(kind, changed(ENTRIES[kind], **change))

    assert before is not None
    assert after is not None
    assert after != before


@pytest.mark.parametrize("kind", ITEM_KINDS)
async def test_a_listing_entry_listed_again_unchanged_has_an_equal_record(kind: ItemKind) -> None:
    tags = {"team": "a", "tier": "gold"}
    first = await listing_record(kind, changed(ENTRIES[kind], tags=tags))
    # The same attributes, read again: the tags in another order, the time a moment later
    # within the same second.
    again = changed(
        ENTRIES[kind],
        tags=dict(reversed(tags.items())),
        updated_on=CREATED + datetime.timedelta(milliseconds=400),
    )

    assert await listing_record(kind, again) == first
    assert first is not None
    assert first.updated == CREATED


async def test_a_listing_entry_without_an_updated_time_has_no_record() -> None:
    assert await listing_record(KEY, changed(ENTRIES[KEY], updated_on=None)) is None


async def versions_record(listed: list[SimpleNamespace], *, per_page: int = 25) -> ItemVersions:
    pages = Pages([listed[at : at + per_page] for at in range(0, len(listed), per_page)], {})
    items = items_of(secret_versions(pages), VaultPace(100.0), FairSlots(2), "a", OperatorMetrics())
    return await items.list_versions(SECRET, "s")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"enabled": False}, id="disabled"),
        pytest.param({"tags": {"team": "b"}}, id="tagged"),
        pytest.param({"expires_on": LATER}, id="an expiry"),
        pytest.param({"not_before": LATER}, id="an activation date"),
    ],
)
async def test_the_versions_record_changes_when_an_older_versions_attribute_changes(
    change: dict[str, Any],
) -> None:
    oldest, current = versions("v1", "v2", tags={"team": "a"})
    before = await versions_record([oldest, current])
    # Only the attribute: the record must change even when no time does.
    after = await versions_record([changed(oldest, **change), current])

    assert before.change is not None
    assert after.change is not None
    assert after.change != before.change
    assert after.ids == before.ids == ("v1", "v2")


async def test_the_versions_record_was_updated_when_any_version_last_was() -> None:
    oldest, current = versions("v1", "v2")
    updated_on = current.updated_on + datetime.timedelta(minutes=5)

    listed = await versions_record([changed(oldest, enabled=False, updated_on=updated_on), current])

    assert listed.change is not None
    assert listed.change.updated == updated_on


async def test_the_versions_record_stays_equal_whatever_order_and_pages_they_come_in() -> None:
    listed = versions("v1", "v2", "v3", tags={"team": "a"})

    first = await versions_record(listed)
    again = await versions_record(list(reversed(listed)), per_page=2)

    assert again == first
    assert first.change is not None
    assert first.change.updated == listed[-1].updated_on


async def test_versions_without_an_updated_time_have_no_record() -> None:
    listed = versions("v1", "v2", updated_on=None)

    assert await versions_record(listed) == ItemVersions(("v1", "v2"), None)


# --- Pace before slot ------------------------------------------------------------------


async def _answer() -> str:
    return "answered"


async def test_calls_of_every_kind_take_their_turn_at_the_vaults_one_pace() -> None:
    time, metrics = FakeTime(), OperatorMetrics()
    # One call a second, and no burst: each further call waits one second.
    pace = VaultPace(1.0, clock=time.clock, sleep=time.sleep)
    answers = {f"backup_{kind}": b"backup" for kind in ITEM_KINDS}
    sdk = sdk_of(RecordingClient(**answers), RecordingClient(**answers), RecordingClient(**answers))
    items = items_of(sdk, pace, FairSlots(2), "a", metrics)

    for kind in ITEM_KINDS:
        await items.backup(kind, "x")

    assert time.now == pytest.approx(2.0)
    assert [call_count(metrics, "backup", "2xx", kind) for kind in ITEM_KINDS] == [1, 1, 1]


async def test_calls_waiting_for_a_paused_vault_hold_no_slot_and_others_go_on() -> None:
    slots, metrics = FairSlots(2), OperatorMetrics()
    paused = VaultPace(100.0)
    paused.throttled(30.0)
    waiting = items_of({}, paused, slots, "a", metrics)
    other = items_of({}, VaultPace(100.0), slots, "a", metrics)

    def read(items: KeyVaultItems) -> Any:
        return items._request(VaultOperation.GET_DELETED, SECRET, "read secret s", _answer)

    blocked = [asyncio.create_task(read(waiting)) for _ in range(5)]
    await asyncio.sleep(0.01)
    try:
        assert slots.held("a") == 0
        # The same namespace's call to another vault is not held up by them.
        assert await asyncio.wait_for(read(other), 1) == "answered"
        assert not any(task.done() for task in blocked)
    finally:
        for task in blocked:
            task.cancel()
        await asyncio.gather(*blocked, return_exceptions=True)


async def test_a_call_holds_its_slot_only_while_it_is_sent() -> None:
    slots = FairSlots(4)
    held_while_sent: list[int] = []
    items = items_of({}, VaultPace(100.0), slots, "a", OperatorMetrics())

    async def send() -> None:
        held_while_sent.append(slots.held("a"))

    await items._request(VaultOperation.GET_DELETED, KEY, "read key k", send)

    assert held_while_sent == [1]
    assert slots.held("a") == 0


# --- Every page paced ------------------------------------------------------------------


class Pages:
    """A listing's pages as the SDK's page iterator hands them out: a page that fails is
    asked for again by the next ``anext``, not skipped."""

    def __init__(self, pages: list[list[Any]], failures: dict[int, int]) -> None:
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


async def _refused(error: BaseException) -> AsyncIterator[Any]:
    raise error
    yield  # an async generator that fails at its first page


async def _items(page: list[Any]) -> AsyncIterator[Any]:
    for item in page:
        yield item


def versions(*ids: str, **attributes: Any) -> list[SimpleNamespace]:
    """Versions of secret ``s``, each created (and last updated) a minute after the one
    before, in the order of its id; ``attributes`` as ``entry``'s."""
    listed = []
    for version in ids:
        at = CREATED + datetime.timedelta(minutes=int(version[1:]))
        listed.append(entry("s", version, **({"created_on": at, "updated_on": at} | attributes)))
    return listed


class VersionsClient(RecordingClient):
    def __init__(self, pages: Pages) -> None:
        super().__init__()
        self.pages = pages

    def list_properties_of_secret_versions(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(by_page=lambda: self.pages)


def secret_versions(pages: Pages) -> SdkClients:
    return sdk_of(secrets=VersionsClient(pages))


async def test_every_page_of_a_versions_listing_is_a_paced_call_of_its_own() -> None:
    time, metrics = FakeTime(), OperatorMetrics()
    pace = VaultPace(1.0, clock=time.clock, sleep=time.sleep)
    pages = Pages([versions("v3", "v1"), versions("v2"), versions("v4")], failures={})
    items = items_of(secret_versions(pages), pace, FairSlots(2), "a", metrics)

    listed_versions = await items.list_versions(SECRET, "s")

    assert listed_versions.ids == ("v1", "v2", "v3", "v4")
    # Three pages, three tokens of the pace; nothing is sent after the last.
    assert time.now == pytest.approx(2.0)
    assert call_count(metrics, "list_versions", "2xx", SECRET) == 3


async def test_a_throttled_page_is_fetched_again_without_listing_from_the_start() -> None:
    metrics = OperatorMetrics()
    pages = Pages([versions("v1"), versions("v2"), versions("v3")], failures={1: 2})
    items = items_of(secret_versions(pages), VaultPace(100.0), FairSlots(2), "a", metrics)

    listed_versions = await items.list_versions(SECRET, "s")

    assert listed_versions.ids == ("v1", "v2", "v3")
    assert pages.fetched == [0, 1, 1, 1, 2]
    assert call_count(metrics, "list_versions", "429", SECRET) == 2


# --- The clients of a vault ------------------------------------------------------------


def backup_answer(url: str) -> tuple[int, dict[str, Any]]:
    """What a vault answers a backup of anything: its bytes, base64url-encoded."""
    return 200, {"value": base64.urlsafe_b64encode(b"backup").decode().rstrip("=")}


@pytest.fixture
def sent_to(monkeypatch: pytest.MonkeyPatch) -> Callable[..., HostileService]:
    """Makes the vault clients built next send through a service answering so."""

    def install(answer: Callable[[str], tuple[int, dict[str, Any]]]) -> HostileService:
        service = HostileService(answer)
        monkeypatch.setattr(keyvault, "SharedSession", lambda _tls: _Session(service))
        return service

    return install


def api_versions(service: HostileService) -> set[str]:
    return {
        version for url in service.sent for version in parse_qs(urlsplit(url).query)["api-version"]
    }


@pytest.mark.parametrize(
    "configured", [pytest.param(None, id="the SDK's default"), pytest.param("7.5", id="7.5")]
)
async def test_every_kind_is_asked_at_the_one_api_version_the_keys_client_speaks(
    sent_to: Callable[..., HostileService], configured: str | None
) -> None:
    service = sent_to(backup_answer)
    settings = Settings(
        verify_challenge_resource=False, vault_rate_limit=1e6, keyvault_api_version=configured
    )
    vaults = KeyVaultClients(settings)
    try:
        items = vaults.vault(VAULT, StaticToken())
        assert [await items.backup(kind, "x") for kind in ITEM_KINDS] == [b"backup"] * 3
    finally:
        await vaults.close()

    assert {urlsplit(url).path for url in service.sent} == {
        "/keys/x/backup",
        "/secrets/x/backup",
        "/certificates/x/backup",
    }
    (version,) = api_versions(service)
    if configured is not None:
        assert version == configured


@pytest.mark.parametrize("kind", [SECRET, CERTIFICATE])
async def test_a_next_page_link_to_another_host_is_refused_whatever_the_kind_listed(
    sent_to: Callable[..., HostileService], kind: ItemKind
) -> None:
    page = {"value": [], "nextLink": f"{ELSEWHERE}/{kind.plural}?$skiptoken=1"}
    service = sent_to(lambda url: (200, page))
    vaults = KeyVaultClients(Settings(verify_challenge_resource=False, vault_rate_limit=1e6))
    try:
        with pytest.raises(HostNotAllowedError, match=r"attacker\.example\.com:443 is not in"):
            [info async for info in vaults.vault(VAULT, StaticToken()).list_items(kind)]
    finally:
        await vaults.close()

    assert service.sent
    assert not [url for url in service.sent if url.startswith(ELSEWHERE)]


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
    first = vaults.vault("https://gone.vault.azure.net", credential, "a")
    await first._request(VaultOperation.GET_DELETED, KEY, "read key k", _answer)
    time.now += IDLE_VAULT_SECONDS / 2
    await vaults.vault("https://kept.vault.azure.net", credential, "a")._request(
        VaultOperation.GET_DELETED, CERTIFICATE, "read certificate c", _answer
    )
    assert vault_series(metrics) == {"gone.vault.azure.net", "kept.vault.azure.net"}

    time.now += IDLE_VAULT_SECONDS / 2 + 1
    again = vaults.vault("https://kept.vault.azure.net", credential, "a")

    assert vault_series(metrics) == {"kept.vault.azure.net"}
    assert [host for host, _ in vaults.pace_rates()] == ["kept.vault.azure.net"]
    # Opened again, the forgotten vault starts afresh: new clients, a new pace.
    reopened = vaults.vault("https://gone.vault.azure.net", credential, "a")
    assert all(reopened._sdk[kind] is not first._sdk[kind] for kind in ITEM_KINDS)
    assert reopened._pace is not first._pace
    assert again._pace is vaults.vault("https://kept.vault.azure.net", credential, "b")._pace


async def test_a_released_credential_leaves_no_client_of_any_kind_behind(
    clients_at: tuple[KeyVaultClients, OperatorMetrics, FakeTime],
    credential: ClientSecretCredential,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vaults, _, _ = clients_at
    closed: list[str] = []
    items = vaults.vault("https://payments.vault.azure.net", credential)
    for kind in ITEM_KINDS:
        client = items._sdk[kind].backup.__self__  # type: ignore[attr-defined]
        monkeypatch.setattr(client, "close", partial(_record_close, closed, kind))

    await vaults.release(credential)

    assert closed == list(ITEM_KINDS)
    # Asked again, the vault is served by clients built anew.
    assert (
        vaults.vault("https://payments.vault.azure.net", credential)._sdk[KEY]
        is not (items._sdk[KEY])
    )


async def _record_close(closed: list[str], kind: ItemKind) -> None:
    closed.append(kind)
