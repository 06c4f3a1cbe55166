"""KeyBackup: one long-lived loop per object that runs a backup whenever one is due."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import kopf

from kvbackup.api import GROUP, KEYBACKUP_PLURAL, VERSION, status
from kvbackup.api.conditions import Phase, now
from kvbackup.api.keybackup import (
    DeletionPolicy,
    KeyBackupRef,
    KeyBackupSpec,
    backup_now_token,
    parse_spec,
)
from kvbackup.errors import InvalidSpecError, KvBackupError
from kvbackup.handlers.loops import Loops, Watched
from kvbackup.handlers.outcomes import as_kopf_error, retry_delay
from kvbackup.runtime import Runtime
from kvbackup.services.backup import run_backup
from kvbackup.services.ports import SnapshotStore
from kvbackup.services.retention import collect_garbage
from kvbackup.services.triggers import (
    RunRequest,
    due_run,
    parse_time,
    schedule_anchor,
    snapshot_id_for,
)

logger = logging.getLogger(__name__)

#: Attempts at deleting a `Delete`-policy KeyBackup's snapshots before giving up on them.
DELETE_ATTEMPTS = 10

_EVENTS = {
    Phase.SUCCEEDED: ("Normal", "BackupSucceeded"),
    Phase.PARTIALLY_FAILED: ("Warning", "BackupPartiallyFailed"),
    Phase.FAILED: ("Warning", "BackupFailed"),
}


@dataclass(frozen=True)
class Plan:
    spec: KeyBackupSpec | None
    request: RunRequest | None
    #: The next scheduled slot, None without a (running) schedule.
    next_slot: datetime.datetime | None


def _plan(body: kopf.Body, moment: datetime.datetime) -> Plan:
    generation = int(body.meta.get("generation") or 0)
    try:
        spec: KeyBackupSpec | None = parse_spec(body.spec)
    except InvalidSpecError:
        spec = None  # the run reports it; it is due once per generation like any run
    schedule = spec.schedule if spec else None
    suspended = spec.suspend if spec else False
    created = parse_time(body.meta.get("creationTimestamp")) or moment
    request = due_run(
        schedule=schedule,
        suspended=suspended,
        status=body.status,
        generation=generation,
        trigger=backup_now_token(body.meta.annotations),
        created=created,
        now=moment,
    )
    next_slot = None
    if schedule is not None and not suspended:
        next_slot = schedule.next_slot(schedule_anchor(body.status, created))
    return Plan(spec, request, next_slot)


@kopf.on.event(GROUP, VERSION, KEYBACKUP_PLURAL)
async def notice_change(type: str, body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any) -> None:
    loops: Loops = memo.backup_loops
    if type == "DELETED" or body.meta.get("deletionTimestamp"):
        loops.forget(uid)
        return
    runtime: Runtime = memo.runtime
    newest = kopf.Body(cast(kopf.RawBody, copy.deepcopy(dict(body))))
    loops.notice(uid, newest, partial(keep_backed_up, runtime))


async def keep_backed_up(runtime: Runtime, watched: Watched) -> None:
    """Runs a backup whenever one is due, for as long as the object exists."""
    clock = asyncio.get_running_loop().time
    handled: RunRequest | None = None
    backing_off: RunRequest | None = None
    retry_at = 0.0
    failures = 0
    while True:
        watched.wakeup.clear()
        body = watched.body
        moment = now()
        plan = _plan(body, moment)
        delay = (plan.next_slot - moment).total_seconds() if plan.next_slot else None
        request = plan.request
        if request is not None and request != handled:
            if request == backing_off and clock() < retry_at:
                # Our own status writes wake us too; only a new request cuts a backoff short.
                delay = _earliest(delay, retry_at - clock())
            else:
                failures = failures if request == backing_off else 0
                try:
                    retry = await _run(runtime, body, plan, request, failures)
                except Exception as error:  # e.g. the status itself could not be written
                    # The loop must outlive any one failure: the object may never change again.
                    logger.exception(
                        "%s/%s: run failed: %r", body.meta.namespace, body.meta.name, error
                    )
                    retry = runtime.settings.retry_delay(failures)
                if retry is None:
                    handled, backing_off, failures = request, None, 0
                else:
                    backing_off, retry_at, failures = request, clock() + retry, failures + 1
                continue
        elif plan.spec and plan.spec.schedule:
            try:
                await _acknowledge_schedule(runtime, body, plan)
            except Exception as error:  # retried at the next wake-up
                logger.warning("%s/%s: %s", body.meta.namespace, body.meta.name, error)
        # Until our own status write arrives, the schedule may look due already.
        delay = None if delay is None else max(delay, 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watched.wakeup.wait(), delay)


async def _acknowledge_schedule(runtime: Runtime, body: kopf.Body, plan: Plan) -> None:
    """A scheduled KeyBackup's spec change starts no run, but status must reflect it."""
    generation = int(body.meta.get("generation") or 0)
    wanted = {"observedGeneration": generation} | status.schedule_status(plan.next_slot)
    if any(body.status.get(key) != value for key, value in wanted.items()):
        await runtime.kubernetes.patch_status(
            KEYBACKUP_PLURAL, body.meta.namespace or "", body.meta.name or "", wanted
        )


async def _run(
    runtime: Runtime, body: kopf.Body, plan: Plan, request: RunRequest, failures: int
) -> float | None:
    """One attempt; returns the retry delay after a temporary failure, else None."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    existing = dict(body.status)
    moment = now()
    snapshot_id = snapshot_id_for(existing, request, moment)

    async def write(patch: dict[str, Any]) -> None:
        await runtime.kubernetes.patch_status(KEYBACKUP_PLURAL, namespace, name, patch)

    try:
        spec = parse_spec(body.spec)
        await write(status.backup_started(existing, request, snapshot_id, moment))
        kopf.info(body, reason="BackupStarted", message=f"backing up into {snapshot_id}")
        ref = KeyBackupRef(namespace, name, body.meta.uid or "")
        async with (
            runtime.store(namespace, spec.destination) as store,
            runtime.vault(namespace, spec.vault_url, spec.credentials_secret) as vault,
        ):
            report = await run_backup(spec, ref, snapshot_id, vault, store)
            snapshots = (
                await _apply_retention(runtime, body, spec, store)
                if report.manifest_written
                else None
            )
    except KvBackupError as error:
        delay = retry_delay(error, failures, runtime.settings)
        if delay is None:
            await write(status.backup_given_up(existing, error, request, now()))
        else:
            await write(status.run_failed(existing, error, request.generation, now(), delay))
        kopf.warn(body, reason=error.reason, message=error.message)
        return delay
    patch = status.backup_finished(
        existing, report, request, runtime.settings.status_keys_limit, snapshots
    ) | status.schedule_status(
        spec.schedule.next_slot(request.slot) if spec.schedule and request.slot else plan.next_slot
    )
    await write(patch)
    kind, reason = _EVENTS[report.phase]
    kopf.event(body, type=kind, reason=reason, message=patch["conditions"][-1]["message"])
    return None


async def _apply_retention(
    runtime: Runtime, body: kopf.Body, spec: KeyBackupSpec, store: SnapshotStore
) -> list[Any] | None:
    """The kept snapshots for status; a storage error here fails nothing that was stored."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    try:
        kept = await collect_garbage(
            store,
            namespace,
            name,
            spec.retention,
            now(),
            datetime.timedelta(seconds=runtime.settings.incomplete_snapshot_grace_seconds),
        )
    except KvBackupError as error:
        kopf.warn(body, reason="RetentionFailed", message=error.message)
        return None
    return status.snapshot_entries(
        kept, lambda snapshot_id: store.location(namespace, name, snapshot_id)
    )


def _deletes_backups(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == DeletionPolicy.DELETE.value


@kopf.on.delete(GROUP, VERSION, KEYBACKUP_PLURAL, when=_deletes_backups)
async def delete_backups(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    """Deletes the snapshots of a `Delete`-policy KeyBackup, giving up after a bound.

    Giving up lets the KeyBackup go: a finalizer must never block deletion forever
    because its storage is gone.
    """
    runtime: Runtime = memo.runtime
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    try:
        destination = parse_spec(body.spec).destination
        async with runtime.store(namespace, destination) as store:
            stored = await store.list_stored(namespace, name)
            for snapshot in stored:
                await store.delete_snapshot(namespace, name, snapshot.snapshot_id)
    except KvBackupError as error:
        if not error.temporary or retry + 1 >= DELETE_ATTEMPTS:
            kopf.warn(
                body,
                reason="BackupsNotDeleted",
                message=f"gave up after {retry + 1} attempts, snapshots remain: {error.message}",
            )
            return
        raise as_kopf_error(error, runtime.settings.retry_delay(retry)) from error
    kopf.info(body, reason="BackupsDeleted", message=f"deleted {len(stored)} snapshot(s)")


def _earliest(first: float | None, second: float) -> float:
    return second if first is None else min(first, second)
