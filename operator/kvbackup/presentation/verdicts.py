"""The one place that decides, for any failure, whether and when to try again."""

from __future__ import annotations

from dataclasses import dataclass

from kvbackup.config import Settings
from kvbackup.errors import KvBackupError, ThrottledError, UnexpectedError


@dataclass(frozen=True)
class Verdict:
    """A failure's fate: tried again in ``retry_in`` seconds, or final (None)."""

    error: KvBackupError
    retry_in: float | None

    @property
    def final(self) -> bool:
        return self.retry_in is None

    def describe(self) -> str:
        """The error's message, saying when the next try comes."""
        if self.retry_in is None:
            return self.error.message
        return f"{self.error.message} (retrying in {self.retry_in:.0f}s)"


def judge(
    failure: BaseException, attempt: int, settings: Settings, *, attempts: int | None = None
) -> Verdict:
    """``attempt`` counts the consecutive failures before this one, from 0.

    Temporary errors are retried with exponential backoff, never sooner than a
    Retry-After the service asked for; permanent ones are final, and so is the
    ``attempts``-th failure when a bound is given. Anything outside the taxonomy is a
    bug or an exhausted resource: retried, since the object may never change again.
    """
    error = failure if isinstance(failure, KvBackupError) else UnexpectedError.wrapping(failure)
    if not error.temporary or (attempts is not None and attempt + 1 >= attempts):
        return Verdict(error, None)
    delay = settings.retry_delay(attempt)
    if isinstance(error, ThrottledError) and error.retry_after:
        delay = max(delay, error.retry_after)
    return Verdict(error, delay)
