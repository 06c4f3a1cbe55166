"""The API server itself refuses malformed KeyBackups and KeyRestores with a clear message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvbackup.api.keybackup import NAME_PATTERN_MAX_LENGTH
from tests.harness.controlplane import REPO, ControlPlane
from tests.integration.conftest import Cluster
from tests.unit.test_spec_parsing import ACCOUNT, ESCAPING_FOLDERS

pytestmark = pytest.mark.integration

VAULT = "https://myvault.vault.azure.net"
VALID_BACKUP_SPEC: dict[str, Any] = {"vaultUrl": VAULT, "keys": {"names": ["app-key"]}}
VALID_RESTORE_SPEC: dict[str, Any] = {"vaultUrl": VAULT, "source": {"keyBackupRef": {"name": "kb"}}}
PAYMENTS_NAMESPACE = json.dumps(
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}}
)


def _object(kind: str, spec: dict[str, Any], name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "kvbackup.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def _apply(control_plane: ControlPlane, namespace: str, manifest: str) -> tuple[bool, str]:
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=False)
    return result.returncode == 0, result.stderr


def _backup(**changes: Any) -> dict[str, Any]:
    merged = {**VALID_BACKUP_SPEC, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def _restore(**changes: Any) -> dict[str, Any]:
    return {
        key: value for key, value in {**VALID_RESTORE_SPEC, **changes}.items() if value is not None
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            _backup(vaultUrl=None), "spec.vaultUrl: Required value", id="without a vault URL"
        ),
        pytest.param(
            _backup(vaultUrl="http://myvault.vault.azure.net"),
            "spec.vaultUrl in body should match",
            id="with a plain-http vault URL",
        ),
        pytest.param(
            _backup(vaultUrl=f"{VAULT}/keys/a"),
            "spec.vaultUrl in body should match",
            id="with a path in the vault URL",
        ),
        pytest.param(
            _backup(keys={"names": ["bad_name"]}),
            "spec.keys.names[0] in body should match",
            id="with an invalid key name",
        ),
        pytest.param(
            _backup(keys={"names": ["a"], "selector": {}}),
            "set exactly one of keys.names or keys.selector",
            id="with both names and a selector",
        ),
        pytest.param(
            _backup(keys={}),
            "set exactly one of keys.names or keys.selector",
            id="with neither names nor a selector",
        ),
        pytest.param(
            _backup(keys={"names": []}),
            "spec.keys.names: Invalid value",
            id="with an empty list of names",
        ),
        pytest.param(
            _backup(credentials={"name": "Not_A_Secret"}),
            "spec.credentials.name in body should match",
            id="with an invalid credentials Secret name",
        ),
        pytest.param(
            _backup(destination={}), "exactly one of secret or blob", id="with an empty destination"
        ),
        pytest.param(
            _backup(destination={"s3": {}}),
            'unknown field "spec.destination.s3"',
            id="with an unknown destination",
        ),
    ],
)
def test_a_malformed_keybackup_is_refused(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], message: str
) -> None:
    accepted, error = _apply(control_plane, namespace, _object("KeyBackup", spec, "kb"))
    assert not accepted
    assert message in error


@pytest.mark.parametrize("prefix", ESCAPING_FOLDERS)
def test_a_blob_prefix_that_could_leave_its_container_is_refused(
    control_plane: ControlPlane, namespace: str, prefix: str
) -> None:
    blob = {"accountUrl": ACCOUNT, "container": "team-a", "prefix": prefix}
    spec = _backup(destination={"blob": blob})

    accepted, error = _apply(control_plane, namespace, _object("KeyBackup", spec, "kb"))

    assert not accepted
    assert "spec.destination.blob.prefix in body should match" in error


@pytest.mark.parametrize("folder", ESCAPING_FOLDERS)
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("{}/ns/kb/20261128-010203-abcd", id="folder"),
        pytest.param(f"{ACCOUNT}/team-a/{{}}/ns/kb/20261128-010203-abcd/", id="url"),
    ],
)
def test_a_snapshot_path_that_could_leave_its_container_is_refused(
    control_plane: ControlPlane, namespace: str, folder: str, path: str
) -> None:
    blob = {"accountUrl": ACCOUNT, "container": "team-a", "path": path.format(folder)}
    spec = _restore(source={"blob": blob})

    accepted, error = _apply(control_plane, namespace, _object("KeyRestore", spec, "kr"))

    assert not accepted
    assert "spec.source.blob.path in body should match" in error


def test_blob_folders_and_a_snapshots_location_url_are_accepted(
    control_plane: ControlPlane, namespace: str
) -> None:
    emulator = "http://127.0.0.1:10000/devstoreaccount1"
    destination = {"blob": {"accountUrl": emulator, "container": "team-a", "prefix": "v1.2/b/"}}
    location = f"{emulator}/team-a/v1.2/b/ns/kb/20261128-010203-abcd/"
    source = {"blob": {"accountUrl": emulator, "container": "team-a", "path": location}}

    for manifest in (
        _object("KeyBackup", _backup(destination=destination), "kb"),
        _object("KeyRestore", _restore(source=source), "kr"),
    ):
        accepted, error = _apply(control_plane, namespace, manifest)
        assert accepted, error


@pytest.mark.parametrize(
    "account_url",
    [
        pytest.param(f"{ACCOUNT}/..", id="parent segment"),
        pytest.param(f"{ACCOUNT}/%2e%2e", id="encoded parent segment"),
        pytest.param(f"{ACCOUNT}/devstoreaccount1/other", id="a container after the account"),
    ],
)
def test_an_account_url_with_a_path_beyond_an_account_name_is_refused(
    control_plane: ControlPlane, namespace: str, account_url: str
) -> None:
    spec = _backup(destination={"blob": {"accountUrl": account_url, "container": "team-a"}})

    accepted, error = _apply(control_plane, namespace, _object("KeyBackup", spec, "kb"))

    assert not accepted
    assert "spec.destination.blob.accountUrl in body should match" in error


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(r"(?=app-)\w+", id="lookahead"),
        pytest.param(r"(a)\1", id="backreference"),
        pytest.param("app-([", id="malformed"),
    ],
)
def test_a_name_pattern_that_re2_cannot_compile_is_refused(
    control_plane: ControlPlane, namespace: str, pattern: str
) -> None:
    spec = _backup(keys={"selector": {"namePattern": pattern}})

    accepted, error = _apply(control_plane, namespace, _object("KeyBackup", spec, "kb"))

    assert not accepted
    assert "spec.keys.selector.namePattern" in error
    assert "must be a regular expression in RE2 syntax" in error


def test_a_name_pattern_longer_than_its_bound_is_refused(
    control_plane: ControlPlane, namespace: str
) -> None:
    spec = _backup(keys={"selector": {"namePattern": "a" * (NAME_PATTERN_MAX_LENGTH + 1)}})

    accepted, error = _apply(control_plane, namespace, _object("KeyBackup", spec, "kb"))

    assert not accepted
    assert f"may not be more than {NAME_PATTERN_MAX_LENGTH} bytes" in error


def test_a_keybackup_name_longer_than_a_label_value_is_refused(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = _object("KeyBackup", VALID_BACKUP_SPEC, "k" * 64)
    accepted, error = _apply(control_plane, namespace, manifest)
    assert not accepted
    assert "at most 63 characters" in error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            _restore(vaultUrl=None), "spec.vaultUrl: Required value", id="without a target vault"
        ),
        pytest.param({"vaultUrl": VAULT}, "spec.source: Required value", id="without a source"),
        pytest.param(
            _restore(source={"keyBackupRef": {"name": "kb", "snapshot": "yesterday"}}),
            "spec.source.keyBackupRef.snapshot in body should match",
            id="with a malformed snapshot id",
        ),
        pytest.param(
            _restore(strategy="Whatever"),
            'supported values: "Auto", "RestoreOnly", "RecoverOnly"',
            id="with an unknown strategy",
        ),
        pytest.param(
            _restore(onConflict="Overwrite"),
            'supported values: "Skip", "Fail"',
            id="with an unknown conflict policy",
        ),
        pytest.param(
            _restore(strategy="RecoverOnly", purgeDeletedKeys=True),
            "purgeDeletedKeys cannot be combined with strategy RecoverOnly",
            id="purging with RecoverOnly",
        ),
    ],
)
def test_a_malformed_keyrestore_is_refused(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], message: str
) -> None:
    accepted, error = _apply(control_plane, namespace, _object("KeyRestore", spec, "kr"))
    assert not accepted
    assert message in error


def test_defaults_live_in_the_schema_so_gitops_tools_see_no_drift(cluster: Cluster) -> None:
    cluster.apply(_object("KeyBackup", VALID_BACKUP_SPEC, "kb"))
    cluster.apply(_object("KeyRestore", VALID_RESTORE_SPEC, "kr"))
    assert cluster.get("keybackup", "kb")["spec"]["destination"] == {"secret": {}}
    restore = cluster.get("keyrestore", "kr")["spec"]
    assert restore["strategy"] == "Auto"
    assert restore["onConflict"] == "Skip"
    assert restore["purgeDeletedKeys"] is False
    assert restore["source"]["keyBackupRef"]["snapshot"] == "latest"


def test_kubectl_lists_keybackups_by_short_name_and_category_with_their_columns(
    cluster: Cluster,
) -> None:
    cluster.apply(_object("KeyBackup", VALID_BACKUP_SPEC, "kb"))
    by_short_name = cluster.plane.kubectl("get", "kb", "-n", cluster.namespace).stdout
    header = by_short_name.splitlines()[0].split()
    assert header[:2] == ["NAME", "PHASE"]
    assert {"READY", "SUCCESS", "AGE"} <= set(header)
    by_category = cluster.plane.kubectl("get", "kvbackup", "-n", cluster.namespace).stdout
    assert "keybackup.kvbackup.io/kb" in by_category


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_every_example_is_accepted_by_the_api_server_as_written(
    control_plane: ControlPlane, example: str
) -> None:
    # Some examples name their namespace; it exists on a user's cluster, as here.
    control_plane.kubectl("apply", "-f", "-", input=PAYMENTS_NAMESPACE)
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", str(REPO / "examples" / example)
    )
    assert "(server dry run)" in result.stdout
