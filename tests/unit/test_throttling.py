"""A throttled or overloaded Key Vault call is retried on its own, with the service's
Retry-After or a backoff; an unreachable vault is not."""

from __future__ import annotations

import math

import pytest

from kvbackup.adapters.throttling import (
    ATTEMPTS,
    LONGEST_RETRY_AFTER_SECONDS,
    bounded_retry_after,
    retry_per_call,
    throttle_delay,
)
from kvbackup.errors import ThrottledError, TransientError


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
