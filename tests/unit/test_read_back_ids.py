"""Snapshot ids and blob names read back from status or storage are checked in full before
they become a path segment, a Secret name or a resumed snapshot."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kvbackup.adapters.blob_store import safe_blob_name
from kvbackup.errors import IntegrityError, InvalidSpecError
from kvbackup.presentation import keyrestore_status
from kvbackup.presentation.keybackup_status import read_keybackup_status
from kvbackup.services.journal import RestoreJournal
from kvbackup.services.outcomes import ItemResult
from kvbackup.services.snapshot import require_snapshot_id
from kvbackup.services.triggers import RunRequest, snapshot_id_for
from tests.unit.fakes import MOMENT, SNAPSHOT_ID

#: Ids a tenant could write into status, a label or a summary to leave its own folder.
FORGED_IDS = [
    pytest.param(f"{SNAPSHOT_ID}\n", id="trailing-newline"),
    pytest.param("0/../x", id="parent-segment"),
    pytest.param(f"{SNAPSHOT_ID}/../../victim", id="valid-then-climbing"),
    pytest.param("../../x", id="climbing"),
    pytest.param("20240501-120000-ABCD", id="upper-case-hex"),
    pytest.param("", id="empty"),
    pytest.param(None, id="absent"),
    pytest.param(20240501, id="a-number"),
]


@pytest.mark.parametrize("forged", FORGED_IDS)
def test_a_forged_snapshot_id_is_refused_naming_where_it_was_found(forged: Any) -> None:
    with pytest.raises(IntegrityError, match="Secret ns/x names snapshot"):
        require_snapshot_id(forged, "Secret ns/x")


def test_a_snapshot_id_as_the_operator_makes_them_is_accepted() -> None:
    assert require_snapshot_id(SNAPSHOT_ID, "anywhere") == SNAPSHOT_ID


def test_a_forged_id_in_a_refused_message_is_bounded() -> None:
    with pytest.raises(IntegrityError) as refused:
        require_snapshot_id("../" * 100_000, "status")

    assert len(refused.value.message) < 400


@pytest.mark.parametrize("forged", FORGED_IDS)
def test_a_forged_snapshot_id_in_status_is_never_resumed_a_new_one_is_made(
    forged: Any,
) -> None:
    request = RunRequest(4, trigger="now-1")
    active = {**request.as_status(), "snapshotId": forged}

    snapshot_id = snapshot_id_for(read_keybackup_status({"activeRun": active}), request, MOMENT)

    assert re.fullmatch(r"20240501-120000-[0-9a-f]{4}", snapshot_id)


def test_an_interrupted_runs_own_snapshot_id_in_status_is_resumed() -> None:
    request = RunRequest(4, trigger="now-1")
    active = {**request.as_status(), "snapshotId": SNAPSHOT_ID}

    assert (
        snapshot_id_for(read_keybackup_status({"activeRun": active}), request, MOMENT)
        == SNAPSHOT_ID
    )


def _interrupted_restore(snapshot_id: Any) -> dict[str, Any]:
    journal = RestoreJournal()
    journal.begin(SNAPSHOT_ID, 2)
    journal.record(0, ItemResult.RESTORED)
    attempt = {"generation": 2, "snapshotId": snapshot_id, "itemResults": journal.encoded()}
    return {"activeRun": attempt}


@pytest.mark.parametrize("forged", FORGED_IDS)
def test_a_restore_journal_under_a_forged_snapshot_id_is_not_taken_in(forged: Any) -> None:
    carried = keyrestore_status.read_keyrestore_status(_interrupted_restore(forged)).journal(2)

    assert carried.snapshot_id == ""
    carried.begin(SNAPSHOT_ID, 2)
    assert [carried.earlier(i) for i in range(2)] == [None, None]


def test_a_restore_journal_under_its_own_snapshot_id_carries_each_keys_result() -> None:
    carried = keyrestore_status.read_keyrestore_status(_interrupted_restore(SNAPSHOT_ID)).journal(2)
    carried.begin(SNAPSHOT_ID, 2)

    assert [carried.earlier(i) for i in range(2)] == [ItemResult.RESTORED, None]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("backups/ns/kb/../../other/manifest.json", id="parent-segment"),
        pytest.param("backups/ns/kb/./manifest.json", id="current-segment"),
        pytest.param("backups/ns/kb/%2e%2E/manifest.json", id="percent-encoded"),
        pytest.param("backups/ns/kb/.%2e/manifest.json", id="half-encoded"),
        pytest.param("backups//ns/kb", id="empty-segment"),
        pytest.param("/backups/ns", id="leading-slash"),
        pytest.param("backups/ns/", id="trailing-slash"),
        pytest.param("..", id="parent-alone"),
    ],
)
def test_a_blob_name_with_a_dot_or_empty_segment_is_refused_before_any_request(
    name: str,
) -> None:
    with pytest.raises(InvalidSpecError) as refused:
        safe_blob_name(name)

    assert refused.value.reason == "UnsafeBlobName"


@pytest.mark.parametrize(
    "name",
    [
        f"backups/ns/kb/{SNAPSHOT_ID}/manifest.json",
        f"ns/kb.eu/{SNAPSHOT_ID}/keys/signing-key",
        ".hidden/..name/a..b",
    ],
)
def test_a_blob_name_the_store_builds_passes_unchanged(name: str) -> None:
    assert safe_blob_name(name) == name
