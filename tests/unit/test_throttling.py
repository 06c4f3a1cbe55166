"""A throttled or overloaded Key Vault call is retried on its own, with the service's
Retry-After or a backoff; an unreachable vault is not."""

from __future__ import annotations

import pytest

from kvbackup.adapters.throttling import ATTEMPTS, retry_per_call, throttle_delay
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
