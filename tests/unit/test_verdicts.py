"""Whether and when a failure is tried again: one decision for every handler."""

from __future__ import annotations

import pytest

from kvbackup import errors
from kvbackup.config import Settings
from kvbackup.presentation.verdicts import judge

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
