"""Operator start-up and clean-up."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kvbackup.api import GROUP
from kvbackup.config import Settings
from kvbackup.handlers.loops import Loops
from kvbackup.runtime import Runtime


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives under the project's own group, not kopf.zalando.org.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.peering.standalone = True
    # The SDKs log request details at INFO; keep the log to what operators need.
    logging.getLogger("azure").setLevel(logging.WARNING)
    memo.runtime = Runtime.create(Settings.from_env(), memo.metrics)
    memo.backup_loops = Loops()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    loops: Loops | None = memo.get("backup_loops")
    if loops is not None:
        await loops.close()
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.close()
