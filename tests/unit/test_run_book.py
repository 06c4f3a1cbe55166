"""The rules a KeyBackup's loop follows between wake-ups, as pure bookkeeping."""

from __future__ import annotations

from kvbackup.services.run_book import MIN_WAIT_SECONDS, RunBook
from kvbackup.services.triggers import RunRequest

FIRST = RunRequest(1)
SECOND = RunRequest(2)


def test_a_new_request_starts_at_once_as_attempt_zero() -> None:
    assert RunBook[RunRequest]().attempt_due(FIRST, now=0.0) == 0


def test_nothing_starts_without_a_request() -> None:
    assert RunBook[RunRequest]().attempt_due(None, now=0.0) is None


def test_a_handled_request_never_starts_again() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=None, now=0.0)

    assert book.attempt_due(FIRST, now=1000.0) is None


def test_a_failed_request_waits_out_its_delay_then_starts_as_the_next_attempt() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=30.0, now=100.0)

    assert book.attempt_due(FIRST, now=129.9) is None
    assert book.attempt_due(FIRST, now=130.0) == 1


def test_consecutive_failures_count_up_and_a_success_resets_them() -> None:
    book = RunBook[RunRequest]()
    for attempt in range(3):
        assert book.attempt_due(FIRST, now=attempt * 100.0) == attempt
        book.record(FIRST, retry_in=10.0, now=attempt * 100.0)
    book.record(FIRST, retry_in=None, now=300.0)

    assert book.failures == 0
    assert book.attempt_due(SECOND, now=300.0) == 0


def test_a_new_request_cuts_a_backoff_short_and_starts_from_attempt_zero() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=600.0, now=0.0)
    book.record(FIRST, retry_in=600.0, now=600.0)

    assert book.attempt_due(SECOND, now=601.0) == 0
    book.record(SECOND, retry_in=10.0, now=601.0)
    assert book.failures == 1


def test_without_a_schedule_or_a_backoff_the_loop_waits_for_a_change_alone() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=None, now=0.0)

    assert book.wait_seconds(FIRST, until_next_slot=None, now=5.0) is None


def test_the_loop_wakes_at_the_next_slot_or_the_end_of_a_backoff_whichever_is_first() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=30.0, now=0.0)

    assert book.wait_seconds(FIRST, until_next_slot=3600.0, now=10.0) == 20.0
    assert book.wait_seconds(FIRST, until_next_slot=5.0, now=10.0) == 5.0
    assert book.wait_seconds(None, until_next_slot=3600.0, now=10.0) == 3600.0


def test_the_loop_never_sleeps_less_than_a_second_between_wake_ups() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=30.0, now=0.0)

    assert book.wait_seconds(FIRST, until_next_slot=None, now=29.8) == MIN_WAIT_SECONDS
    assert book.wait_seconds(None, until_next_slot=-5.0, now=0.0) == MIN_WAIT_SECONDS


def test_a_backoff_is_reported_only_for_the_request_it_belongs_to() -> None:
    book = RunBook[RunRequest]()
    book.record(FIRST, retry_in=30.0, now=0.0)

    assert book.backing_off_from(FIRST)
    assert not book.backing_off_from(SECOND)
    assert not book.backing_off_from(None)
