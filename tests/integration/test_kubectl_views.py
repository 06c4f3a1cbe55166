"""What a user reads with kubectl: the columns of `kubectl get` and `kubectl explain`."""

from __future__ import annotations

import datetime
import json
import re

import pytest

from kvbackup.api.conditions import timestamp
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

VAULT = "https://myvault.vault.azure.net"
KINDS = ("keys", "secrets", "certificates")
FIELD_LINE = re.compile(r"^  (\S+)\t<(.+?)>")
#: What kubectl explain prints in place of a missing description.
NO_DESCRIPTION = {"", "<empty>", "<no description>"}


def _explained(cluster: Cluster, path: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """`kubectl explain path`: its own description, and each field's type and description."""
    # The API server publishes a new CRD's schema some seconds after it is established.
    cluster.wait_until(
        f"kubectl explain {path} answers",
        lambda: cluster.plane.kubectl("explain", path, check=False).returncode == 0,
        timeout=60,
    )
    text = cluster.plane.kubectl("explain", path).stdout
    description = text.partition("DESCRIPTION:\n")[2].partition("FIELDS:")[0].strip()
    fields: dict[str, tuple[str, str]] = {}
    current: str | None = None
    for line in text.partition("FIELDS:\n")[2].splitlines():
        if match := FIELD_LINE.match(line):
            current = match.group(1)
            fields[current] = (match.group(2), "")
        elif current is not None and line.startswith("    ") and line.strip():
            kind, said = fields[current]
            fields[current] = (kind, f"{said} {line.strip()}".strip())
    return description, fields


def _undescribed(cluster: Cluster, path: str) -> list[str]:
    """The fields under ``path`` (recursively) that `kubectl explain` shows no description of."""
    _, fields = _explained(cluster, path)
    missing = []
    for name, (kind, description) in fields.items():
        if description in NO_DESCRIPTION:
            missing.append(f"{path}.{name}")
        if kind in {"Object", "[]Object"}:
            missing += _undescribed(cluster, f"{path}.{name}")
    return missing


def _opaque(cluster: Cluster, path: str) -> list[str]:
    """The objects under ``path`` (recursively) whose fields `kubectl explain` cannot show."""
    _, fields = _explained(cluster, path)
    found = [] if fields else [path]
    for name, (kind, _) in fields.items():
        if kind in {"Object", "[]Object"}:
            found += _opaque(cluster, f"{path}.{name}")
    return found


@pytest.mark.parametrize("kind", ["keybackup", "keyrestore"])
def test_kubectl_explain_describes_every_field(cluster: Cluster, kind: str) -> None:
    assert _explained(cluster, f"{kind}.spec")[0] not in NO_DESCRIPTION
    assert _explained(cluster, f"{kind}.status")[0] not in NO_DESCRIPTION
    assert _undescribed(cluster, kind) == []


@pytest.mark.parametrize(
    ("kind", "opaque"),
    [
        # destination.secret has no fields of its own: {} means this namespace's Secrets.
        pytest.param("keybackup", ["keybackup.spec.destination.secret"], id="keybackup"),
        pytest.param("keyrestore", [], id="keyrestore"),
    ],
)
def test_kubectl_explain_reaches_every_status_field(
    cluster: Cluster, kind: str, opaque: list[str]
) -> None:
    assert _opaque(cluster, kind) == opaque


def test_kubectl_explain_describes_a_keybackups_last_run_field_by_field(cluster: Cluster) -> None:
    description, fields = _explained(cluster, "keybackup.status.lastRun")

    assert description.startswith("The latest finished run, with the counts of each kind")
    assert fields["keysFailed"] == ("integer", "Keys that failed.")
    assert fields["secretsTotal"] == (
        "integer",
        "Secrets the run handled; absent when it handled no secret.",
    )
    assert set(fields) == {
        "snapshotId",
        "startTime",
        "completionTime",
        "phase",
        *(f"{kind}{count}" for kind in KINDS for count in ("Total", "Succeeded", "Failed")),
        "backedUp",
        "refreshed",
        "unchanged",
        "fullRun",
        "comparedWith",
        "bytes",
        "newBytes",
        "leftOut",
    }


def test_kubectl_explain_says_how_to_cover_what_a_run_left_out(cluster: Cluster) -> None:
    description, fields = _explained(cluster, "keybackup.status.lastRun.leftOut")

    said = " ".join(description.split())  # kubectl explain wraps long descriptions
    assert "select the certificate in spec.certificates to cover them" in said
    assert set(fields) == {"keys", "secrets", "message"}


@pytest.mark.parametrize("kind", ["keybackup", "keyrestore"])
def test_kubectl_explain_lists_each_kinds_results_apart(cluster: Cluster, kind: str) -> None:
    _, fields = _explained(cluster, f"{kind}.status")

    for plural in KINDS:
        assert fields[plural][0] == "[]Object"
        assert (
            f"absent when the {'run' if kind == 'keybackup' else 'restore'} handled no"
            in (fields[plural][1])
        )


def test_kubectl_explain_says_the_time_zone_defaults_to_utc(cluster: Cluster) -> None:
    _, fields = _explained(cluster, "keybackup.spec")
    assert "Defaults to UTC" in fields["timeZone"][1]


def test_kubectl_get_shows_a_future_next_run_as_a_time_and_past_ones_as_ages(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "kvbackup.io/v1alpha1",
                "kind": "KeyBackup",
                "metadata": {"name": "nightly"},
                "spec": {"vaultUrl": VAULT, "keys": {"names": ["app-key"]}, "schedule": "@daily"},
            }
        )
    )
    next_run = cluster.wait_for_phase("kb", "nightly", "Scheduled")["nextScheduleTime"]
    # What a KeyBackup that has run shows besides: the operator leaves these fields be
    # until its next run, which is at the next midnight.
    status = {
        "lastSuccessfulTime": timestamp(now - datetime.timedelta(minutes=3)),
        "lastSnapshot": {"id": "20261128-010203-abcd"},
    }
    cluster.plane.kubectl(
        "patch", "kb", "nightly", "-n", cluster.namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip

    cells = cluster.columns("kb", "nightly")

    assert cells["NEXT RUN"] == next_run
    assert datetime.datetime.fromisoformat(next_run) > now
    assert re.fullmatch(r"3m([0-9]+s)?", cells["LAST SUCCESS"])
    assert cells["LAST SNAPSHOT"] == "20261128-010203-abcd"
    assert "<invalid>" not in cells.values()
