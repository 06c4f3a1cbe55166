"""Deleting a `Delete`-policy KeyBackup's snapshots ends after a bounded number of attempts,
whatever fails, and the finalizer is then released with an Event saying what was left
behind: a finalizer retried for ever would block deleting the object and its namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
import pytest

from kvbackup.config import Settings
from kvbackup.errors import InvalidSpecError, TransientError
from kvbackup.handlers.deletion import deletion_attempt
from kvbackup.presentation.status import Event
from kvbackup.services.retry_policy import DELETE_ATTEMPTS, retry_delay

SECRETS: dict[str, Any] = {"secret": {}}
BLOB = {"blob": {"accountUrl": "https://acct.blob.core.windows.net", "container": "backups"}}


def body(destination: dict[str, Any] | None = None, **spec: Any) -> kopf.Body:
    document = {
        "vaultUrl": "https://v.vault.azure.net",
        "keys": {"names": ["k"]},
        "deletionPolicy": "Delete",
        "destination": destination or SECRETS,
        **spec,
    }
    return kopf.Body({"metadata": {"namespace": "team-a", "name": "nightly"}, "spec": document})


def failing(error: BaseException) -> Callable[[], Any]:
    async def delete() -> int | None:
        raise error

    return delete


def succeeding(result: int | None) -> Callable[[], Any]:
    async def delete() -> int | None:
        return result

    return delete


async def attempts_until_done(delete: Callable[[], Any], of: kopf.Body) -> tuple[int, Event | None]:
    """Attempts as kopf makes them, each after the last one's TemporaryError: how many were
    made, and the Event the last one ended with."""
    for attempt in range(DELETE_ATTEMPTS + 5):
        try:
            return attempt + 1, await deletion_attempt(delete, of, attempt, Settings())
        except kopf.TemporaryError:
            continue
    raise AssertionError("the deletion was still being retried")


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(TransientError("storage unreachable"), id="a-temporary-failure"),
        pytest.param(OverflowError("date value out of range"), id="a-bug-outside-the-taxonomy"),
    ],
)
async def test_a_failure_that_lasts_ends_after_the_bounded_number_of_attempts(
    error: BaseException,
) -> None:
    made, event = await attempts_until_done(failing(error), body())

    assert made == DELETE_ATTEMPTS
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "BackupsNotDeleted")
    assert f"gave up after {DELETE_ATTEMPTS} attempt(s)" in event.message


async def test_an_invalid_spec_ends_the_deletion_at_its_first_attempt() -> None:
    made, event = await attempts_until_done(failing(InvalidSpecError("spec.x is bad")), body())

    assert made == 1
    assert event is not None
    assert event.reason == "BackupsNotDeleted"
    assert "spec.x is bad" in event.message


async def test_each_attempt_before_the_last_asks_kopf_to_retry_after_a_delay() -> None:
    with pytest.raises(kopf.TemporaryError) as retried:
        await deletion_attempt(failing(TransientError("down")), body(), 0, Settings())

    assert retried.value.delay == retry_delay(Settings(), 0)


@pytest.mark.parametrize(
    ("of", "left_behind"),
    [
        pytest.param(
            body(SECRETS),
            "left behind: Secrets in namespace team-a labelled kvbackup.io/keybackup=nightly",
            id="secrets",
        ),
        pytest.param(
            body(BLOB),
            "left behind: blobs under https://acct.blob.core.windows.net/backups/team-a/nightly/",
            id="blobs",
        ),
        pytest.param(
            body({"blob": {**BLOB["blob"], "prefix": "prod/"}}),
            "left behind: blobs under https://acct.blob.core.windows.net/backups/prod/team-a/",
            id="blobs-under-a-prefix",
        ),
        pytest.param(
            body(schedule="@every 999999999d"),
            "left behind: Secrets in namespace team-a",
            id="invalid-schedule-but-known-destination",
        ),
        pytest.param(
            body({"blob": {"container": "x"}}),
            "left behind: the snapshots of KeyBackup team-a/nightly, wherever its spec kept them",
            id="unreadable-destination",
        ),
    ],
)
async def test_the_event_of_a_deletion_given_up_says_where_the_snapshots_remain(
    of: kopf.Body, left_behind: str
) -> None:
    _, event = await attempts_until_done(failing(TransientError("down")), of)

    assert event is not None
    assert left_behind in event.message


async def test_a_deletion_that_succeeds_says_how_many_snapshots_went() -> None:
    made, event = await attempts_until_done(succeeding(3), body())

    assert made == 1
    assert event is not None
    assert (event.reason, event.message) == ("BackupsDeleted", "deleted 3 snapshot(s)")


async def test_an_object_gone_already_ends_the_deletion_without_an_event() -> None:
    assert await attempts_until_done(succeeding(None), body()) == (1, None)
