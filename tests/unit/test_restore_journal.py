"""What each key of a restore came to, kept from one attempt to the next, and its size."""

from __future__ import annotations

import base64
import random
import zlib

import pytest

from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import ItemResult

RESULTS = [ItemResult.RESTORED, ItemResult.RECOVERED, ItemResult.SKIPPED, ItemResult.FAILED]


def carried(journal: RestoreJournal) -> RestoreJournal:
    """The journal as the next attempt reads it back from the status."""
    return RestoreJournal(snapshot_id=journal.snapshot_id, carried=journal.encoded())


def test_the_next_attempt_reads_each_keys_result_and_the_keys_not_yet_done() -> None:
    first = RestoreJournal()
    first.begin("snap-1", 4)
    first.record(0, ItemResult.RESTORED)
    first.record(2, ItemResult.SKIPPED)
    first.record(3, ItemResult.FAILED)

    second = carried(first)
    second.begin("snap-1", 4)

    assert [second.earlier(i) for i in range(4)] == [
        ItemResult.RESTORED,
        None,
        ItemResult.SKIPPED,
        ItemResult.FAILED,
    ]


def test_an_attempt_again_in_this_process_keeps_what_it_recorded_though_the_status_lacks_it() -> (
    None
):
    # The status took the first two results; the API server went away before the rest.
    journal = RestoreJournal()
    journal.begin("snap-1", 3)
    journal.record(0, ItemResult.RESTORED)
    journal.record(1, ItemResult.RECOVERED)
    journal.carried = journal.encoded()
    journal.record(2, ItemResult.RESTORED)

    journal.begin("snap-1", 3)

    assert [journal.earlier(i) for i in range(3)] == [
        ItemResult.RESTORED,
        ItemResult.RECOVERED,
        ItemResult.RESTORED,
    ]


@pytest.mark.parametrize(
    ("snapshot", "total"),
    [pytest.param("snap-2", 4, id="another snapshot"), pytest.param("snap-1", 5, id="more keys")],
)
def test_results_of_another_snapshot_or_list_of_keys_are_not_carried(
    snapshot: str, total: int
) -> None:
    first = RestoreJournal()
    first.begin("snap-1", 4)
    first.record(0, ItemResult.RESTORED)

    second = carried(first)
    second.begin(snapshot, total)

    assert [second.earlier(i) for i in range(total)] == [None] * total


def _deflated(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param(base64.b64encode(b"not zlib").decode(), id="not-zlib"),
        pytest.param(_deflated(b"RRXX"), id="unknown-letters"),
        pytest.param(_deflated(b"R" * 10_000_000), id="inflates-beyond-the-keys"),
        pytest.param(_deflated(b"RRRR")[:-4], id="truncated"),
    ],
)
def test_a_journal_written_by_someone_else_is_ignored(text: str) -> None:
    journal = RestoreJournal(snapshot_id="snap-1", carried=text)

    journal.begin("snap-1", 4)

    assert [journal.earlier(i) for i in range(4)] == [None] * 4


@pytest.mark.parametrize(
    ("alike", "bound"),
    [pytest.param(True, 100, id="alike"), pytest.param(False, 5_000, id="mixed")],
)
def test_the_journal_of_10000_keys_stays_small_enough_for_a_status(alike: bool, bound: int) -> None:
    journal = RestoreJournal()
    journal.begin("snap-1", 10_000)
    chosen = random.Random(7)
    for index in range(10_000):
        journal.record(index, ItemResult.RESTORED if alike else chosen.choice(RESULTS))

    assert len(journal.encoded()) < bound
