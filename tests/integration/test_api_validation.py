"""The API server itself refuses malformed KeyBackups and KeyRestores with a clear message:
for every field of both CRDs, one that names the field and the rule it breaks. A value only
the operator can judge ends the object in InvalidSpec, naming the field, once: never a
crash, never a loop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvbackup.api.keybackup import NAME_PATTERN_MAX_LENGTH
from tests.harness.controlplane import REPO, ControlPlane
from tests.harness.operator import OperatorProcess
from tests.integration.conftest import SNAPSHOT, Cluster
from tests.unit.test_spec_parsing import ACCOUNT, ESCAPING_FOLDERS

pytestmark = pytest.mark.integration

VAULT = "https://myvault.vault.azure.net"
#: A KeyBackup's and a KeyRestore's fields that choose items, one per kind.
KINDS = ("keys", "secrets", "certificates")
#: A KeyRestore's switches that purge soft-deleted items, one per kind.
PURGES = ("purgeDeletedKeys", "purgeDeletedSecrets", "purgeDeletedCertificates")
VALID_BACKUP_SPEC: dict[str, Any] = {"vaultUrl": VAULT, "keys": {"names": ["app-key"]}}
VALID_RESTORE_SPEC: dict[str, Any] = {"vaultUrl": VAULT, "source": {"keyBackupRef": {"name": "kb"}}}
BLOB = {"accountUrl": ACCOUNT, "container": "team-a"}
SNAPSHOT_PATH = f"ns/kb/{SNAPSHOT}"
MATCH = "in body should match"
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


def test_a_keybackup_that_selects_no_kind_is_refused_saying_what_it_must_select(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = _object("KeyBackup", {"vaultUrl": VAULT}, "kb")

    accepted, error = _apply(control_plane, namespace, manifest)

    assert not accepted
    assert "spec must select at least one of keys, secrets or certificates" in error


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"secrets": {"selector": {}}}, id="secrets alone"),
        pytest.param({"certificates": {"names": ["api-tls"]}}, id="certificates alone"),
        pytest.param(
            {
                "keys": {"selector": {}},
                "secrets": {"selector": {"namePattern": "db-.*", "tags": {"env": "prod"}}},
                "certificates": {"names": ["api-tls"]},
            },
            id="every kind",
        ),
    ],
)
def test_a_keybackup_of_any_kinds_without_keys_is_accepted(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any]
) -> None:
    accepted, error = _apply(
        control_plane, namespace, _object("KeyBackup", {"vaultUrl": VAULT, **spec}, "kb")
    )

    assert accepted, error


@pytest.mark.parametrize("plural", ["secrets", "certificates"])
def test_a_keyrestore_with_a_bad_name_of_another_kind_is_refused_naming_it(
    control_plane: ControlPlane, namespace: str, plural: str
) -> None:
    spec = _restore(**{plural: ["db-password", "db_password"]})

    accepted, error = _apply(control_plane, namespace, _object("KeyRestore", spec, "kr"))

    assert not accepted
    assert f"spec.{plural}[1]: Invalid value" in error
    assert MATCH in error


def test_a_keybackup_name_longer_than_a_label_value_is_refused(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = _object("KeyBackup", VALID_BACKUP_SPEC, "k" * 64)
    accepted, error = _apply(control_plane, namespace, manifest)
    assert not accepted
    assert "at most 63 characters" in error


def test_defaults_live_in_the_schema_so_gitops_tools_see_no_drift(cluster: Cluster) -> None:
    cluster.apply(_object("KeyBackup", VALID_BACKUP_SPEC, "kb"))
    cluster.apply(_object("KeyRestore", VALID_RESTORE_SPEC, "kr"))
    backup = cluster.get("keybackup", "kb")["spec"]
    assert backup["destination"] == {"secret": {}}
    assert backup["fullBackupEvery"] == "24h"
    restore = cluster.get("keyrestore", "kr")["spec"]
    assert restore["strategy"] == "Auto"
    assert restore["onConflict"] == "Skip"
    assert [restore[purge] for purge in PURGES] == [False, False, False]
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


def _blob_backup(**changes: Any) -> dict[str, Any]:
    blob = {key: value for key, value in {**BLOB, **changes}.items() if value is not None}
    return _backup(destination={"blob": blob})


def _blob_restore(**changes: Any) -> dict[str, Any]:
    blob = {**BLOB, "path": SNAPSHOT_PATH, **changes}
    return _restore(
        source={"blob": {key: value for key, value in blob.items() if value is not None}}
    )


def _choice_refusals(plural: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """How a KeyBackup's choice of one kind (keys, secrets or certificates) is refused."""

    def choosing(choice: Any) -> dict[str, Any]:
        return _backup(**{plural: choice})

    exactly_one = f"set exactly one of {plural}.names or {plural}.selector"
    names, selector = f"{plural}.names", f"{plural}.selector"
    return [
        ("KeyBackup", plural, choosing({}), exactly_one),
        ("KeyBackup", plural, choosing({"names": ["a"], "selector": {}}), exactly_one),
        ("KeyBackup", plural, choosing(["a"]), "must be of type object"),
        ("KeyBackup", names, choosing({"names": []}), "should have at least 1 items"),
        ("KeyBackup", names, choosing({"names": ["a", "a"]}), "Duplicate value"),
        ("KeyBackup", names, choosing({"names": ["bad_name"]}), MATCH),
        ("KeyBackup", names, choosing({"names": ["app-key\n"]}), MATCH),
        (
            "KeyBackup",
            names,
            choosing({"names": [f"k{i}" for i in range(10_001)]}),
            "must have at most 10000 items",
        ),
        ("KeyBackup", selector, choosing({"selector": "all"}), "must be of type object"),
        (
            "KeyBackup",
            f"{selector}.namePattern",
            choosing({"selector": {"namePattern": "(a)\\1"}}),
            "must be a regular expression in RE2 syntax",
        ),
        (
            "KeyBackup",
            f"{selector}.namePattern",
            choosing({"selector": {"namePattern": "a" * 257}}),
            "may not be more than 256 bytes",
        ),
        (
            "KeyBackup",
            f"{selector}.tags",
            choosing({"selector": {"tags": {"team": 7}}}),
            "must be of type string",
        ),
    ]


#: (kind, field, spec, what the API server's message must say besides the field).
REFUSALS: list[tuple[str, str, dict[str, Any], str]] = [
    ("KeyBackup", "vaultUrl", _backup(vaultUrl=None), "Required value"),
    ("KeyBackup", "vaultUrl", _backup(vaultUrl="http://v.vault.azure.net"), MATCH),
    ("KeyBackup", "vaultUrl", _backup(vaultUrl=f"https://{'a' * 2050}"), "2048"),
    ("KeyBackup", "vaultUrl", _backup(vaultUrl=f"{VAULT}\n"), MATCH),
    ("KeyBackup", "credentials", _backup(credentials={}), "Required value"),
    ("KeyBackup", "credentials.name", _backup(credentials={"name": "Bad_Name"}), MATCH),
    ("KeyBackup", "credentials.name", _backup(credentials={"name": "a" * 254}), "253"),
    *(refusal for plural in KINDS for refusal in _choice_refusals(plural)),
    ("KeyBackup", "destination", _backup(destination={}), "exactly one of secret or blob"),
    ("KeyBackup", "destination", _backup(destination={"s3": {}}), 'unknown field "spec.dest'),
    ("KeyBackup", "destination.secret", _backup(destination={"secret": 1}), "of type object"),
    ("KeyBackup", "destination.blob", _backup(destination={"blob": {}}), "Required value"),
    ("KeyBackup", "destination.blob.accountUrl", _blob_backup(accountUrl=f"{ACCOUNT}/x"), MATCH),
    ("KeyBackup", "destination.blob.accountUrl", _blob_backup(accountUrl=f"{ACCOUNT}\n"), MATCH),
    (
        "KeyBackup",
        "destination.blob.accountUrl",
        _blob_backup(accountUrl=f"https://{'a' * 2050}"),
        "2048",
    ),
    ("KeyBackup", "destination.blob.container", _blob_backup(container="Team_A"), MATCH),
    ("KeyBackup", "destination.blob.container", _blob_backup(container="ab"), "at least 3"),
    ("KeyBackup", "destination.blob.container", _blob_backup(container="a" * 64), "63"),
    (
        "KeyBackup",
        "destination.blob.credentials.name",
        _blob_backup(credentials={"name": "Bad_Name"}),
        MATCH,
    ),
    ("KeyBackup", "destination.blob.credentials", _blob_backup(credentials={}), "Required"),
    ("KeyBackup", "destination.blob.prefix", _blob_backup(prefix="../other"), MATCH),
    ("KeyBackup", "destination.blob.prefix", _blob_backup(prefix="a" * 513), "512"),
    (
        "KeyBackup",
        "schedule",
        _backup(schedule="0 2 * *"),
        "schedule must be a 5-field cron expression",
    ),
    ("KeyBackup", "schedule", _backup(schedule="@" + "a" * 256), "256"),
    ("KeyBackup", "schedule", _backup(schedule="0 2 * * *\n"), "schedule must be printable ASCII"),
    ("KeyBackup", "schedule", _backup(schedule="@every 6 hours"), "an @every schedule takes one"),
    ("KeyBackup", "schedule", _backup(schedule="@every "), "an @every schedule takes one"),
    ("KeyBackup", "schedule", _backup(schedule="@every 99999999999d"), "of at most 36525d"),
    ("KeyBackup", "timeZone", _backup(timeZone="Z" * 65), "64"),
    ("KeyBackup", "timeZone", _backup(timeZone="../../etc/localtime"), MATCH),
    ("KeyBackup", "timeZone", _backup(timeZone="UTC\n"), MATCH),
    ("KeyBackup", "suspend", _backup(suspend="yes"), "must be of type boolean"),
    ("KeyBackup", "retention", _backup(retention=14), "must be of type object"),
    (
        "KeyBackup",
        "retention.keepLast",
        _backup(retention={"keepLast": 0}),
        "greater than or equal to 1",
    ),
    (
        "KeyBackup",
        "retention.keepDaily",
        _backup(retention={"keepDaily": 0}),
        "greater than or equal to 1",
    ),
    ("KeyBackup", "retention.keepWeekly", _backup(retention={"keepWeekly": -1}), "equal to 1"),
    ("KeyBackup", "retention.keepMonthly", _backup(retention={"keepMonthly": 1.5}), "integer"),
    ("KeyBackup", "retention.keepYearly", _backup(retention={"keepYearly": "2"}), "integer"),
    ("KeyBackup", "retention.maxAge", _backup(retention={"maxAge": "30 days"}), MATCH),
    ("KeyBackup", "retention.maxAge", _backup(retention={"maxAge": "d"}), "at least 2"),
    ("KeyBackup", "retention.maxAge", _backup(retention={"maxAge": "30d\n"}), MATCH),
    ("KeyBackup", "retention.maxAge", _backup(retention={"maxAge": "99999999999d"}), MATCH),
    ("KeyBackup", "retention.maxAge", _backup(retention={"maxAge": "1d" + "0" * 31}), "32"),
    ("KeyBackup", "fullBackupEvery", _backup(fullBackupEvery="1 day"), MATCH),
    ("KeyBackup", "fullBackupEvery", _backup(fullBackupEvery=24), "must be of type string"),
    ("KeyBackup", "fullBackupEvery", _backup(fullBackupEvery="h"), "at least 2"),
    ("KeyBackup", "fullBackupEvery", _backup(fullBackupEvery="24h\n"), MATCH),
    ("KeyBackup", "deletionPolicy", _backup(deletionPolicy="Keep"), '"Retain", "Delete"'),
    ("KeyBackup", "copies", _backup(copies="offsite"), "must be of type array"),
    (
        "KeyBackup",
        "copies",
        _backup(copies=[{"name": f"c{i}", "blob": BLOB} for i in range(4)]),
        "must have at most 3 items",
    ),
    ("KeyBackup", "copies[0].blob", _backup(copies=[{"name": "offsite"}]), "Required value"),
    (
        "KeyBackup",
        "copies[0].name",
        _backup(copies=[{"name": "primary", "blob": BLOB}]),
        "primary is spec.destination's name",
    ),
    ("KeyBackup", "copies[0].name", _backup(copies=[{"name": "Off_Site", "blob": BLOB}]), MATCH),
    (
        "KeyBackup",
        "copies[1]",
        _backup(copies=[{"name": "a", "blob": BLOB}, {"name": "a", "blob": BLOB}]),
        "Duplicate value",
    ),
    (
        "KeyBackup",
        "copies[0].blob.container",
        _backup(copies=[{"name": "a", "blob": {**BLOB, "container": "Team-A"}}]),
        MATCH,
    ),
    (
        "KeyBackup",
        "copies[0].blob.prefix",
        _backup(copies=[{"name": "a", "blob": {**BLOB, "prefix": "../up"}}]),
        MATCH,
    ),
    (
        "KeyBackup",
        "copies[0].retention.keepLast",
        _backup(copies=[{"name": "a", "blob": BLOB, "retention": {"keepLast": 0}}]),
        "greater than or equal to 1",
    ),
    ("KeyBackup", "verify", _backup(verify="weekly"), "verify must be a 5-field cron expression"),
    ("KeyBackup", "verify", _backup(verify="@every 1 day"), "an @every verify schedule takes one"),
    ("KeyRestore", "vaultUrl", _restore(vaultUrl=f"{VAULT}/keys"), MATCH),
    ("KeyRestore", "vaultUrl", _restore(vaultUrl=None), "Required value"),
    ("KeyRestore", "credentials", _restore(credentials={}), "Required value"),
    ("KeyRestore", "credentials.name", _restore(credentials={"name": "-x"}), MATCH),
    ("KeyRestore", "source", _restore(source=None), "Required value"),
    ("KeyRestore", "source", _restore(source={}), "exactly one of keyBackupRef or blob"),
    ("KeyRestore", "source.keyBackupRef", _restore(source={"keyBackupRef": {}}), "Required"),
    (
        "KeyRestore",
        "source.keyBackupRef.name",
        _restore(source={"keyBackupRef": {"name": "KB"}}),
        MATCH,
    ),
    (
        "KeyRestore",
        "source.keyBackupRef.name",
        _restore(source={"keyBackupRef": {"name": "k" * 64}}),
        "63",
    ),
    (
        "KeyRestore",
        "source.keyBackupRef.snapshot",
        _restore(source={"keyBackupRef": {"name": "kb", "snapshot": "yesterday"}}),
        MATCH,
    ),
    (
        "KeyRestore",
        "source.keyBackupRef.copy",
        _restore(source={"keyBackupRef": {"name": "kb", "copy": "Off Site"}}),
        MATCH,
    ),
    (
        "KeyRestore",
        "source.keyBackupRef.snapshot",
        _restore(source={"keyBackupRef": {"name": "kb", "snapshot": "20261128-010203-abcd\n"}}),
        MATCH,
    ),
    ("KeyRestore", "source.blob", _restore(source={"blob": {}}), "Required value"),
    ("KeyRestore", "source.blob.accountUrl", _blob_restore(accountUrl="ftp://x"), MATCH),
    ("KeyRestore", "source.blob.accountUrl", _blob_restore(accountUrl=f"{ACCOUNT}\n"), MATCH),
    ("KeyRestore", "source.blob.container", _blob_restore(container="-team"), MATCH),
    (
        "KeyRestore",
        "source.blob.credentials.name",
        _blob_restore(credentials={"name": "A"}),
        MATCH,
    ),
    ("KeyRestore", "source.blob.credentials", _blob_restore(credentials={}), "Required"),
    ("KeyRestore", "source.blob.path", _blob_restore(path="../other/x"), MATCH),
    ("KeyRestore", "source.blob.path", _blob_restore(path=""), "at least 1"),
    ("KeyRestore", "source.blob.path", _blob_restore(path=f"{SNAPSHOT_PATH}\n"), MATCH),
    (
        "KeyRestore",
        "source.blob.path",
        _blob_restore(path=f"https://a\nb/c/{SNAPSHOT_PATH}"),
        MATCH,
    ),
    *(
        ("KeyRestore", plural, _restore(**{plural: names}), rule)
        for plural in KINDS
        for names, rule in (
            ([], "should have at least 1 items"),
            (["a", "a"], "Duplicate value"),
            (["bad_name"], MATCH),
            (["a\n"], MATCH),
        )
    ),
    ("KeyRestore", "strategy", _restore(strategy="Whatever"), '"Auto", "RestoreOnly"'),
    ("KeyRestore", "onConflict", _restore(onConflict="Overwrite"), '"Skip", "Fail"'),
    ("KeyRestore", "dryRun", _restore(dryRun="true"), "of type boolean"),
    *(
        refusal
        for purge in PURGES
        for refusal in (
            ("KeyRestore", purge, _restore(**{purge: "true"}), "of type boolean"),
            (
                "KeyRestore",
                purge,
                _restore(strategy="RecoverOnly", **{purge: True}),
                f"{purge} cannot be combined with strategy RecoverOnly",
            ),
        )
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


def test_every_refused_value_is_refused_naming_its_field_and_the_rule(
    control_plane: ControlPlane, namespace: str
) -> None:
    errors = _dry_run(
        control_plane, namespace, [_object(kind, spec, "x") for kind, _, spec, _ in REFUSALS]
    )

    wrong = []
    for (kind, field, _, rule), error in zip(REFUSALS, errors, strict=True):
        # A field is named by its path, or by its parent's path for a missing one.
        named = f"spec.{field}" in error or f"spec.{field.rpartition('.')[0]}" in error
        if not error or not named or rule not in error:
            wrong.append((kind, field, rule, error.strip()[-300:]))
    assert wrong == []
    assert _dry_run(control_plane, namespace, [_object("KeyBackup", VALID_BACKUP_SPEC, "x")]) == [
        ""
    ]


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "schedule": "0 0 30 2 *"},
            "spec.schedule",
            id="a cron that never fires",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "schedule": "@daily", "timeZone": "Mars/Olympus_Mons"},
            "spec.timeZone",
            id="an unknown time zone",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "keys": {"selector": {"namePattern": "(\\pL{100}){10}"}}},
            "spec.keys.selector.namePattern",
            id="a pattern too large once compiled",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "keys": {"names": ["App-Key", "app-key"]}},
            "spec.keys.names",
            id="a key named twice in two cases",
        ),
        pytest.param(
            "KeyRestore",
            {**VALID_RESTORE_SPEC, "keys": ["App-Key", "app-key"]},
            "spec.keys",
            id="a key to restore named twice in two cases",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "secrets": {"names": ["Db-Password", "db-password"]}},
            "spec.secrets.names",
            id="a secret named twice in two cases",
        ),
        pytest.param(
            "KeyRestore",
            {**VALID_RESTORE_SPEC, "certificates": ["Api-Tls", "api-tls"]},
            "spec.certificates",
            id="a certificate to restore named twice in two cases",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "schedule": "@every 999999999d"},
            "spec.schedule",
            id="an interval past the year 9999",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "retention": {"maxAge": "999999999d"}},
            "spec.retention.maxAge",
            id="a maximum age before the year 1",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "fullBackupEvery": "0h"},
            "spec.fullBackupEvery",
            id="a full backup every no time at all",
        ),
        pytest.param(
            "KeyBackup",
            {
                **VALID_BACKUP_SPEC,
                "destination": {"blob": BLOB},
                "copies": [{"name": "offsite", "blob": {**BLOB, "accountUrl": ACCOUNT + "/"}}],
            },
            "spec.copies[0].blob",
            id="a copy in the destination's own container and prefix",
        ),
        pytest.param(
            "KeyBackup",
            {**VALID_BACKUP_SPEC, "verify": "0 0 30 2 *"},
            "spec.verify",
            id="a verification that never comes",
        ),
    ],
)
def test_a_value_only_the_operator_can_judge_ends_in_invalid_spec_once(
    operator: OperatorProcess, cluster: Cluster, kind: str, spec: dict[str, Any], field: str
) -> None:
    plural = kind.lower()
    cluster.apply(_object(kind, spec, "judged"))
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


def test_a_schedule_more_frequent_than_the_clusters_minimum_ends_in_invalid_spec_once(
    own_operator: Callable[..., Cluster],
) -> None:
    cluster = own_operator("min-interval", KVBACKUP_MIN_SCHEDULE_INTERVAL="1h")
    cluster.apply(_object("KeyBackup", {**VALID_BACKUP_SPEC, "schedule": "*/30 * * * *"}, "often"))

    cluster.wait_until(
        "the object is refused as InvalidSpec",
        lambda: cluster.ready_condition("keybackup", "often").get("reason") == "InvalidSpec",
        timeout=60,
    )
    message = cluster.ready_condition("keybackup", "often")["message"]
    assert "spec.schedule '*/30 * * * *' runs as often as every 30m" in message
    assert "the shortest interval this cluster allows is 1h" in message
    assert "KVBACKUP_MIN_SCHEDULE_INTERVAL" in message
    assert "nextScheduleTime" not in cluster.status("keybackup", "often")

    time.sleep(5)  # a retry loop, or runs at each slot, would show

    assert cluster.event_count("often", "InvalidSpec") == 1
    assert cluster.event_count("often", "BackupStarted") == 0


def _deleted_with_event(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    """Deletes KeyBackup ``name``, which must be gone within seconds, not held by its
    finalizer; the Events with ``reason`` it was given then."""
    deleted = cluster.plane.kubectl(
        "delete", "kb", name, "-n", cluster.namespace, "--timeout=30s", check=False
    )
    assert deleted.returncode == 0, deleted.stderr
    cluster.wait_until(
        f"a {reason} Event", lambda: cluster.event_count(name, reason) > 0, timeout=15
    )
    return [event for event in cluster.events_for(name) if event["reason"] == reason]


def test_a_delete_policy_keybackup_whose_destination_only_the_operator_refuses_is_deleted(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    # The schema lets http through for emulators; the operator allows it on loopback only.
    destination = {"blob": {**BLOB, "accountUrl": "http://backups.blob.core.windows.net"}}
    spec = {**VALID_BACKUP_SPEC, "deletionPolicy": "Delete", "destination": destination}
    cluster.apply(_object("KeyBackup", spec, "unreadable"))
    cluster.wait_until(
        "the object is refused as InvalidSpec, with the finalizer that deletes its snapshots",
        lambda: (
            cluster.ready_condition("keybackup", "unreadable").get("reason") == "InvalidSpec"
            and bool(cluster.get("keybackup", "unreadable")["metadata"].get("finalizers"))
        ),
        timeout=60,
    )

    (event,) = _deleted_with_event(cluster, "unreadable", "BackupsNotDeleted")
    assert "gave up after 1 attempt(s)" in event["message"]
    assert "left behind: the snapshots of KeyBackup" in event["message"]
    assert "spec.destination.blob.accountUrl" in event["message"]


def test_a_delete_policy_keybackup_with_a_schedule_only_the_operator_refuses_is_deleted(
    operator: OperatorProcess, cluster: Cluster
) -> None:
    spec = {**VALID_BACKUP_SPEC, "deletionPolicy": "Delete", "schedule": "@every 999999999d"}
    cluster.apply(_object("KeyBackup", spec, "overflowing"))
    cluster.wait_until(
        "the object is refused as InvalidSpec",
        lambda: cluster.ready_condition("keybackup", "overflowing").get("reason") == "InvalidSpec",
        timeout=60,
    )

    # Only the destination is read to delete the snapshots: there were none, in Secrets.
    (event,) = _deleted_with_event(cluster, "overflowing", "BackupsDeleted")
    assert event["message"] == "deleted 0 snapshot(s)"
