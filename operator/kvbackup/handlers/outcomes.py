"""Acting on outcomes: status patches and Events written, verdicts turned into kopf's errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import kopf

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.api.statuses import KeyBackupStatus, KeyRestoreStatus
from kvbackup.errors import KvBackupError
from kvbackup.presentation.status import Event, Update
from kvbackup.presentation.verdicts import Verdict
from kvbackup.services.progress import Progress

logger = logging.getLogger(__name__)

AnyUpdate = Update[KeyBackupStatus] | Update[KeyRestoreStatus]


def as_kopf_error(verdict: Verdict) -> kopf.TemporaryError | kopf.PermanentError:
    text = f"{verdict.error.reason}: {verdict.error.message}"
    if verdict.retry_in is None:
        return kopf.PermanentError(text)
    return kopf.TemporaryError(text, delay=verdict.retry_in)


def post(body: kopf.Body, *events: Event) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def publish(
    kubernetes: KubernetesApi,
    plural: str,
    body: kopf.Body,
    update: AnyUpdate,
) -> None:
    """Write the status patch, then the Events that tell the same story."""
    await kubernetes.patch_status(
        plural, body.meta.namespace or "", body.meta.name or "", update.status
    )
    post(body, *update.events)


def progress_of(
    kubernetes: KubernetesApi,
    plural: str,
    body: kopf.Body,
    update: Callable[[int, int], AnyUpdate],
) -> Callable[[int], Progress]:
    """A run's progress, written into the object's status every few seconds. A failed
    write is only logged: progress is a courtesy, never a reason to fail a run."""

    async def sink(done: int, total: int) -> None:
        try:
            await publish(kubernetes, plural, body, update(done, total))
        except KvBackupError as error:
            logger.warning(
                "%s/%s: progress not written: %s", body.meta.namespace, body.meta.name, error
            )

    return lambda total: Progress(total, sink, asyncio.get_running_loop().time)
