"""The operator's own log, read as an admin reads it: every run's start, end and failure is
one line naming the object, with the reason and the duration; as text or as JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster, VaultUnderTest
from tests.integration.objects import keybackup

pytestmark = pytest.mark.integration


def _lines_about(log: str, namespace: str, name: str) -> list[str]:
    return [line for line in log.splitlines() if f"[{namespace}/{name}]" in line]


def test_a_failed_run_is_one_text_line_naming_the_object_reason_and_duration(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    cluster.broken_credentials_secret()
    cluster.apply(
        keybackup("broken-run", "https://myvault.vault.azure.net", credentials={"name": "broken"})
    )
    failed = re.compile(r"backup failed: InvalidCredentials after \d+\.\ds: credentials Secret")
    cluster.wait_until(
        "the failed run is logged",
        lambda: any(
            failed.search(line)
            for line in _lines_about(operator.log(), cluster.namespace, "broken-run")
        ),
    )
    lines = _lines_about(operator.log(), cluster.namespace, "broken-run")
    assert any("backup started: into snapshot" in line for line in lines)
    assert sum(bool(failed.search(line)) for line in lines) == 1
    # The watch handler's success on each of the operator's own status writes is no news.
    assert not [line for line in lines if "notice_change" in line]


def _records(log_path: Path) -> list[dict[str, Any]]:
    """Every line of the log as a JSON document: a line that is not one fails the test."""
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def test_json_logs_carry_each_runs_object_outcome_reason_and_duration(
    own_operator: Callable[..., Cluster], vault: VaultUnderTest
) -> None:
    cluster = own_operator("json-log", KVBACKUP_LOG_FORMAT="json")
    vault.create_rsa_key("app-key")
    cluster.apply(keybackup("nightly", vault.url, keys=["app-key"]))
    cluster.wait_for_phase("keybackup", "nightly", "Succeeded")
    assert cluster.operator is not None

    runs = [
        record for record in _records(cluster.operator.log_path) if record.get("run") == "backup"
    ]

    assert [record["outcome"] for record in runs] == ["started", "finished"]
    started, finished = runs
    for record in runs:
        assert record["object"]["namespace"] == cluster.namespace
        assert record["object"]["name"] == "nightly"
        assert record["object"]["kind"] == "KeyBackup"
    assert finished["reason"] == "BackupSucceeded"
    assert finished["severity"] == "info"
    assert 0 < finished["duration_seconds"] < 60
    assert "backed up 1 of 1 key(s)" in finished["message"]
    assert "duration_seconds" not in started
