"""Per-item outcomes: the phase they add up to, and how one item's error is contained."""

from __future__ import annotations

import asyncio

import pytest

from kvbackup.api.conditions import Phase
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.errors import NotFoundError, TransientError
from kvbackup.services.outcomes import ItemOutcome, ItemResult, phase_of
from kvbackup.services.workers import for_each_item

OK = ItemOutcome("ok", ItemResult.RESTORED)
SKIPPED = ItemOutcome("skipped", ItemResult.SKIPPED)
FAILED = ItemOutcome("failed", ItemResult.FAILED, reason="NotFound")
KEY_A, KEY_B = ItemRef(ItemKind.KEY, "a"), ItemRef(ItemKind.KEY, "b")


@pytest.mark.parametrize(
    ("outcomes", "phase"),
    [
        pytest.param([OK, SKIPPED], Phase.SUCCEEDED, id="none-failed"),
        pytest.param([OK, FAILED], Phase.PARTIALLY_FAILED, id="some-failed"),
        pytest.param([FAILED, FAILED], Phase.FAILED, id="all-failed"),
        pytest.param([], Phase.FAILED, id="no-items"),
    ],
)
def test_the_phase_is_succeeded_only_when_no_item_failed(
    outcomes: list[ItemOutcome], phase: Phase
) -> None:
    assert phase_of(outcomes) is phase


async def test_a_permanent_error_fails_only_its_own_item_and_keeps_its_kind() -> None:
    async def work(item: ItemRef) -> ItemOutcome:
        if item.name == "gone":
            raise NotFoundError("secret gone not found")
        return ItemOutcome(item.name, ItemResult.SUCCEEDED, kind=item.kind)

    items = [KEY_A, ItemRef(ItemKind.SECRET, "gone"), ItemRef(ItemKind.CERTIFICATE, "b")]
    outcomes = await for_each_item(items, work)

    assert outcomes == [
        ItemOutcome("a", ItemResult.SUCCEEDED),
        ItemOutcome(
            "gone",
            ItemResult.FAILED,
            reason="NotFound",
            message="secret gone not found",
            kind=ItemKind.SECRET,
        ),
        ItemOutcome("b", ItemResult.SUCCEEDED, kind=ItemKind.CERTIFICATE),
    ]


async def test_a_temporary_error_aborts_the_run_and_is_raised_as_itself() -> None:
    outage = TransientError("vault unreachable", reason="VaultUnreachable")
    finished: list[str] = []

    async def work(item: ItemRef) -> ItemOutcome:
        if item.name == "unlucky":
            raise outage
        await asyncio.sleep(10)
        finished.append(item.name)
        return ItemOutcome(item.name, ItemResult.SUCCEEDED)

    with pytest.raises(TransientError) as caught:
        await for_each_item([KEY_A, ItemRef(ItemKind.SECRET, "unlucky"), KEY_B], work)

    assert caught.value is outage
    assert finished == []
