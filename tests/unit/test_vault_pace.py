"""One vault's pace: the configured rate, halved by 429s without Retry-After and crept
back by successes, and paused for every caller by a Retry-After."""

from __future__ import annotations

import pytest

from kvbackup.adapters.ratelimit import FLOOR_SHARE, INCREASE_SHARE, VaultPace


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
