"""Acting on outcomes: status patches and Events written, verdicts turned into kopf's errors."""

from __future__ import annotations

import kopf

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.api.statuses import KeyBackupStatus, KeyRestoreStatus
from kvbackup.presentation.status import Event, Update
from kvbackup.presentation.verdicts import Verdict


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
    update: Update[KeyBackupStatus] | Update[KeyRestoreStatus],
) -> None:
    """Write the status patch, then the Events that tell the same story."""
    await kubernetes.patch_status(
        plural, body.meta.namespace or "", body.meta.name or "", update.status
    )
    post(body, *update.events)
