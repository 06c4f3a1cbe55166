"""One vault's pace: the configured rate, halved by 429s without Retry-After and crept
back by successes, and paused for every caller by a Retry-After."""

from __future__ import annotations

import math

import pytest

from kvbackup.adapters.ratelimit import FLOOR_SHARE, INCREASE_SHARE, VaultPace
from kvbackup.services.retry_policy import LONGEST_RETRY_AFTER_SECONDS


class FakeTime:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def pace_at(rate: float, time: FakeTime) -> VaultPace:
    return VaultPace(rate, clock=time.clock, sleep=time.sleep)


async def test_calls_are_spaced_to_the_configured_rate_after_a_first_burst() -> None:
    time = FakeTime()
    pace = pace_at(10.0, time)

    for _ in range(10 + 30):
        await pace.acquire()

    assert time.now == pytest.approx(3.0)


async def test_a_429_without_retry_after_halves_the_rate() -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)

    pace.throttled(None)
    pace.throttled(None)

    assert pace.rate == 100.0


async def test_successes_creep_the_rate_back_up_to_the_configured_one_and_no_further() -> None:
    pace = pace_at(400.0, FakeTime())
    pace.throttled(None)

    steps = round(0.5 / INCREASE_SHARE)
    for _ in range(steps - 1):
        pace.succeeded()
    assert pace.rate < 400.0
    pace.succeeded()
    pace.succeeded()
    assert pace.rate == 400.0


async def test_the_rate_never_falls_below_its_floor() -> None:
    pace = pace_at(400.0, FakeTime())
    for _ in range(100):
        pace.throttled(None)

    assert pace.rate == 400.0 * FLOOR_SHARE


async def test_a_retry_after_pauses_every_caller_of_the_vault_until_it_ends() -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)
    await pace.acquire()

    pace.throttled(7.0)
    await pace.acquire()

    assert time.now == pytest.approx(7.0)
    assert pace.rate == 400.0  # the service said when; no need to slow down further


async def test_a_shorter_retry_after_never_cuts_a_longer_pause_short() -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)

    pace.throttled(30.0)
    pace.throttled(2.0)
    await pace.acquire()

    assert time.now == pytest.approx(30.0)


async def test_a_huge_retry_after_pauses_the_vault_no_longer_than_the_bound() -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)

    pace.throttled(1e9)
    await pace.acquire()

    assert time.now == pytest.approx(LONGEST_RETRY_AFTER_SECONDS)


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param(math.inf, id="inf"),
        pytest.param(math.nan, id="nan"),
        pytest.param(-3.0, id="negative"),
    ],
)
async def test_a_retry_after_that_is_no_finite_delay_slows_the_vault_as_none_would(
    retry_after: float,
) -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)

    pace.throttled(retry_after)
    await pace.acquire()

    assert time.now == 0.0
    assert pace.rate == 200.0


# --- When a pace may be forgotten ----------------------------------------------------


async def test_a_pace_unused_since_a_moment_is_idle_since_then() -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)
    await pace.acquire()
    time.now = 100.0

    assert pace.idle_since(50.0)
    assert not pace.idle_since(0.0)


async def test_a_paused_pace_is_never_idle() -> None:
    time = FakeTime()
    pace = pace_at(400.0, time)
    pace.throttled(30.0)
    time.now = 20.0

    assert not pace.idle_since(10.0)  # unused since 0, but still paused
    time.now = 31.0
    assert pace.idle_since(10.0)
