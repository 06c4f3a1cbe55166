"""KeyBackup: one long-lived loop per object that runs a backup whenever one is due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import kopf

from kvbackup.adapters.metrics import BACKUP
from kvbackup.api import GROUP, KEYBACKUP_LABEL, KEYBACKUP_PLURAL, VERSION
from kvbackup.api.keybackup import (
    BlobDestination,
    DeletionPolicy,
    KeyBackupRef,
    parse_destination,
    parse_spec,
)
from kvbackup.config import Settings
from kvbackup.errors import KvBackupError
from kvbackup.handlers.loops import Loops, Watched
from kvbackup.handlers.reporting import RunLog, as_kopf_error, post, progress_of, publish
from kvbackup.presentation import status
from kvbackup.presentation.gauges import keybackup_readings
from kvbackup.presentation.status import Event
from kvbackup.presentation.verdicts import judge
from kvbackup.runtime import Runtime
from kvbackup.services.backup import back_up_and_retain
from kvbackup.services.retention import delete_all_snapshots
from kvbackup.services.run_book import RunBook
from kvbackup.services.triggers import Plan, RunRequest, plan_run, snapshot_id_for

logger = logging.getLogger(__name__)

#: Attempts at deleting a `Delete`-policy KeyBackup's snapshots before giving up on them;
#: with the retry delays of the settings' defaults (10 s doubling to 600 s) about 40 min.
DELETE_ATTEMPTS = 10


@kopf.on.event(GROUP, VERSION, KEYBACKUP_PLURAL)
async def notice_change(type: str, body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any) -> None:
    loops: Loops = memo.loops
    await loops.on_event(type, body, uid, partial(keep_backed_up, memo.runtime))
    if type == "DELETED" or body.meta.get("deletionTimestamp"):
        memo.runtime.metrics.forget_keybackup(body.meta.namespace or "", body.meta.name or "")


class _WithoutWatchNoise(logging.Filter):
    """kopf logs every call of an event handler at INFO, and notice_change is called on
    each watch event, the operator's own status writes included: a line per write that
    would bury the run lines (``RunLog``) an admin reads the log for."""

    noise = "Handler 'notice_change' succeeded."

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.noise


logging.getLogger("kopf.objects").addFilter(_WithoutWatchNoise())


async def keep_backed_up(runtime: Runtime, watched: Watched) -> None:
    """Runs a backup whenever one is due, for as long as the object exists."""
    monotonic = asyncio.get_running_loop().time
    book: RunBook[RunRequest] = RunBook()
    while True:
        watched.wakeup.clear()
        body, moment = watched.body, runtime.clock()
        plan = plan_run(
            body.spec,
            body.status,
            body.meta,
            moment,
            min_schedule_interval=runtime.settings.min_schedule_interval,
        )
        runtime.metrics.observe_keybackup(
            body.meta.namespace or "", body.meta.name or "", keybackup_readings(body.status, plan)
        )
        attempt = book.attempt_due(plan.request, monotonic())
        if plan.request is not None and attempt is not None:
            try:
                retry_in = await _attempt(runtime, body, plan, plan.request, attempt)
            except Exception as failure:  # e.g. the status itself could not be written
                # The loop must outlive any one failure: the object may never change again.
                logger.exception("%s/%s: run failed", body.meta.namespace, body.meta.name)
                retry_in = judge(failure, attempt, runtime.settings).retry_in
            book.record(plan.request, retry_in, monotonic())
            continue
        if plan.spec and plan.spec.schedule and not book.backing_off_from(plan.request):
            await _acknowledge_schedule(runtime, body, plan)
        wait = book.wait_seconds(plan.request, plan.seconds_to_next_slot(moment), monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watched.wakeup.wait(), wait)


async def _acknowledge_schedule(runtime: Runtime, body: kopf.Body, plan: Plan) -> None:
    generation = int(body.meta.get("generation") or 0)
    patch = status.schedule_acknowledged(body.status, generation, plan.next_slot, runtime.clock())
    if patch is None:
        return
    try:
        await runtime.kubernetes.patch_status(
            KEYBACKUP_PLURAL, body.meta.namespace or "", body.meta.name or "", patch
        )
    except KvBackupError as error:  # written again at the next wake-up
        logger.warning("%s/%s: %s", body.meta.namespace, body.meta.name, error)


async def _attempt(
    runtime: Runtime, body: kopf.Body, plan: Plan, request: RunRequest, attempt: int
) -> float | None:
    """One attempt at ``request``; the delay before the next one, or None when done."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    existing, moment = dict(body.status), runtime.clock()
    snapshot_id = snapshot_id_for(existing, request, moment)
    write = partial(publish, runtime.kubernetes, KEYBACKUP_PLURAL, body)
    log = RunLog("backup", body)
    with runtime.metrics.run(BACKUP) as run:
        try:
            spec = parse_spec(
                body.spec, min_schedule_interval=runtime.settings.min_schedule_interval
            )
            await write(status.backup_started(existing, request, snapshot_id, moment))
            log.started(f"into snapshot {snapshot_id}")
            async with (
                runtime.store(namespace, spec.destination) as store,
                runtime.vault(namespace, spec.vault_url, spec.credentials_secret) as vault,
            ):
                report = await back_up_and_retain(
                    spec,
                    KeyBackupRef(namespace, name, body.meta.uid or ""),
                    snapshot_id,
                    vault,
                    store,
                    clock=runtime.clock,
                    incomplete_grace=runtime.settings.incomplete_snapshot_grace,
                    concurrency=runtime.settings.max_concurrency,
                    progress=progress_of(
                        runtime.kubernetes, KEYBACKUP_PLURAL, body, status.backup_progress
                    ),
                )
        except Exception as failure:
            run.failed()
            verdict = judge(failure, attempt, runtime.settings)
            log.failed(verdict)
            await write(status.backup_failed(existing, verdict, request, runtime.clock()))
            return verdict.retry_in
        run.finished(report.phase.value, report.keys)
        keys_limit, next_slot = runtime.settings.status_keys_limit, plan.next_slot_after(request)
        finished = status.backup_finished(existing, report, request, keys_limit, next_slot)
        log.finished(finished)
        await write(finished)
    return None


def _deletes_backups(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == DeletionPolicy.DELETE.value


@kopf.on.delete(GROUP, VERSION, KEYBACKUP_PLURAL, when=_deletes_backups)
async def delete_backups(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    """Deletes the snapshots of a `Delete`-policy KeyBackup, giving up after a bound:
    a finalizer must never block deletion forever because its storage is gone."""
    runtime: Runtime = memo.runtime
    # Only the leader deletes; a replica that comes to lead later finds the object gone,
    # or finishes what the last leader left.
    await memo.leadership.wait_until_leading()
    event = await deletion_attempt(
        partial(_delete_snapshots, runtime, body), body, retry, runtime.settings
    )
    if event is not None:
        post(body, event)


async def deletion_attempt(
    delete: Callable[[], Awaitable[int | None]], body: kopf.Body, attempt: int, settings: Settings
) -> Event | None:
    """Attempt number ``attempt`` (from 0) at ``delete``: the Event that ends the deletion
    (None when the object was gone already), or kopf's TemporaryError to try again.

    Any failure counts, an invalid spec or a bug included, and the ``DELETE_ATTEMPTS``-th
    ends it: a handler that raised anything else would be retried by kopf for ever, and
    its finalizer would block the deletion of the object and of its namespace.
    """
    try:
        deleted = await delete()
    except Exception as failure:
        verdict = judge(failure, attempt, settings, attempts=DELETE_ATTEMPTS)
        if verdict.final:
            return status.backups_not_deleted(verdict, attempt + 1, _left_behind(body))
        raise as_kopf_error(verdict) from failure
    return None if deleted is None else status.backups_deleted(deleted)


async def _delete_snapshots(runtime: Runtime, body: kopf.Body) -> int | None:
    """How many snapshots were deleted; None when the object is gone already."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    if await runtime.kubernetes.read_custom_object(KEYBACKUP_PLURAL, namespace, name) is None:
        return None
    async with runtime.store(namespace, parse_destination(body.spec)) as store:
        return await delete_all_snapshots(store, namespace, name)


def _left_behind(body: kopf.Body) -> str:
    """Where the snapshots a deletion gave up on are, as far as the spec still says."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    try:
        destination = parse_destination(body.spec)
    except KvBackupError:
        return f"the snapshots of KeyBackup {namespace}/{name}, wherever its spec kept them"
    if isinstance(destination, BlobDestination):
        container = destination.container
        prefix = f"{destination.prefix}/" if destination.prefix else ""
        return f"blobs under {container.account_url}/{container.name}/{prefix}{namespace}/{name}/"
    return f"Secrets in namespace {namespace} labelled {KEYBACKUP_LABEL}={name}"
