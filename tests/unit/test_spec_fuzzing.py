"""Random specs for the operator's own spec parsers: whatever a KeyBackup or KeyRestore
holds (the API server's schema may be older, or bypassed), parsing it either succeeds or
refuses it with InvalidSpecError, which becomes a clear status; never another exception,
which would be a crash and a retry loop."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kvbackup.api import keybackup, keyrestore
from kvbackup.errors import InvalidSpecError

Parser = Callable[[Mapping[str, Any]], object]

#: Seconds, not minutes, in every ``make test``; the same examples each time.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Text a hostile or careless spec holds: separators, dots, escapes, non-ASCII, huge.
_TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "..",
        "../other",
        "%2e%2e",
        "a//b",
        "/",
        "\\",
        "@every",
        "@every 0s",
        "@every 99999999999d",
        "0 0 30 2 *",
        "* * * * * *",
        "UTC",
        "Mars/Olympus_Mons",
        "../../etc/localtime",
        "latest",
        "(a+)+$",
        "(\\pL{100}){10}",
        "[",
        "https://",
        "https://[::1",
        "https://a:99999",
        "http://127.0.0.1:10000/devstoreaccount1",
        "https://acct.blob.core.windows.net/other",
        "\x00",
        "é",
        "a" * 5000,
        "9" * 400,
    ]
)
_TEXT = st.one_of(st.text(max_size=40), _TRICKY_TEXT)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
)
JSON_LIKE = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=12,
)

VALID_BACKUPS: list[dict[str, Any]] = [
    {"vaultUrl": "https://v.vault.azure.net", "keys": {"names": ["app-key"]}},
    {
        "vaultUrl": "https://v.vault.azure.net:8443/",
        "keys": {"selector": {"namePattern": "app-.*", "tags": {"team": "a"}}},
        "destination": {
            "blob": {
                "accountUrl": "https://backups.blob.core.windows.net",
                "container": "team-a",
                "prefix": "prod/v1.2",
                "credentials": {"name": "storage"},
            }
        },
        "credentials": {"name": "sp"},
        "schedule": "0 2 * * *",
        "timeZone": "Europe/Berlin",
        "suspend": False,
        "retention": {"keepLast": 3, "maxAge": "30d"},
        "deletionPolicy": "Delete",
    },
    {"vaultUrl": "https://v.vault.azure.net", "keys": {"selector": {}}, "schedule": "@every 6h"},
    {
        "vaultUrl": "https://v.vault.azure.net",
        "secrets": {"names": ["db-password"]},
        "certificates": {"selector": {"namePattern": "api-.*", "tags": {"env": "prod"}}},
    },
]
VALID_RESTORES: list[dict[str, Any]] = [
    {"vaultUrl": "https://v.vault.azure.net", "source": {"keyBackupRef": {"name": "kb"}}},
    {
        "vaultUrl": "https://v.vault.azure.net",
        "source": {
            "blob": {
                "accountUrl": "http://127.0.0.1:10000/devstoreaccount1",
                "container": "team-a",
                "path": "prod/ns/kb/20261128-010203-abcd",
            }
        },
        "keys": ["a", "b"],
        "strategy": "RestoreOnly",
        "onConflict": "Fail",
        "purgeDeletedKeys": True,
        "credentials": {"name": "sp"},
    },
    {
        "vaultUrl": "https://v.vault.azure.net",
        "source": {"keyBackupRef": {"name": "kb", "snapshot": "20261128-010203-abcd"}},
        "secrets": ["db-password"],
        "certificates": ["api-tls", "web-tls"],
        "purgeDeletedSecrets": True,
        "purgeDeletedCertificates": False,
        "dryRun": True,
    },
]


@st.composite
def mutated(draw: st.DrawFn, valid: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid spec with a few fields, at any depth, replaced by random values or removed."""
    spec: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = spec
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
                del node[key]
            else:
                node[key] = draw(JSON_LIKE)
            break
    return spec


def _parsed_or_refused(parse: Parser, spec: Any) -> None:
    refusal = None
    try:
        parse(spec)
    except InvalidSpecError as error:
        refusal = error
    assert refusal is None or refusal.message.startswith("spec")  # names the field at fault


#: Found by the mutations: urllib refuses an unclosed IPv6 bracket with ValueError.
UNPARSABLE_URLS = ["A://[", "https://[", "https://[::1", "http://[::1/x"]
URL_FIELDS = [
    pytest.param(keybackup.parse_spec, VALID_BACKUPS[0], ("vaultUrl",), id="KeyBackup vaultUrl"),
    pytest.param(
        keybackup.parse_spec,
        VALID_BACKUPS[1],
        ("destination", "blob", "accountUrl"),
        id="KeyBackup accountUrl",
    ),
    pytest.param(keyrestore.parse_spec, VALID_RESTORES[0], ("vaultUrl",), id="KeyRestore vaultUrl"),
    pytest.param(
        keyrestore.parse_spec,
        VALID_RESTORES[1],
        ("source", "blob", "accountUrl"),
        id="KeyRestore accountUrl",
    ),
]


@pytest.mark.parametrize("url", UNPARSABLE_URLS)
@pytest.mark.parametrize(("parse", "valid", "field"), URL_FIELDS)
def test_a_url_that_cannot_be_parsed_is_refused_naming_its_field(
    parse: Parser, valid: dict[str, Any], field: tuple[str, ...], url: str
) -> None:
    spec = copy.deepcopy(valid)
    node = spec
    for name in field[:-1]:
        node = node[name]
    node[field[-1]] = url

    with pytest.raises(InvalidSpecError, match=r"^spec\.") as refused:
        parse(spec)
    assert f"spec.{'.'.join(field)}" in refused.value.message


PARSERS = [
    pytest.param(keybackup.parse_spec, VALID_BACKUPS, id="KeyBackup"),
    pytest.param(keyrestore.parse_spec, VALID_RESTORES, id="KeyRestore"),
]


@pytest.mark.parametrize(("parse", "valid"), PARSERS)
def test_the_valid_specs_the_fuzzing_starts_from_are_accepted(
    parse: Parser, valid: list[dict[str, Any]]
) -> None:
    for spec in valid:
        parse(spec)


@pytest.mark.parametrize(("parse", "valid"), PARSERS)
@FUZZ
@given(data=st.data())
def test_a_mutated_spec_is_accepted_or_refused_as_invalid(
    parse: Parser, valid: list[dict[str, Any]], data: st.DataObject
) -> None:
    _parsed_or_refused(parse, data.draw(mutated(valid)))


@pytest.mark.parametrize(("parse", "valid"), PARSERS)
@FUZZ
@given(spec=st.dictionaries(_TEXT, JSON_LIKE, max_size=8) | JSON_LIKE)
@example(spec=None)  # found by this test: a spec that is no object at all
def test_a_random_structure_is_accepted_or_refused_as_invalid(
    parse: Parser, valid: list[dict[str, Any]], spec: Any
) -> None:
    _parsed_or_refused(parse, spec)
