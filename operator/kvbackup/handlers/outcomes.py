"""The one place where the error taxonomy becomes retry delays and kopf errors."""

from __future__ import annotations

import kopf

from kvbackup.config import Settings
from kvbackup.errors import KvBackupError, ThrottledError


def retry_delay(error: KvBackupError, attempt: int, settings: Settings) -> float | None:
    """Seconds until the next try, or None when only a change of spec can help."""
    if not error.temporary:
        return None
    delay = settings.retry_delay(attempt)
    if isinstance(error, ThrottledError) and error.retry_after:
        delay = max(delay, error.retry_after)
    return delay


def as_kopf_error(
    error: KvBackupError, delay: float | None
) -> kopf.TemporaryError | kopf.PermanentError:
    if delay is None:
        return kopf.PermanentError(f"{error.reason}: {error.message}")
    return kopf.TemporaryError(f"{error.reason}: {error.message}", delay=delay)
