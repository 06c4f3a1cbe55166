"""A selector's namePattern runs on the event loop that serves every tenant, so it is
matched by RE2, in time linear in the name, and bounded in size."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

from kvbackup.api import keybackup
from kvbackup.api.keybackup import NAME_PATTERN_MAX_LENGTH, ItemSelector, NamePattern
from kvbackup.errors import InvalidSpecError

FIELD = "spec.keys.selector.namePattern"


def selector_spec(pattern: str) -> dict[str, Any]:
    return {"vaultUrl": "https://v.vault.azure.net", "keys": {"selector": {"namePattern": pattern}}}


def refusal(pattern: str) -> str:
    with pytest.raises(InvalidSpecError) as caught:
        keybackup.parse_spec(selector_spec(pattern))
    return caught.value.message


@contextmanager
def stall_fails_after(seconds: float) -> Iterator[None]:
    """Turns a match that never ends into a failure: a backtracking engine would take
    longer than the universe's age here, and the test must fail rather than hang."""

    def stalled(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"matching stalled for {seconds} s")

    previous = signal.signal(signal.SIGALRM, stalled)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_catastrophic_backtracking_pattern_over_many_long_names_gives_the_right_answers() -> None:
    selector = ItemSelector(name_pattern=NamePattern.compile("(a+)+$", FIELD))
    names = ["a" * 126 + "b", "a" * 127] * 5_000

    with stall_fails_after(30):
        chosen = [name for name in names if selector.matches(name, None)]

    assert chosen == ["a" * 127] * 5_000


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(r"(a)\1", id="backreference"),
        pytest.param(r"(?=app-)\w+", id="lookahead"),
        pytest.param(r"\w+(?<!-old)", id="lookbehind"),
        pytest.param(r"(?>a+)b", id="atomic-group"),
        pytest.param("app-([", id="unbalanced"),
    ],
)
def test_a_pattern_that_needs_a_backtracking_engine_or_is_malformed_is_refused_naming_rule(
    pattern: str,
) -> None:
    message = refusal(pattern)

    assert message.startswith(f"{FIELD} is not a regular expression in RE2 syntax")


def test_a_pattern_longer_than_the_bound_is_refused_with_the_bound() -> None:
    message = refusal("a" * (NAME_PATTERN_MAX_LENGTH + 1))

    assert message == (
        f"{FIELD} is {NAME_PATTERN_MAX_LENGTH + 1} characters long; at most "
        f"{NAME_PATTERN_MAX_LENGTH} are allowed"
    )


def test_a_short_pattern_that_compiles_to_a_huge_program_is_refused() -> None:
    assert "pattern too large" in refusal(r"(\pL{100}){10}")


@pytest.mark.parametrize(
    ("pattern", "name", "chosen"),
    [
        pytest.param("app-[0-9]+", "app-12", True, id="whole-name"),
        pytest.param("app-[0-9]+", "app-12-old", False, id="prefix-only"),
        pytest.param("app-[0-9]+", "my-app-12", False, id="suffix-only"),
        pytest.param("(?i)APP-.*", "app-x", True, id="case-insensitive-flag"),
        pytest.param("signing|wrapping", "wrapping", True, id="alternation"),
    ],
)
def test_a_pattern_must_match_the_whole_key_name(pattern: str, name: str, chosen: bool) -> None:
    assert NamePattern.compile(pattern, FIELD).fullmatch(name) is chosen
