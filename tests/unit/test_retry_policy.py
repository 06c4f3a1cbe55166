"""The retry policy, one decision for every handler and adapter: whether and when a failed
run is tried again, the rules an object's loop follows between wake-ups, and a throttled or
overloaded Key Vault call retried on its own (with the service's Retry-After or a backoff)
while an unreachable vault is not."""

from __future__ import annotations

import math

import pytest

from kvbackup import errors
from kvbackup.config import Settings
from kvbackup.errors import ThrottledError, TransientError
from kvbackup.services.retry_policy import (
    ATTEMPTS,
    LONGEST_RETRY_AFTER_SECONDS,
    MIN_WAIT_SECONDS,
    RunBook,
    bounded_retry_after,
    judge,
    retry_delay,
    retry_per_call,
    throttle_delay,
)
from kvbackup.services.triggers import RunRequest

# Whether and when a failed run is tried again.

SETTINGS = Settings(retry_base_seconds=10.0, retry_max_seconds=600.0)


@pytest.mark.parametrize(
    ("error", "attempt", "delay"),
    [
        pytest.param(errors.TransientError("down"), 2, 40.0, id="transient-backs-off"),
        pytest.param(errors.ThrottledError("429", retry_after=90.0), 0, 90.0, id="retry-after"),
        pytest.param(errors.ThrottledError("429", retry_after=5.0), 3, 80.0, id="backoff-longer"),
        pytest.param(errors.InvalidSpecError("bad"), 0, None, id="permanent-never"),
        pytest.param(errors.HostNotAllowedError("not in list"), 0, None, id="host-not-allowed"),
    ],
)
def test_the_retry_delay_honours_retry_after_and_gives_up_on_permanent_errors(
    error: errors.KvBackupError, attempt: int, delay: float | None
) -> None:
    assert judge(error, attempt, SETTINGS).retry_in == delay


def test_the_backoff_doubles_up_to_its_ceiling() -> None:
    delays = [judge(errors.TransientError("down"), n, SETTINGS).retry_in for n in range(8)]
    assert delays == [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]


def test_an_exception_outside_the_taxonomy_is_retried_and_named_without_its_traceback() -> None:
    verdict = judge(OSError(24, "Too many open files"), 0, SETTINGS)

    assert verdict.retry_in == 10.0
    assert verdict.error.reason == "InternalError"
    assert verdict.error.message == "unexpected error: OSError: [Errno 24] Too many open files"


def test_a_bounded_number_of_attempts_makes_the_last_failure_final() -> None:
    down = errors.TransientError("storage down")

    assert not judge(down, 8, SETTINGS, attempts=10).final
    assert judge(down, 9, SETTINGS, attempts=10).final


def test_a_verdict_tells_the_user_when_the_next_try_comes() -> None:
    assert judge(errors.TransientError("down"), 0, SETTINGS).describe() == "down (retrying in 10s)"
    assert judge(errors.InvalidSpecError("bad"), 0, SETTINGS).describe() == "bad"


def test_the_retry_delay_doubles_with_each_attempt_up_to_the_maximum() -> None:
    settings = Settings(retry_base_seconds=10.0, retry_max_seconds=60.0)

    delays = [retry_delay(settings, attempt) for attempt in range(5)]

    assert delays == [10.0, 20.0, 40.0, 60.0, 60.0]
    assert retry_delay(settings, 10_000) == 60.0


# The rules an object's loop follows between wake-ups, as pure bookkeeping.

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


# One Key Vault call, retried on its own.


class Flaky:
    """A call that is throttled ``times`` times, then answers."""

    def __init__(self, times: int, retry_after: float | None = None) -> None:
        self.times = times
        self.calls = 0
        self.retry_after = retry_after

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise ThrottledError("429", retry_after=self.retry_after)
        return "done"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_a_call_throttled_a_few_times_succeeds_after_backing_off() -> None:
    call, sleeps = Flaky(times=3), Sleeps()
    assert await retry_per_call(call, sleep=sleeps) == "done"
    assert call.calls == 4
    assert sleeps.delays == [1.0, 2.0, 4.0]


async def test_the_services_retry_after_is_honoured() -> None:
    call, sleeps = Flaky(times=1, retry_after=7), Sleeps()
    await retry_per_call(call, sleep=sleeps)
    assert sleeps.delays == [7]


async def test_a_call_throttled_every_time_gives_up_with_the_throttling_error() -> None:
    call, sleeps = Flaky(times=100), Sleeps()
    with pytest.raises(ThrottledError):
        await retry_per_call(call, sleep=sleeps)
    assert call.calls == ATTEMPTS


def test_backoff_is_capped() -> None:
    assert throttle_delay(ThrottledError("429"), 20) == 30.0
    assert throttle_delay(ThrottledError("429", retry_after=3600), 0) == 30.0


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param(math.inf, id="inf"),
        pytest.param(math.nan, id="nan"),
        pytest.param(-5.0, id="negative"),
    ],
)
def test_a_retry_after_that_is_no_finite_delay_gives_the_usual_backoff(
    retry_after: float,
) -> None:
    assert throttle_delay(ThrottledError("429", retry_after=retry_after), 2) == 4.0


@pytest.mark.parametrize(
    ("seconds", "bounded"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param(math.inf, None, id="inf"),
        pytest.param(-math.inf, None, id="minus-inf"),
        pytest.param(math.nan, None, id="nan"),
        pytest.param(-0.5, None, id="negative"),
        pytest.param(0.0, 0.0, id="now"),
        pytest.param(12.5, 12.5, id="seconds"),
        pytest.param(1e9, LONGEST_RETRY_AFTER_SECONDS, id="a-billion"),
    ],
)
def test_a_retry_after_is_bounded_to_a_finite_pause(
    seconds: float | None, bounded: float | None
) -> None:
    assert bounded_retry_after(seconds) == bounded


class Failing:
    def __init__(self, error: TransientError, times: int) -> None:
        self.error, self.times, self.calls = error, times, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "done"


async def test_a_5xx_answer_is_retried_with_the_same_backoff() -> None:
    call, sleeps = Failing(TransientError("503"), times=2), Sleeps()
    assert await retry_per_call(call, sleep=sleeps) == "done"
    assert sleeps.delays == [1.0, 2.0]


async def test_an_unreachable_vault_is_not_retried_per_call() -> None:
    unreachable = TransientError("connection refused", reason="VaultUnreachable")
    call, sleeps = Failing(unreachable, times=1), Sleeps()
    with pytest.raises(TransientError):
        await retry_per_call(call, sleep=sleeps)
    assert call.calls == 1
    assert sleeps.delays == []
