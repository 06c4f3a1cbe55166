"""Every field of both CRDs: a value the schema refuses is refused by the API server with
a message that names the field and the rule it breaks; a value only the operator can judge
ends the object in InvalidSpec, naming the field, once: never a crash, never a loop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.controlplane import REPO, ControlPlane
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

VAULT = "https://myvault.vault.azure.net"
ACCOUNT = "https://backups.blob.core.windows.net"
BLOB = {"accountUrl": ACCOUNT, "container": "team-a"}
SNAPSHOT = "ns/kb/20261128-010203-abcd"
BACKUP: dict[str, Any] = {"vaultUrl": VAULT, "keys": {"names": ["app-key"]}}
RESTORE: dict[str, Any] = {"vaultUrl": VAULT, "source": {"keyBackupRef": {"name": "kb"}}}
MATCH = "in body should match"


def _with(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``spec`` with the field at dotted ``path`` set to ``value`` (None: removed)."""
    changed: dict[str, Any] = json.loads(json.dumps(spec))
    *parents, last = path.split(".")
    node = changed
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return changed


def backup(path: str, value: Any) -> dict[str, Any]:
    return _with(BACKUP, path, value)


def restore(path: str, value: Any) -> dict[str, Any]:
    return _with(RESTORE, path, value)


def blob_backup(field: str, value: Any) -> dict[str, Any]:
    return backup("destination", {"blob": _with(BLOB, field, value)})


def blob_restore(field: str, value: Any) -> dict[str, Any]:
    return restore("source", {"blob": _with({**BLOB, "path": SNAPSHOT}, field, value)})


#: (kind, field, spec, what the API server's message must say besides the field).
REFUSALS: list[tuple[str, str, dict[str, Any], str]] = [
    ("KeyBackup", "vaultUrl", backup("vaultUrl", None), "Required value"),
    ("KeyBackup", "vaultUrl", backup("vaultUrl", "http://v.vault.azure.net"), MATCH),
    ("KeyBackup", "vaultUrl", backup("vaultUrl", f"https://{'a' * 2050}"), "2048"),
    ("KeyBackup", "credentials", backup("credentials", {}), "Required value"),
    ("KeyBackup", "credentials.name", backup("credentials", {"name": "Bad_Name"}), MATCH),
    ("KeyBackup", "credentials.name", backup("credentials", {"name": "a" * 254}), "253"),
    ("KeyBackup", "keys", backup("keys", None), "Required value"),
    ("KeyBackup", "keys", backup("keys", {}), "set exactly one of keys.names or keys.selector"),
    ("KeyBackup", "keys.names", backup("keys", {"names": []}), "should have at least 1 items"),
    ("KeyBackup", "keys.names", backup("keys", {"names": ["a", "a"]}), "Duplicate value"),
    ("KeyBackup", "keys.names", backup("keys", {"names": ["bad_name"]}), MATCH),
    (
        "KeyBackup",
        "keys.names",
        backup("keys", {"names": [f"k{i}" for i in range(10_001)]}),
        "must have at most 10000 items",
    ),
    ("KeyBackup", "keys.selector", backup("keys", {"selector": "all"}), "must be of type object"),
    (
        "KeyBackup",
        "keys.selector.namePattern",
        backup("keys", {"selector": {"namePattern": "(a)\\1"}}),
        "must be a regular expression in RE2 syntax",
    ),
    (
        "KeyBackup",
        "keys.selector.namePattern",
        backup("keys", {"selector": {"namePattern": "a" * 257}}),
        "may not be more than 256 bytes",
    ),
    (
        "KeyBackup",
        "keys.selector.tags",
        backup("keys", {"selector": {"tags": {"team": 7}}}),
        "must be of type string",
    ),
    ("KeyBackup", "destination", backup("destination", {}), "exactly one of secret or blob"),
    ("KeyBackup", "destination.secret", backup("destination", {"secret": 1}), "of type object"),
    ("KeyBackup", "destination.blob", backup("destination", {"blob": {}}), "Required value"),
    ("KeyBackup", "destination.blob.accountUrl", blob_backup("accountUrl", f"{ACCOUNT}/x"), MATCH),
    (
        "KeyBackup",
        "destination.blob.accountUrl",
        blob_backup("accountUrl", f"https://{'a' * 2050}"),
        "2048",
    ),
    ("KeyBackup", "destination.blob.container", blob_backup("container", "Team_A"), MATCH),
    ("KeyBackup", "destination.blob.container", blob_backup("container", "ab"), "at least 3"),
    ("KeyBackup", "destination.blob.container", blob_backup("container", "a" * 64), "63"),
    (
        "KeyBackup",
        "destination.blob.credentials.name",
        blob_backup("credentials", {"name": "Bad_Name"}),
        MATCH,
    ),
    ("KeyBackup", "destination.blob.credentials", blob_backup("credentials", {}), "Required"),
    ("KeyBackup", "destination.blob.prefix", blob_backup("prefix", "../other"), MATCH),
    ("KeyBackup", "destination.blob.prefix", blob_backup("prefix", "a" * 513), "512"),
    (
        "KeyBackup",
        "schedule",
        backup("schedule", "0 2 * *"),
        "schedule must be a 5-field cron expression",
    ),
    ("KeyBackup", "schedule", backup("schedule", "@" + "a" * 256), "256"),
    ("KeyBackup", "timeZone", backup("timeZone", "Z" * 65), "64"),
    ("KeyBackup", "suspend", backup("suspend", "yes"), "must be of type boolean"),
    ("KeyBackup", "retention", backup("retention", 14), "must be of type object"),
    (
        "KeyBackup",
        "retention.keepLast",
        backup("retention", {"keepLast": 0}),
        "greater than or equal to 1",
    ),
    ("KeyBackup", "retention.maxAge", backup("retention", {"maxAge": "30 days"}), MATCH),
    ("KeyBackup", "retention.maxAge", backup("retention", {"maxAge": "d"}), "at least 2"),
    ("KeyBackup", "deletionPolicy", backup("deletionPolicy", "Keep"), '"Retain", "Delete"'),
    ("KeyRestore", "vaultUrl", restore("vaultUrl", f"{VAULT}/keys"), MATCH),
    ("KeyRestore", "vaultUrl", restore("vaultUrl", None), "Required value"),
    ("KeyRestore", "credentials", restore("credentials", {}), "Required value"),
    ("KeyRestore", "credentials.name", restore("credentials", {"name": "-x"}), MATCH),
    ("KeyRestore", "source", restore("source", None), "Required value"),
    ("KeyRestore", "source", restore("source", {}), "exactly one of keyBackupRef or blob"),
    ("KeyRestore", "source.keyBackupRef", restore("source", {"keyBackupRef": {}}), "Required"),
    (
        "KeyRestore",
        "source.keyBackupRef.name",
        restore("source", {"keyBackupRef": {"name": "KB"}}),
        MATCH,
    ),
    (
        "KeyRestore",
        "source.keyBackupRef.name",
        restore("source", {"keyBackupRef": {"name": "k" * 64}}),
        "63",
    ),
    (
        "KeyRestore",
        "source.keyBackupRef.snapshot",
        restore("source", {"keyBackupRef": {"name": "kb", "snapshot": "yesterday"}}),
        MATCH,
    ),
    ("KeyRestore", "source.blob", restore("source", {"blob": {}}), "Required value"),
    ("KeyRestore", "source.blob.accountUrl", blob_restore("accountUrl", "ftp://x"), MATCH),
    ("KeyRestore", "source.blob.container", blob_restore("container", "-team"), MATCH),
    (
        "KeyRestore",
        "source.blob.credentials.name",
        blob_restore("credentials", {"name": "A"}),
        MATCH,
    ),
    ("KeyRestore", "source.blob.credentials", blob_restore("credentials", {}), "Required"),
    ("KeyRestore", "source.blob.path", blob_restore("path", "../other/x"), MATCH),
    ("KeyRestore", "source.blob.path", blob_restore("path", ""), "at least 1"),
    ("KeyRestore", "keys", restore("keys", []), "should have at least 1 items"),
    ("KeyRestore", "keys", restore("keys", ["a", "a"]), "Duplicate value"),
    ("KeyRestore", "keys", restore("keys", ["bad_name"]), MATCH),
    ("KeyRestore", "strategy", restore("strategy", "Whatever"), '"Auto", "RestoreOnly"'),
    ("KeyRestore", "onConflict", restore("onConflict", "Overwrite"), '"Skip", "Fail"'),
    ("KeyRestore", "purgeDeletedKeys", restore("purgeDeletedKeys", "true"), "of type boolean"),
    (
        "KeyRestore",
        "purgeDeletedKeys",
        {**RESTORE, "strategy": "RecoverOnly", "purgeDeletedKeys": True},
        "purgeDeletedKeys cannot be combined with strategy RecoverOnly",
    ),
]


def _spec_fields(crd: str) -> Iterator[str]:
    document = yaml.safe_load((REPO / "crds" / crd).read_text())
    spec = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def walk(node: dict[str, Any], prefix: str) -> Iterator[str]:
        for name, child in (node.get("properties") or {}).items():
            path = f"{prefix}{name}"
            yield path
            yield from walk(child, f"{path}.")

    yield from walk(spec, "")


def test_the_table_refuses_a_value_of_every_field_of_both_crds() -> None:
    for kind, crd in (
        ("KeyBackup", "keybackups.kvbackup.io.yaml"),
        ("KeyRestore", "keyrestores.kvbackup.io.yaml"),
    ):
        tested = {field for refused_kind, field, _, _ in REFUSALS if refused_kind == kind}
        assert set(_spec_fields(crd)) - tested == set(), f"{kind} fields without a refusal"


def _dry_run(control_plane: ControlPlane, namespace: str, manifests: list[str]) -> list[str]:
    """Each manifest's error from a server-side dry run ("" when it was accepted)."""
    errors = []
    for manifest in manifests:
        result = control_plane.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
        )
        errors.append("" if result.returncode == 0 else result.stderr)
    return errors


def _manifest(kind: str, spec: dict[str, Any], name: str = "x") -> str:
    return json.dumps(
        {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_every_refused_value_is_refused_naming_its_field_and_the_rule(
    control_plane: ControlPlane, namespace: str
) -> None:
    errors = _dry_run(
        control_plane, namespace, [_manifest(kind, spec) for kind, _, spec, _ in REFUSALS]
    )

    wrong = []
    for (kind, field, _, rule), error in zip(REFUSALS, errors, strict=True):
        # A field is named by its path, or by its parent's path for a missing one.
        named = f"spec.{field}" in error or f"spec.{field.rpartition('.')[0]}" in error
        if not error or not named or rule not in error:
            wrong.append((kind, field, rule, error.strip()[-300:]))
    assert wrong == []
    assert _dry_run(control_plane, namespace, [_manifest("KeyBackup", BACKUP)]) == [""]


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        pytest.param(
            "KeyBackup",
            {**BACKUP, "schedule": "0 0 30 2 *"},
            "spec.schedule",
            id="a cron that never fires",
        ),
        pytest.param(
            "KeyBackup",
            {**BACKUP, "schedule": "@daily", "timeZone": "Mars/Olympus_Mons"},
            "spec.timeZone",
            id="an unknown time zone",
        ),
        pytest.param(
            "KeyBackup",
            {**BACKUP, "keys": {"selector": {"namePattern": "(\\pL{100}){10}"}}},
            "spec.keys.selector.namePattern",
            id="a pattern too large once compiled",
        ),
        pytest.param(
            "KeyBackup",
            {**BACKUP, "keys": {"names": ["App-Key", "app-key"]}},
            "spec.keys.names",
            id="a key named twice in two cases",
        ),
        pytest.param(
            "KeyRestore",
            {**RESTORE, "keys": ["App-Key", "app-key"]},
            "spec.keys",
            id="a key to restore named twice in two cases",
        ),
    ],
)
def test_a_value_only_the_operator_can_judge_ends_in_invalid_spec_once(
    operator: OperatorProcess, cluster: Cluster, kind: str, spec: dict[str, Any], field: str
) -> None:
    plural = kind.lower()
    cluster.apply(_manifest(kind, spec, "judged"))
    cluster.wait_until(
        "the object is refused as InvalidSpec",
        lambda: cluster.ready_condition(plural, "judged").get("reason") == "InvalidSpec",
        timeout=60,
    )
    assert field in cluster.ready_condition(plural, "judged")["message"]
    assert cluster.status(plural, "judged")["phase"] == "Failed"

    time.sleep(8)  # the operator's retries here start after 1 s: a loop would show

    assert cluster.event_count("judged", "InvalidSpec") == 1
    assert operator.running
    log = Path(operator.log_path).read_text(errors="replace")
    assert "Traceback" not in log
