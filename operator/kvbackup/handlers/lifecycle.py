"""Operator start-up and clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import kopf

from kvbackup.adapters.metrics import OperatorMetrics
from kvbackup.api import GROUP
from kvbackup.config import Settings
from kvbackup.handlers.loops import Loops
from kvbackup.runtime import Runtime
from kvbackup.services.leadership import Leadership
from kvbackup.services.retry_policy import API_RETRY_BACKOFFS

#: Who reports the operator's Events (``kubectl describe``'s "From" column, and event
#: exporters' reportingController).
REPORTING_COMPONENT = "kvbackup-operator"


class _WithoutWatchNoise(logging.Filter):
    """kopf logs every call of an event handler at INFO, and each kind's notice_change is
    called on each watch event, the operator's own status writes included: a line per write
    that would bury the run lines (``RunLog``) an admin reads the log for."""

    noise = "Handler 'notice_change' succeeded."

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.noise


logging.getLogger("kopf.objects").addFilter(_WithoutWatchNoise())


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives under the project's own group, not kopf.zalando.org.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.peering.standalone = True
    settings.networking.error_backoffs = API_RETRY_BACKOFFS
    settings.posting.reporting_component = REPORTING_COMPONENT
    # The pod's name: which replica posted an Event.
    settings.posting.reporting_instance = socket.gethostname()
    settings.posting.event_name_prefix = f"{REPORTING_COMPONENT}-"
    # The SDKs log request details at INFO; keep the log to what operators need.
    logging.getLogger("azure").setLevel(logging.WARNING)
    runtime = Runtime.create(Settings.from_env(), memo.metrics)
    memo.runtime = runtime
    memo.loops = loops = Loops()
    memo.leadership = leadership = runtime.leadership()
    metrics: OperatorMetrics = memo.metrics

    async def elected() -> None:
        metrics.started_leading()
        await loops.lead()

    async def deposed() -> None:
        await loops.follow()  # no loop of this replica sets a KeyBackup's series after this
        metrics.stopped_leading()

    memo.election = asyncio.create_task(
        leadership.run(on_elected=elected, on_deposed=deposed), name="kvbackup-election"
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    election: asyncio.Task[None] | None = memo.get("election")
    if election is not None:
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election
    loops: Loops | None = memo.get("loops")
    if loops is not None:
        await loops.close()
    # Only once nothing of this replica runs any more may another one take over.
    leadership: Leadership | None = memo.get("leadership")
    if leadership is not None:
        await leadership.release()
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.close()
