"""Reporting a run: status patches and Events written, progress, run log lines, verdicts
turned into kopf's errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.api.statuses import KeyBackupStatus, KeyRestoreStatus
from kvbackup.errors import KvBackupError
from kvbackup.presentation.status import Event, Update
from kvbackup.services.progress import Progress
from kvbackup.services.retry_policy import Verdict

logger = logging.getLogger(__name__)
runs_logger = logging.getLogger("kvbackup.runs")

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


class RunLog:
    """A run's start, end and failure, each one log line about the object: the text
    format prefixes it with namespace/name, the JSON format carries it under "object",
    with the run's kind, outcome, reason and duration as fields of their own."""

    def __init__(self, run: str, body: kopf.Body) -> None:
        self._run = run
        self._ref = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "namespace": body.meta.namespace,
            "name": body.meta.name,
            "uid": body.meta.uid,
        }
        self._started = time.monotonic()

    def _log(self, level: int, outcome: str, reason: str, message: str) -> None:
        fields: dict[str, Any] = {"run": self._run, "outcome": outcome, "reason": reason}
        if outcome != "started":
            fields["duration_seconds"] = round(time.monotonic() - self._started, 3)
            message = f"{reason} after {fields['duration_seconds']:.1f}s: {message}"
        runs_logger.log(
            level, f"{self._run} {outcome}: {message}", extra={"k8s_ref": self._ref} | fields
        )

    def started(self, message: str) -> None:
        self._log(logging.INFO, "started", "Started", message)

    def finished(self, update: AnyUpdate) -> None:
        """The end of a run, told by the first Event of its final update."""
        event = update.events[0]
        level = logging.INFO if event.type == "Normal" else logging.WARNING
        self._log(level, "finished", event.reason, event.message)

    def failed(self, verdict: Verdict) -> None:
        self._log(logging.WARNING, "failed", verdict.error.reason, verdict.describe())
