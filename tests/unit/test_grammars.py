"""Every grammar check is a full match: a value that is valid but for a trailing newline (or a
control character inside) is refused, where ``re.match`` with ``$`` would have accepted it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kvbackup.api import fields
from kvbackup.api.hosts import HostPattern, endpoint
from kvbackup.api.schedule import Schedule, parse_duration, parse_time_zone
from kvbackup.api.tenancy import UrlPattern
from kvbackup.errors import InvalidSpecError

EMULATOR = "http://127.0.0.1:10000/devstoreaccount1"

#: (what, parser, a valid value): each parser accepts the value and refuses it with a newline.
GRAMMARS: list[tuple[str, Callable[[str], object], str]] = [
    ("key name", lambda v: fields.item_name(v, "p"), "signing-key"),
    ("container", lambda v: fields.container_name(v, "p"), "team-a"),
    ("object name", lambda v: fields.object_name(v, "p"), "nightly.v2"),
    (
        "namespace",
        lambda v: fields.object_name(v, "p", pattern=fields.NAMESPACE_NAME),
        "team-a",
    ),
    (
        "snapshot id",
        lambda v: fields.snapshot_choice(v, "p", latest="latest"),
        "20261128-004512-3fa2",
    ),
    ("blob prefix", lambda v: fields.blob_prefix(v, "p"), "prod/v1.2"),
    ("snapshot folder", lambda v: fields.snapshot_path(v, "p"), "ns/kb/20261128-004512-3fa2"),
    ("snapshot url", lambda v: fields.snapshot_path(v, "p"), f"{EMULATOR}/c/ns/kb/s/"),
    ("account url", lambda v: fields.account_url(v, "p"), "https://acct.blob.core.windows.net"),
    ("emulator account url", lambda v: fields.account_url(v, "p"), EMULATOR),
    ("vault url", lambda v: fields.vault_url(v, "p"), "https://v.vault.azure.net"),
    ("secret name", lambda v: fields.secret_ref({"name": v}, "p"), "vault-sp"),
    ("duration", lambda v: parse_duration(v, "p"), "1d12h"),
    ("cron", lambda v: Schedule.parse(v, ZoneInfo("UTC"), "p"), "0 2 * * *"),
    ("macro", lambda v: Schedule.parse(v, ZoneInfo("UTC"), "p"), "@daily"),
    ("interval", lambda v: Schedule.parse(v, ZoneInfo("UTC"), "p"), "@every 6h"),
    ("time zone", lambda v: parse_time_zone(v, "p"), "Europe/Berlin"),
    ("identity rule url", lambda v: UrlPattern.parse(v, "p"), "https://team-a-*.vault.azure.net"),
    ("identity rule wildcard", lambda v: UrlPattern.parse(v, "p"), "*"),
]
IDS = [what for what, _, _ in GRAMMARS]


@pytest.mark.parametrize(("what", "parse", "valid"), GRAMMARS, ids=IDS)
def test_a_valid_value_is_accepted(what: str, parse: Callable[[str], object], valid: str) -> None:
    parse(valid)


@pytest.mark.parametrize(("what", "parse", "valid"), GRAMMARS, ids=IDS)
def test_a_valid_value_with_a_trailing_newline_is_refused(
    what: str, parse: Callable[[str], object], valid: str
) -> None:
    with pytest.raises(InvalidSpecError):
        parse(valid + "\n")


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        pytest.param(lambda v: fields.vault_url(v, "p"), "https://v.vault\n.azure.net", id="vault"),
        pytest.param(
            lambda v: fields.account_url(v, "p"), "https://acct\t.blob.core.windows.net", id="acct"
        ),
        pytest.param(
            lambda v: fields.snapshot_path(v, "p"), "https://a\x00b/c/ns/kb/s", id="snapshot url"
        ),
        pytest.param(lambda v: Schedule.parse(v, ZoneInfo("UTC"), "p"), "0\n2 * * *", id="cron"),
    ],
)
def test_a_control_character_inside_a_value_is_refused(
    parse: Callable[[str], Any], value: str
) -> None:
    # urlsplit drops tabs and newlines and croniter splits on them: either would read
    # another value than the one written.
    with pytest.raises(InvalidSpecError):
        parse(value)


def test_the_snapshot_id_grammar_the_stores_check_ids_with_is_a_full_match() -> None:
    assert fields.SNAPSHOT_ID.fullmatch("20261128-004512-3fa2")
    assert not fields.SNAPSHOT_ID.fullmatch("20261128-004512-3fa2\n")


@pytest.mark.parametrize(
    "url", ["https://v.vault.azure.net\n", "https://v.vault.azure.net\n/keys", "https://v\n:443"]
)
def test_an_endpoint_whose_authority_holds_a_newline_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        endpoint(url)


def test_a_host_allow_list_entry_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        HostPattern.parse("*.vault.azure.net\n")
