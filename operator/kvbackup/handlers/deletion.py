"""KeyBackup deletion: a `Delete`-policy KeyBackup's snapshots go with it, within a bounded
number of attempts (the retry policy's ``DELETE_ATTEMPTS``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import kopf

from kvbackup.api import GROUP, KEYBACKUP_LABEL, KEYBACKUP_PLURAL, VERSION
from kvbackup.api.keybackup import (
    BlobDestination,
    DeletionPolicy,
    Destination,
    parse_destinations,
)
from kvbackup.config import Settings
from kvbackup.errors import KvBackupError
from kvbackup.handlers.reporting import as_kopf_error, post
from kvbackup.presentation import keybackup_status as status
from kvbackup.presentation.status import Event
from kvbackup.runtime import Runtime
from kvbackup.services.retention import delete_all_snapshots
from kvbackup.services.retry_policy import judge_deletion


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

    Any failure counts, an invalid spec or a bug included, and the retry policy ends it
    after a bound: a handler that raised anything else would be retried by kopf for ever,
    and its finalizer would block the deletion of the object and of its namespace.
    """
    try:
        deleted = await delete()
    except Exception as failure:
        verdict = judge_deletion(failure, attempt, settings)
        if verdict.final:
            return status.backups_not_deleted(verdict, attempt + 1, _left_behind(body))
        raise as_kopf_error(verdict) from failure
    return None if deleted is None else status.backups_deleted(deleted)


async def _delete_snapshots(runtime: Runtime, body: kopf.Body) -> int | None:
    """How many snapshots were deleted; None when the object is gone already."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    if await runtime.kubernetes.read_custom_object(KEYBACKUP_PLURAL, namespace, name) is None:
        return None
    deleted = 0
    for destination in parse_destinations(body.spec).values():
        async with runtime.store(namespace, destination) as store:
            deleted += await delete_all_snapshots(store, namespace, name)
    return deleted


def _left_behind(body: kopf.Body) -> str:
    """Where the snapshots a deletion gave up on are, as far as the spec still says."""
    namespace, name = body.meta.namespace or "", body.meta.name or ""
    try:
        destinations = parse_destinations(body.spec)
    except KvBackupError:
        return f"the snapshots of KeyBackup {namespace}/{name}, wherever its spec kept them"
    return "; ".join(_place(destination, namespace, name) for destination in destinations.values())


def _place(destination: Destination, namespace: str, name: str) -> str:
    if isinstance(destination, BlobDestination):
        container = destination.container
        prefix = f"{destination.prefix}/" if destination.prefix else ""
        return f"blobs under {container.account_url}/{container.name}/{prefix}{namespace}/{name}/"
    return f"Secrets in namespace {namespace} labelled {KEYBACKUP_LABEL}={name}"
