"""How each Key Vault call is made: every kind of item through its own SDK client's
pipeline, all of them at one REST API version, naming the kind in their errors and
metrics; each call admitted by the vault's one pace first, then a slot of the namespace's
share; every page of a listing on its own; the vault's answers read as hostile; and vaults
unused for long forgotten, metric series and all. The clients are the operator's own,
over a transport of the test's that answers as a vault would (test_request_checks)."""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
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
from kvbackup.errors import (
    HostNotAllowedError,
    IntegrityError,
    ItemAccessDeniedError,
    NotFoundError,
    TooLargeError,
)
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
Answer = tuple[int, dict[str, Any]]


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture(autouse=True)
def retries_without_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "kvbackup.adapters.keyvault.retry_per_call", partial(retry_per_call, sleep=_no_sleep)
    )


def refused(status: int, code: str = "Refused") -> Answer:
    return status, {"error": {"code": code, "message": f"the vault says {status}"}}


NOT_FOUND = refused(404, "NotFound")
THROTTLED = refused(429, "Throttled")


class Vault(HostileService):
    """Answers each request by its route, ``"METHOD /path"`` (and `` $skiptoken`` when the
    URL has one), with ``routes[route]``: one answer, or a list of answers given in turn;
    404 for any other route. ``asked`` holds the routes asked for, in order, once the
    client had its token."""

    def __init__(self, routes: dict[str, Answer | list[Answer]]) -> None:
        super().__init__(lambda url: NOT_FOUND)
        self.routes = routes
        self.asked: list[str] = []

    def respond(self, method: str, url: str) -> Answer:
        parts = urlsplit(url)
        route = f"{method} {parts.path}"
        for token in parse_qs(parts.query).get("$skiptoken", []):
            route += f" {token}"
        self.asked.append(route)
        answer = self.routes.get(route, NOT_FOUND)
        if isinstance(answer, list):
            return answer.pop(0) if len(answer) > 1 else answer[0]
        return answer


@pytest.fixture
async def vault_items(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., KeyVaultItems]]:
    """Opens the items of a vault the given service answers for, with the operator's own
    clients; a pace and metrics of the test's when given."""
    opened: list[tuple[KeyVaultClients, SdkClients]] = []

    def open_items(
        service: HostileService,
        pace: VaultPace | None = None,
        metrics: OperatorMetrics | None = None,
        slots: FairSlots | None = None,
    ) -> KeyVaultItems:
        monkeypatch.setattr(keyvault, "SharedSession", lambda _tls: _Session(service))
        vaults = KeyVaultClients(Settings(verify_challenge_resource=False, vault_rate_limit=1e6))
        sdk = vaults._sdk_clients(VAULT, StaticToken())
        opened.append((vaults, sdk))
        return KeyVaultItems(
            sdk.calls,
            pace if pace is not None else VaultPace(100.0),
            slots if slots is not None else FairSlots(2),
            (metrics if metrics is not None else OperatorMetrics()).vault("v.vault.azure.net"),
        )

    yield open_items
    for vaults, sdk in opened:
        await sdk.close()
        await vaults.close()


def call_count(metrics: OperatorMetrics, operation: str, code: str, kind: ItemKind = KEY) -> float:
    labels = {"vault": "v.vault.azure.net", "operation": operation, "kind": kind, "code": code}
    return samples(metrics).get(("kvbackup_keyvault_calls_total", frozenset(labels.items())), 0.0)


#: When the entries below were created and last updated (unix seconds), unless a test
#: says otherwise.
CREATED = 1_767_225_600


def entry(kind: ItemKind, name: str, version: str | None = None, **members: Any) -> dict[str, Any]:
    """An entry of a listing (of items, or of an item's versions, when ``version`` is given)
    as Key Vault gives it; ``members`` add to or replace those every kind has."""
    identifier = f"{VAULT}/{kind.plural}/{name}" + (f"/{version}" if version else "")
    shared = {
        "kid" if kind is KEY else "id": identifier,
        "attributes": {
            "enabled": True,
            "created": CREATED,
            "updated": CREATED,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        },
    }
    return shared | members


def changed(listed: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    """``listed`` with ``attributes`` added to or replaced in its attributes."""
    again = copy.deepcopy(listed)
    again["attributes"].update(attributes)
    return again


def page(*entries: dict[str, Any], next_link: str | None = None) -> Answer:
    answer: dict[str, Any] = {"value": list(entries)}
    if next_link is not None:
        answer["nextLink"] = next_link
    return 200, answer


def backup_answer(url: str = "") -> Answer:
    """What a vault answers a backup of anything: its bytes, base64url-encoded."""
    return 200, {"value": base64.urlsafe_b64encode(b"backup").decode().rstrip("=")}


def bundle(kind: ItemKind, name: str) -> Answer:
    """An item as Key Vault answers a restore, a recovery or a read of it."""
    identifier = f"{VAULT}/{kind.plural}/{name}/v1"
    if kind is KEY:
        return 200, {"key": {"kid": identifier, "kty": "RSA"}, "attributes": {}}
    return 200, {"id": identifier, "attributes": {}}


# --- Each kind through its own client ---------------------------------------------------


@pytest.mark.parametrize("kind", ITEM_KINDS)
async def test_every_operation_on_an_item_goes_to_the_paths_of_its_kind_alone(
    vault_items: Callable[..., KeyVaultItems], kind: ItemKind
) -> None:
    plural = kind.plural
    vault = Vault(
        {
            f"GET /{plural}": page(),
            f"GET /{plural}/x/versions": page(entry(kind, "x", "v1")),
            f"POST /{plural}/x/backup": backup_answer(),
            f"POST /{plural}/restore": bundle(kind, "x"),
            f"POST /deleted{plural}/x/recover": bundle(kind, "x"),
            # The SDK's recovery waits until the item can be read again.
            f"GET /{plural}/x/": bundle(kind, "x"),
            f"DELETE /deleted{plural}/x": (204, {}),
        }
    )
    items = vault_items(vault)

    assert [info async for info in items.list_items(kind)] == []
    assert (await items.list_versions(kind, "x")).ids == ("v1",)
    assert await items.backup(kind, "x") == b"backup"
    assert await items.item_state(kind, "x") is ItemState.ACTIVE
    assert await items.restore(kind, b"backup") == "x"
    await items.recover(kind, "x")
    await items.purge(kind, "x")

    # Only a certificate's purge looks at other kinds: at its key's and secret's deleted
    # entries, gone with it.
    parts = ["GET /deletedkeys/x", "GET /deletedsecrets/x"] if kind is CERTIFICATE else []
    assert vault.asked == [
        f"GET /{plural}",
        f"GET /{plural}/x/versions",
        f"POST /{plural}/x/backup",
        f"GET /{plural}/x/versions",  # the item's state, told by its versions
        f"POST /{plural}/restore",
        f"POST /deleted{plural}/x/recover",
        f"GET /{plural}/x/",
        f"DELETE /deleted{plural}/x",
        # The purge is over once the deleted item is no more.
        f"GET /deleted{plural}/x",
        *parts,
    ]


async def test_a_certificates_purge_is_over_once_its_key_and_secret_are_purged_too(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    deleted_key = 200, {"key": {"kid": f"{VAULT}/keys/api-tls/v1"}, "attributes": {}}
    vault = Vault(
        {
            "DELETE /deletedcertificates/api-tls": (204, {}),
            "GET /deletedkeys/api-tls": [deleted_key, NOT_FOUND],  # purged a moment later
        }
    )
    await vault_items(vault).purge(CERTIFICATE, "api-tls")

    assert vault.asked == [
        "DELETE /deletedcertificates/api-tls",
        "GET /deletedcertificates/api-tls",
        "GET /deletedkeys/api-tls",
        "GET /deletedkeys/api-tls",
        "GET /deletedsecrets/api-tls",
    ]


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
    vault_items: Callable[..., KeyVaultItems], kind: ItemKind, call: str, message: str
) -> None:
    metrics = OperatorMetrics()
    items = vault_items(Vault({}), metrics=metrics)

    with pytest.raises(NotFoundError, match=f"^{message}"):
        await getattr(items, call)(kind, "x")

    assert call_count(metrics, call, "404", kind) == 1


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        pytest.param(
            refused(403, "Forbidden"),
            ItemAccessDeniedError,
            "back up key x: Forbidden: the vault says 403",
            id="403: this item refused",
        ),
        pytest.param(NOT_FOUND, NotFoundError, r"back up key x: not found \(NotFound", id="404"),
    ],
)
async def test_a_refused_backup_is_told_as_the_sdk_would_have_raised_it(
    vault_items: Callable[..., KeyVaultItems], answer: Answer, error: type[Exception], message: str
) -> None:
    items = vault_items(Vault({"POST /keys/x/backup": answer}))

    with pytest.raises(error, match=f"^{message}"):
        await items.backup(KEY, "x")


async def test_a_soft_deleted_certificate_is_read_back_as_such_naming_its_kind(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    metrics = OperatorMetrics()
    deleted = 200, {"id": f"{VAULT}/certificates/tls/v1", "attributes": {}}
    items = vault_items(Vault({"GET /deletedcertificates/tls": deleted}), metrics=metrics)

    assert await items.item_state(CERTIFICATE, "tls") is ItemState.SOFT_DELETED
    assert call_count(metrics, "list_versions", "404", CERTIFICATE) == 1
    assert call_count(metrics, "get_deleted", "2xx", CERTIFICATE) == 1


async def test_an_active_secret_is_told_by_its_versions_without_reading_its_value(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    vault = Vault({"GET /secrets/db-password/versions": page(entry(SECRET, "db-password", "v1"))})

    assert await vault_items(vault).item_state(SECRET, "db-password") is ItemState.ACTIVE
    # A secret's value is never asked for, and a disabled one (whose value Key Vault
    # refuses to hand out) is active all the same.
    assert vault.asked == ["GET /secrets/db-password/versions"]


async def test_an_item_without_versions_is_not_active(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    vault = Vault({"GET /keys/gone/versions": page()})

    assert await vault_items(vault).item_state(KEY, "gone") is ItemState.ABSENT
    assert vault.asked == ["GET /keys/gone/versions", "GET /deletedkeys/gone"]


async def test_an_item_whose_first_versions_page_is_empty_is_told_by_the_next(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    # Key Vault may answer a page with no entries and a link to more.
    vault = Vault(
        {
            "GET /keys/k/versions": page(next_link=f"{VAULT}/keys/k/versions?$skiptoken=2"),
            "GET /keys/k/versions 2": page(entry(KEY, "k", "v1")),
        }
    )

    assert await vault_items(vault).item_state(KEY, "k") is ItemState.ACTIVE


def without_records(infos: list[ItemInfo]) -> list[ItemInfo]:
    return [replace(info, change=None) for info in infos]


async def test_keys_and_secrets_backing_a_certificate_are_listed_as_managed(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    tags = {"team": "a"}
    vault = Vault(
        {
            "GET /keys": page(
                entry(KEY, "tls", tags=tags, managed=True), entry(KEY, "alone", tags=tags)
            ),
            "GET /secrets": page(entry(SECRET, "tls", tags=tags, managed=True)),
        }
    )
    items = vault_items(vault)

    assert without_records([info async for info in items.list_items(KEY)]) == [
        ItemInfo("tls", {"team": "a"}, managed=True),
        ItemInfo("alone", {"team": "a"}, managed=False),
    ]
    assert without_records([info async for info in items.list_items(SECRET)]) == [
        ItemInfo("tls", {"team": "a"}, managed=True)
    ]


async def test_certificates_are_listed_once_issued_and_never_as_managed(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    # A certificate's entry has no managed flag: one that says so anyway is not believed.
    vault = Vault({"GET /certificates": page(entry(CERTIFICATE, "tls", x5t="AQI", managed=True))})

    listed = [info async for info in vault_items(vault).list_items(CERTIFICATE)]

    assert without_records(listed) == [ItemInfo("tls")]
    assert {parse_qs(urlsplit(url).query)["includePending"][0] for url in vault.sent} == {"false"}


async def test_a_listing_asks_for_full_pages(vault_items: Callable[..., KeyVaultItems]) -> None:
    vault = Vault({"GET /keys": page(), "GET /secrets/s/versions": page()})
    items = vault_items(vault)

    assert [info async for info in items.list_items(KEY)] == []
    assert (await items.list_versions(SECRET, "s")).ids == ()

    assert {parse_qs(urlsplit(url).query)["maxresults"][0] for url in vault.sent} == {"25"}


# --- Answers read as hostile ------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param({"value": {"kid": "x"}}, "value is not a list of objects", id="value"),
        pytest.param({"value": ["x"]}, "value is not a list of objects", id="entries"),
        pytest.param({"value": [], "nextLink": 7}, "nextLink is not a string", id="nextLink"),
        pytest.param([], "not a JSON object", id="a list"),
        pytest.param(
            {"value": [{"kid": f"{VAULT}/keys/a%2Fb"}]},
            "kid does not end in a Key Vault name",
            id="a name with a slash",
        ),
        pytest.param(
            {"value": [{"kid": f"{VAULT}/keys/{'k' * 128}"}]}, "does not end in", id="too long"
        ),
        pytest.param({"value": [{"id": f"{VAULT}/keys/k"}]}, "does not end in", id="no kid"),
        pytest.param(
            {"value": [{"kid": f"{VAULT}/keys/k", "tags": {"team": 1}}]},
            "tags are not strings",
            id="tags",
        ),
        pytest.param(
            {"value": [{"kid": f"{VAULT}/keys/k", "attributes": {"updated": "now"}}]},
            "updated time is not a number",
            id="updated",
        ),
        pytest.param(
            {"value": [{"kid": f"{VAULT}/keys/k", "attributes": {"updated": 1e30}}]},
            "updated time is out of range",
            id="updated far away",
        ),
    ],
)
async def test_a_listing_page_not_shaped_as_key_vaults_fails_naming_the_call(
    vault_items: Callable[..., KeyVaultItems], answer: Any, message: str
) -> None:
    items = vault_items(Vault({"GET /keys": (200, answer)}))

    with pytest.raises(IntegrityError, match=f"^list keys: .*{message}"):
        [info async for info in items.list_items(KEY)]


async def test_a_version_whose_id_does_not_end_in_a_version_fails_naming_the_call(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    vault = Vault({"GET /secrets/s/versions": page(entry(SECRET, "s", "v1.2"))})

    with pytest.raises(IntegrityError, match=r"^list versions of secret s: .*name and version"):
        await vault_items(vault).list_versions(SECRET, "s")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"value": "not+base64/url"}, id="base64, not base64url"),
        pytest.param({"value": "A"}, id="one character too many"),
        pytest.param({"value": 1}, id="a number"),
        pytest.param({}, id="nothing"),
    ],
)
async def test_a_backup_answer_without_base64url_bytes_fails_naming_the_call(
    vault_items: Callable[..., KeyVaultItems], answer: dict[str, Any]
) -> None:
    items = vault_items(Vault({"POST /keys/k/backup": (200, answer)}))

    with pytest.raises(IntegrityError, match=r"^back up key k: .*no base64url backup"):
        await items.backup(KEY, "k")


async def test_a_backup_answer_longer_than_any_backup_is_refused_as_too_large(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    endless = "A" * keyvault.ANSWER_MAX_BYTES
    items = vault_items(Vault({"POST /keys/k/backup": (200, {"value": endless})}))

    with pytest.raises(TooLargeError, match=r"^back up key k: the vault's answer runs past"):
        await items.backup(KEY, "k")


async def test_each_call_carries_a_client_request_id_of_its_own(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    service = Vault({"POST /keys/k/backup": backup_answer()})
    items = vault_items(service)
    ids: list[str] = []
    send = service.send

    async def noting_ids(request: Any, **kwargs: Any) -> Any:
        if "Authorization" in request.headers:
            ids.append(request.headers["x-ms-client-request-id"])
        return await send(request, **kwargs)

    service.send = noting_ids  # type: ignore[method-assign]
    await items.backup(KEY, "k")
    await items.backup(KEY, "k")

    assert len(set(ids)) == len(ids) == 2
    assert all(uuid.UUID(sent).version == 4 for sent in ids)


# --- Change records --------------------------------------------------------------------

LATER = CREATED + 30 * 86_400
#: An entry of each kind, with the members only that kind's entries carry.
ENTRIES = {
    KEY: changed(entry(KEY, "k", tags={"team": "a"}), exportable=False),
    SECRET: entry(SECRET, "k", tags={"team": "a"}, contentType="text/plain"),
    CERTIFICATE: entry(CERTIFICATE, "k", tags={"team": "a"}, x5t="Cgs"),
}
#: What may change in a listing entry of any kind: its members, or its attributes.
CHANGES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "a tag's value": ({"tags": {"team": "b"}}, {}),
    "another tag": ({"tags": {"team": "a", "tier": "gold"}}, {}),
    "disabled": ({}, {"enabled": False}),
    "an expiry": ({}, {"exp": LATER}),
    "an activation date": ({}, {"nbf": LATER}),
    "updated": ({}, {"updated": CREATED + 1}),
    "created again": ({}, {"created": LATER, "updated": LATER}),
    "its recovery level": ({}, {"recoveryLevel": "Recoverable"}),
    "an attribute unknown today": ({}, {"hsmPlatform": "2"}),
}
KIND_CHANGES = [
    (SECRET, "its content type", ({"contentType": "application/x-pkcs12"}, {})),
    (SECRET, "managed", ({"managed": True}, {})),
    (KEY, "exportable", ({}, {"exportable": True})),
    (CERTIFICATE, "its thumbprint", ({"x5t": "Cgw"}, {})),
]


async def listing_record(
    vault_items: Callable[..., KeyVaultItems], kind: ItemKind, listed: dict[str, Any]
) -> ChangeRecord | None:
    """The change record of ``listed``, listed as the one item of its kind."""
    items = vault_items(Vault({f"GET /{kind.plural}": page(listed)}))
    (info,) = [info async for info in items.list_items(kind)]
    return info.change


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
async def test_a_listing_entrys_record_changes_with_anything_it_gives(
    vault_items: Callable[..., KeyVaultItems],
    kind: ItemKind,
    change: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    members, attributes = change
    before = await listing_record(vault_items, kind, ENTRIES[kind])
    after = await listing_record(vault_items, kind, changed(ENTRIES[kind], **attributes) | members)

    assert before is not None
    assert after is not None
    assert after != before


@pytest.mark.parametrize("kind", ITEM_KINDS)
async def test_a_listing_entry_listed_again_unchanged_has_an_equal_record(
    vault_items: Callable[..., KeyVaultItems], kind: ItemKind
) -> None:
    tags = {"team": "a", "tier": "gold"}
    first = await listing_record(vault_items, kind, ENTRIES[kind] | {"tags": tags})
    # The same entry, its members and tags in another order.
    again = dict(reversed((ENTRIES[kind] | {"tags": dict(reversed(tags.items()))}).items()))

    assert await listing_record(vault_items, kind, again) == first
    assert first is not None
    assert first.updated.timestamp() == CREATED


async def test_a_listing_entry_without_an_updated_time_has_no_record(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    listed = copy.deepcopy(ENTRIES[KEY])
    del listed["attributes"]["updated"]

    assert await listing_record(vault_items, KEY, listed) is None


def versions(*ids: str, **attributes: Any) -> list[dict[str, Any]]:
    """Versions of secret ``s``, each created (and last updated) a minute after the one
    before, in the order of its id; ``attributes`` added to or replacing theirs."""
    listed = []
    for version in ids:
        at = CREATED + 60 * int(version[1:])
        listed.append(
            changed(entry(SECRET, "s", version), **({"created": at, "updated": at} | attributes))
        )
    return listed


def versions_pages(*pages: list[dict[str, Any]]) -> dict[str, Answer | list[Answer]]:
    """Routes answering the versions of secret ``s`` in these pages."""
    routes: dict[str, Answer | list[Answer]] = {}
    for at, entries in enumerate(pages):
        route = "GET /secrets/s/versions" + (f" {at}" if at else "")
        last = at == len(pages) - 1
        next_link = None if last else f"{VAULT}/secrets/s/versions?$skiptoken={at + 1}"
        routes[route] = page(*entries, next_link=next_link)
    return routes


async def versions_record(
    vault_items: Callable[..., KeyVaultItems], listed: list[dict[str, Any]], *, per_page: int = 25
) -> ItemVersions:
    pages = [listed[at : at + per_page] for at in range(0, len(listed), per_page)]
    items = vault_items(Vault(versions_pages(*pages)))
    return await items.list_versions(SECRET, "s")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"attributes": {"enabled": False}}, id="disabled"),
        pytest.param({"tags": {"team": "b"}}, id="tagged"),
        pytest.param({"attributes": {"exp": LATER}}, id="an expiry"),
        pytest.param({"attributes": {"nbf": LATER}}, id="an activation date"),
    ],
)
async def test_the_versions_record_changes_when_an_older_versions_attribute_changes(
    vault_items: Callable[..., KeyVaultItems], change: dict[str, Any]
) -> None:
    oldest, current = (version | {"tags": {"team": "a"}} for version in versions("v1", "v2"))
    before = await versions_record(vault_items, [oldest, current])
    # Only the attribute: the record must change even when no time does.
    after = await versions_record(
        vault_items, [changed(oldest, **change.get("attributes", {})) | change, current]
    )

    assert before.change is not None
    assert after.change is not None
    assert after.change != before.change
    assert after.ids == before.ids == ("v1", "v2")


async def test_the_versions_record_was_updated_when_any_version_last_was(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    oldest, current = versions("v1", "v2")
    updated = current["attributes"]["updated"] + 5 * 60

    listed = await versions_record(
        vault_items, [changed(oldest, enabled=False, updated=updated), current]
    )

    assert listed.change is not None
    assert listed.change.updated.timestamp() == updated


async def test_the_versions_record_stays_equal_whatever_order_and_pages_they_come_in(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    listed = versions("v1", "v2", "v3")

    first = await versions_record(vault_items, listed)
    again = await versions_record(vault_items, list(reversed(listed)), per_page=2)

    assert again == first
    assert first.change is not None
    assert first.change.updated.timestamp() == listed[-1]["attributes"]["updated"]


async def test_versions_without_an_updated_time_have_no_record(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    listed = versions("v1", "v2")
    for version in listed:
        del version["attributes"]["updated"]

    assert await versions_record(vault_items, listed) == ItemVersions(("v1", "v2"), None)


async def test_versions_created_in_the_same_second_are_in_the_order_of_their_ids(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    listed = versions("v3", "v1", "v2", created=CREATED)

    assert (await versions_record(vault_items, listed)).ids == ("v1", "v2", "v3")


# --- Pace before slot ------------------------------------------------------------------


async def _answer() -> str:
    return "answered"


async def test_calls_of_every_kind_take_their_turn_at_the_vaults_one_pace(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    time, metrics = FakeTime(), OperatorMetrics()
    # One call a second, and no burst: each further call waits one second.
    pace = VaultPace(1.0, clock=time.clock, sleep=time.sleep)
    vault = Vault({f"POST /{kind.plural}/x/backup": backup_answer() for kind in ITEM_KINDS})
    items = vault_items(vault, pace=pace, metrics=metrics)

    for kind in ITEM_KINDS:
        await items.backup(kind, "x")

    assert time.now == pytest.approx(2.0)
    assert [call_count(metrics, "backup", "2xx", kind) for kind in ITEM_KINDS] == [1, 1, 1]


async def test_calls_waiting_for_a_paused_vault_hold_no_slot_and_others_go_on() -> None:
    slots, metrics = FairSlots(2), OperatorMetrics()
    paused = VaultPace(100.0)
    paused.throttled(30.0)
    waiting = KeyVaultItems({}, paused, slots, metrics.vault("v.vault.azure.net"), namespace="a")
    other = KeyVaultItems({}, VaultPace(100.0), slots, metrics.vault("v"), namespace="a")

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
    items = KeyVaultItems({}, VaultPace(100.0), slots, OperatorMetrics().vault("v"), namespace="a")

    async def send() -> None:
        held_while_sent.append(slots.held("a"))

    await items._request(VaultOperation.GET_DELETED, KEY, "read key k", send)

    assert held_while_sent == [1]
    assert slots.held("a") == 0


# --- Every page paced ------------------------------------------------------------------


async def test_every_page_of_a_versions_listing_is_a_paced_call_of_its_own(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    time, metrics = FakeTime(), OperatorMetrics()
    pace = VaultPace(1.0, clock=time.clock, sleep=time.sleep)
    vault = Vault(versions_pages(versions("v3", "v1"), versions("v2"), versions("v4")))
    items = vault_items(vault, pace=pace, metrics=metrics)

    listed_versions = await items.list_versions(SECRET, "s")

    assert listed_versions.ids == ("v1", "v2", "v3", "v4")
    # Three pages, three tokens of the pace; nothing is sent after the last.
    assert time.now == pytest.approx(2.0)
    assert call_count(metrics, "list_versions", "2xx", SECRET) == 3


async def test_a_throttled_page_is_fetched_again_without_listing_from_the_start(
    vault_items: Callable[..., KeyVaultItems],
) -> None:
    metrics = OperatorMetrics()
    routes = versions_pages(versions("v1"), versions("v2"), versions("v3"))
    second = routes["GET /secrets/s/versions 1"]
    assert not isinstance(second, list)
    routes["GET /secrets/s/versions 1"] = [THROTTLED, THROTTLED, second]
    vault = Vault(routes)
    items = vault_items(vault, metrics=metrics)

    listed_versions = await items.list_versions(SECRET, "s")

    assert listed_versions.ids == ("v1", "v2", "v3")
    assert vault.asked == [
        "GET /secrets/s/versions",
        *["GET /secrets/s/versions 1"] * 3,
        "GET /secrets/s/versions 2",
    ]
    assert call_count(metrics, "list_versions", "429", SECRET) == 2


# --- The clients of a vault ------------------------------------------------------------


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
        client = items._sdk[kind].client
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
