"""Per-key outcomes: the phase they add up to, and how one key's error is contained."""

from __future__ import annotations

import asyncio

import pytest

from kvbackup.api.conditions import Phase
from kvbackup.errors import NotFoundError, TransientError
from kvbackup.services.outcomes import KeyOutcome, KeyResult, phase_of
from kvbackup.services.workers import for_each_key

OK = KeyOutcome("ok", KeyResult.RESTORED)
SKIPPED = KeyOutcome("skipped", KeyResult.SKIPPED)
FAILED = KeyOutcome("failed", KeyResult.FAILED, reason="NotFound")


@pytest.mark.parametrize(
    ("outcomes", "phase"),
    [
        pytest.param([OK, SKIPPED], Phase.SUCCEEDED, id="none-failed"),
        pytest.param([OK, FAILED], Phase.PARTIALLY_FAILED, id="some-failed"),
        pytest.param([FAILED, FAILED], Phase.FAILED, id="all-failed"),
        pytest.param([], Phase.FAILED, id="no-keys"),
    ],
)
def test_the_phase_is_succeeded_only_when_no_key_failed(
    outcomes: list[KeyOutcome], phase: Phase
) -> None:
    assert phase_of(outcomes) is phase


async def test_a_permanent_error_fails_only_its_own_key() -> None:
    async def work(name: str) -> KeyOutcome:
        if name == "gone":
            raise NotFoundError("key gone not found")
        return KeyOutcome(name, KeyResult.SUCCEEDED)

    outcomes = await for_each_key(["a", "gone", "b"], work)

    assert outcomes == [
        KeyOutcome("a", KeyResult.SUCCEEDED),
        KeyOutcome("gone", KeyResult.FAILED, reason="NotFound", message="key gone not found"),
        KeyOutcome("b", KeyResult.SUCCEEDED),
    ]


async def test_a_temporary_error_aborts_the_run_and_is_raised_as_itself() -> None:
    outage = TransientError("vault unreachable", reason="VaultUnreachable")
    finished: list[str] = []

    async def work(name: str) -> KeyOutcome:
        if name == "unlucky":
            raise outage
        await asyncio.sleep(10)
        finished.append(name)
        return KeyOutcome(name, KeyResult.SUCCEEDED)

    with pytest.raises(TransientError) as caught:
        await for_each_key(["a", "unlucky", "b"], work)

    assert caught.value is outage
    assert finished == []
