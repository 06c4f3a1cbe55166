"""KeyBackup and KeyRestore specs: what parses, and refusals that name the field at fault."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from kvbackup.api import fields, keybackup, keyrestore
from kvbackup.api.keybackup import (
    DeletionPolicy,
    ItemChoice,
    ItemSelector,
    NamePattern,
    Retention,
    SecretDestination,
)
from kvbackup.api.keyrestore import OnConflict, SnapshotSource, Strategy
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.errors import InvalidSpecError

VAULT = "https://myvault.vault.azure.net"


def backup(**spec: Any) -> dict[str, Any]:
    return {"vaultUrl": VAULT, "keys": {"names": ["signing-key"]}} | spec


def restore(**spec: Any) -> dict[str, Any]:
    return {"vaultUrl": VAULT, "source": {"keyBackupRef": {"name": "nightly"}}} | spec


def refusal(parse: Any, spec: dict[str, Any]) -> str:
    with pytest.raises(InvalidSpecError) as caught:
        parse(spec)
    return caught.value.message


def test_a_keybackup_with_key_names_parses_into_its_dataclass() -> None:
    spec = keybackup.parse_spec(
        backup(
            keys={"names": ["signing-key", "Encryption-2"]},
            destination={"secret": {}},
            credentials={"name": "vault-sp"},
        )
    )

    assert spec.vault_url == VAULT
    assert spec.choices == {ItemKind.KEY: ItemChoice(names=("signing-key", "Encryption-2"))}
    assert spec.destination == SecretDestination()
    assert spec.credentials_secret == "vault-sp"


@pytest.mark.parametrize("kind", ITEM_KINDS)
def test_a_keybackup_with_a_selector_compiles_its_pattern_and_keeps_its_tags(
    kind: ItemKind,
) -> None:
    chosen = {"selector": {"namePattern": "app-.*", "tags": {"env": "prod"}}}
    spec = keybackup.parse_spec({"vaultUrl": VAULT, kind.plural: chosen})

    assert list(spec.choices) == [kind]
    selector = spec.choices[kind].selector
    assert spec.choices[kind].names is None
    assert selector is not None
    assert selector.name_pattern is not None
    assert selector.name_pattern.text == "app-.*"
    assert selector.tags == {"env": "prod"}
    assert spec.credentials_secret is None


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        pytest.param("https://MyVault.Vault.Azure.NET/", VAULT, id="host-lowercased-slash-dropped"),
        pytest.param(
            "https://kv.example.internal:8443/", "https://kv.example.internal:8443", id="port-kept"
        ),
    ],
)
def test_the_vault_url_is_normalised_to_a_lowercase_host_without_trailing_slash(
    given: str, normalised: str
) -> None:
    assert keybackup.parse_spec(backup(vaultUrl=given)).vault_url == normalised
    assert keyrestore.parse_spec(restore(vaultUrl=given)).vault_url == normalised


@pytest.mark.parametrize(
    "vault_url",
    [
        pytest.param("http://myvault.vault.azure.net", id="not-https"),
        pytest.param("https://myvault.vault.azure.net/keys/k1", id="with-path"),
        pytest.param("https://myvault.vault.azure.net/?api-version=7.4", id="with-query"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_bad_vault_url_is_refused_naming_the_field(vault_url: str | None) -> None:
    assert "spec.vaultUrl" in refusal(keybackup.parse_spec, backup(vaultUrl=vault_url))
    assert "spec.vaultUrl" in refusal(keyrestore.parse_spec, restore(vaultUrl=vault_url))


def test_a_vault_url_with_an_out_of_range_port_is_refused_naming_the_field() -> None:
    assert "spec.vaultUrl" in refusal(
        keybackup.parse_spec, backup(vaultUrl="https://myvault.vault.azure.net:99999")
    )


def test_a_keybackup_of_keys_secrets_and_certificates_chooses_each_in_its_own_way() -> None:
    spec = keybackup.parse_spec(
        backup(
            keys={"selector": {}},
            secrets={"selector": {"tags": {"env": "prod"}}},
            certificates={"names": ["api-tls"]},
        )
    )

    assert list(spec.choices) == list(ITEM_KINDS)
    assert spec.choices[ItemKind.KEY] == ItemChoice(selector=ItemSelector())
    assert spec.choices[ItemKind.SECRET] == ItemChoice(selector=ItemSelector(tags={"env": "prod"}))
    assert spec.choices[ItemKind.CERTIFICATE] == ItemChoice(names=("api-tls",))


def test_a_keybackup_that_chooses_no_kind_is_refused() -> None:
    message = refusal(keybackup.parse_spec, {"vaultUrl": VAULT})

    assert message == "spec must select at least one of keys, secrets or certificates"


@pytest.mark.parametrize("kind", ITEM_KINDS)
@pytest.mark.parametrize(
    "bad_name",
    [pytest.param("signing_key", id="underscore"), pytest.param("k" * 128, id="128-chars")],
)
def test_a_bad_item_name_is_refused_naming_its_kind_and_position(
    kind: ItemKind, bad_name: str
) -> None:
    spec = {"vaultUrl": VAULT, kind.plural: {"names": ["ok", bad_name]}}

    message = refusal(keybackup.parse_spec, spec)

    assert message.startswith(f"spec.{kind.plural}.names[1] must be a Key Vault {kind} name")


@pytest.mark.parametrize("kind", ITEM_KINDS)
@pytest.mark.parametrize(
    "choice",
    [
        pytest.param({"names": ["a"], "selector": {}}, id="both"),
        pytest.param({}, id="neither"),
    ],
)
def test_each_kind_must_set_exactly_one_of_names_or_selector(
    kind: ItemKind, choice: dict[str, Any]
) -> None:
    message = refusal(keybackup.parse_spec, {"vaultUrl": VAULT, kind.plural: choice})

    assert message == f"spec.{kind.plural} must set exactly one of names or selector"


def test_a_key_listed_twice_in_different_case_is_refused() -> None:
    message = refusal(keybackup.parse_spec, backup(keys={"names": ["Signing-Key", "signing-key"]}))

    assert "spec.keys.names" in message
    assert "twice" in message


@pytest.mark.parametrize("kind", ITEM_KINDS)
def test_an_invalid_name_pattern_is_refused_naming_the_field(kind: ItemKind) -> None:
    spec = {"vaultUrl": VAULT, kind.plural: {"selector": {"namePattern": "app-(["}}}

    assert f"spec.{kind.plural}.selector.namePattern" in refusal(keybackup.parse_spec, spec)


def test_credentials_naming_another_namespace_are_refused() -> None:
    credentials = {"name": "vault-sp", "namespace": "kube-system"}

    assert "spec.credentials" in refusal(keybackup.parse_spec, backup(credentials=credentials))
    assert "spec.credentials" in refusal(keyrestore.parse_spec, restore(credentials=credentials))


def test_a_scheduled_keybackup_with_retention_parses_into_its_dataclass() -> None:
    spec = keybackup.parse_spec(
        backup(
            schedule="0 2 * * *",
            timeZone="Europe/Berlin",
            suspend=True,
            retention={"keepLast": 7, "maxAge": "400d", "keepDaily": 14, "keepMonthly": 12},
            deletionPolicy="Delete",
        )
    )

    assert spec.schedule is not None
    assert (spec.schedule.expression, spec.schedule.zone) == (
        "0 2 * * *",
        ZoneInfo("Europe/Berlin"),
    )
    assert spec.schedule.interval is None
    assert spec.suspend is True
    assert spec.retention == Retention(
        keep_last=7,
        max_age=datetime.timedelta(days=400),
        tiers={"keepDaily": 14, "keepMonthly": 12},
        time_zone=ZoneInfo("Europe/Berlin"),
    )
    assert spec.deletion_policy is DeletionPolicy.DELETE


def test_a_keybackup_without_the_new_fields_runs_per_change_keeps_everything_and_retains() -> None:
    spec = keybackup.parse_spec(backup())

    assert spec.schedule is None
    assert spec.suspend is False
    assert spec.retention == Retention(keep_last=None, max_age=None)
    assert spec.deletion_policy is DeletionPolicy.RETAIN
    assert (
        spec.full_backup_every
        == keybackup.DEFAULT_FULL_BACKUP_EVERY
        == datetime.timedelta(hours=24)
    )


@pytest.mark.parametrize(
    ("written", "every"),
    [
        pytest.param("30d", datetime.timedelta(days=30), id="days"),
        pytest.param("12h", datetime.timedelta(hours=12), id="hours"),
        pytest.param("1h30m", datetime.timedelta(hours=1, minutes=30), id="hours-and-minutes"),
        pytest.param("1d12h", datetime.timedelta(days=1, hours=12), id="days-and-hours"),
    ],
)
def test_full_backup_every_is_a_duration(written: str, every: datetime.timedelta) -> None:
    assert keybackup.parse_spec(backup(fullBackupEvery=written)).full_backup_every == every


@pytest.mark.parametrize(
    "written",
    [
        pytest.param("24", id="no-unit"),
        pytest.param(24, id="number"),
        pytest.param("", id="empty"),
        pytest.param("0h", id="zero"),
        pytest.param("1 day", id="words"),
        pytest.param("99999999999d", id="overflow"),
    ],
)
def test_a_full_backup_every_that_is_no_duration_is_refused_by_name(written: Any) -> None:
    message = refusal(keybackup.parse_spec, backup(fullBackupEvery=written))

    assert message.startswith("spec.fullBackupEvery ")


def test_the_api_server_reads_full_backup_every_as_the_operator_does() -> None:
    every = _crd_property("keybackups.kvbackup.io.yaml", "spec", "fullBackupEvery")
    max_age = _crd_property("keybackups.kvbackup.io.yaml", "spec", "retention", "maxAge")

    assert keybackup.parse_spec(backup(fullBackupEvery=every["default"])) == keybackup.parse_spec(
        backup()
    )
    assert {k: every[k] for k in ("pattern", "minLength", "maxLength")} == {
        k: max_age[k] for k in ("pattern", "minLength", "maxLength")
    }


@pytest.mark.parametrize(
    "time_zone", [pytest.param(None, id="absent"), pytest.param("", id="empty")]
)
def test_a_schedule_without_a_time_zone_is_read_in_utc(time_zone: str | None) -> None:
    spec = keybackup.parse_spec(backup(schedule="@daily", timeZone=time_zone))

    assert spec.schedule is not None
    assert spec.schedule.zone == ZoneInfo("UTC")


def test_an_every_schedule_parses_its_interval() -> None:
    spec = keybackup.parse_spec(backup(schedule="@every 6h"))

    assert spec.schedule is not None
    assert spec.schedule.interval == datetime.timedelta(hours=6)


@pytest.mark.parametrize(
    "retention",
    [
        pytest.param({"keepLast": 3}, id="keep-last-only"),
        pytest.param({"maxAge": "1d12h"}, id="max-age-only"),
    ],
)
def test_retention_may_bound_by_count_or_by_age_alone(retention: dict[str, Any]) -> None:
    parsed = keybackup.parse_spec(backup(retention=retention)).retention

    assert parsed.keep_last == retention.get("keepLast")
    assert (parsed.max_age is None) is ("maxAge" not in retention)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"schedule": "0 2 * *"}, "spec.schedule", id="cron-with-four-fields"),
        pytest.param({"schedule": "0 25 * * *"}, "spec.schedule", id="hour-out-of-range"),
        pytest.param({"schedule": "@every 0s"}, "spec.schedule", id="every-zero"),
        pytest.param({"schedule": "@every soon"}, "spec.schedule", id="every-no-duration"),
        pytest.param({"retention": {"keepLast": 0}}, "spec.retention.keepLast", id="keep-0"),
        pytest.param({"retention": {"keepLast": "3"}}, "spec.retention.keepLast", id="keep-text"),
        pytest.param({"retention": {"keepDaily": 0}}, "spec.retention.keepDaily", id="daily-0"),
        pytest.param(
            {"retention": {"keepWeekly": True}}, "spec.retention.keepWeekly", id="weekly-bool"
        ),
        pytest.param(
            {"retention": {"keepYearly": "1"}}, "spec.retention.keepYearly", id="yearly-text"
        ),
        pytest.param({"retention": {"maxAge": "30"}}, "spec.retention.maxAge", id="age-no-unit"),
        pytest.param({"retention": {"maxAge": "0d"}}, "spec.retention.maxAge", id="age-zero"),
        pytest.param({"retention": {"maxAge": 30}}, "spec.retention.maxAge", id="age-number"),
        pytest.param(
            {"retention": {"maxAge": "99999999999d"}}, "spec.retention.maxAge", id="age-overflow"
        ),
        pytest.param({"schedule": "@every 999999999d"}, "spec.schedule", id="every-overflow"),
        pytest.param({"retention": ["keepLast"]}, "spec.retention", id="retention-not-object"),
        pytest.param({"deletionPolicy": "Orphan"}, "spec.deletionPolicy", id="deletion-policy"),
        pytest.param({"deletionPolicy": "delete"}, "spec.deletionPolicy", id="policy-case"),
    ],
)
def test_a_bad_schedule_retention_or_deletion_policy_is_refused_by_name(
    change: dict[str, Any], field: str
) -> None:
    assert refusal(keybackup.parse_spec, backup(**change)).startswith(field + " ")


def test_a_bad_deletion_policy_refusal_lists_the_allowed_values() -> None:
    message = refusal(keybackup.parse_spec, backup(deletionPolicy="Orphan"))

    assert "Retain, Delete" in message


def test_an_unknown_time_zone_is_refused_naming_the_zone() -> None:
    message = refusal(
        keybackup.parse_spec, backup(schedule="0 2 * * *", timeZone="Mars/Olympus_Mons")
    )

    assert "'Mars/Olympus_Mons'" in message


def test_an_unknown_time_zone_is_refused_naming_the_time_zone_field() -> None:
    message = refusal(
        keybackup.parse_spec, backup(schedule="0 2 * * *", timeZone="Mars/Olympus_Mons")
    )

    assert "spec.timeZone" in message


def test_a_keyrestore_with_every_field_parses_into_its_dataclass() -> None:
    spec = keyrestore.parse_spec(
        restore(
            source={"keyBackupRef": {"name": "nightly", "snapshot": "20240501-120000-abcd"}},
            keys=["k1", "K2"],
            secrets=["db-password"],
            certificates=["api-tls"],
            strategy="RestoreOnly",
            onConflict="Fail",
            purgeDeletedKeys=True,
            purgeDeletedSecrets=False,
            purgeDeletedCertificates=True,
            credentials={"name": "vault-sp"},
            dryRun=True,
        )
    )

    assert spec.source == SnapshotSource("nightly", "20240501-120000-abcd")
    assert spec.items == {
        ItemKind.KEY: ("k1", "K2"),
        ItemKind.SECRET: ("db-password",),
        ItemKind.CERTIFICATE: ("api-tls",),
    }
    assert spec.strategy is Strategy.RESTORE_ONLY
    assert spec.on_conflict is OnConflict.FAIL
    assert spec.purge_deleted == {ItemKind.KEY, ItemKind.CERTIFICATE}
    assert spec.credentials_secret == "vault-sp"
    assert spec.dry_run is True


def test_a_minimal_keyrestore_restores_every_item_of_the_latest_snapshot_with_auto_and_skip() -> (
    None
):
    spec = keyrestore.parse_spec(restore())

    assert spec.source == SnapshotSource("nightly", "latest")
    assert spec.items is None
    assert spec.strategy is Strategy.AUTO
    assert spec.on_conflict is OnConflict.SKIP
    assert spec.purge_deleted == frozenset()
    assert spec.dry_run is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"strategy": "Overwrite"}, "spec.strategy", id="strategy"),
        pytest.param({"onConflict": "Replace"}, "spec.onConflict", id="onConflict"),
        pytest.param({"keys": ["ok", "bad.name"]}, "spec.keys[1]", id="key-name"),
        pytest.param({"secrets": ["ok", "bad_name"]}, "spec.secrets[1]", id="secret-name"),
        pytest.param({"certificates": []}, "spec.certificates", id="certificates-empty"),
        pytest.param({"purgeDeletedSecrets": "yes"}, "spec.purgeDeletedSecrets", id="purge"),
        pytest.param(
            {"purgeDeletedCertificates": 1}, "spec.purgeDeletedCertificates", id="purge-number"
        ),
        pytest.param({"source": {}}, "spec.source", id="source"),
        pytest.param({"source": {"keyBackupRef": {}}}, "spec.source.keyBackupRef", id="ref-name"),
        # Each becomes part of a label selector or a Secret's name: nothing else may pass.
        pytest.param(
            {"source": {"keyBackupRef": {"name": "x,kvbackup.io/role!=manifest"}}},
            "spec.source.keyBackupRef.name",
            id="ref-name-selector",
        ),
        pytest.param(
            {"source": {"keyBackupRef": {"name": "nightly", "snapshot": "../x"}}},
            "spec.source.keyBackupRef.snapshot",
            id="snapshot-id",
        ),
        pytest.param({"dryRun": "true"}, "spec.dryRun", id="dryRun-string"),
    ],
)
def test_a_bad_keyrestore_field_is_refused_by_name(change: dict[str, Any], field: str) -> None:
    assert field in refusal(keyrestore.parse_spec, restore(**change))


@pytest.mark.parametrize("kind", ITEM_KINDS)
def test_a_keyrestore_listing_an_item_twice_in_different_case_is_refused(kind: ItemKind) -> None:
    message = refusal(keyrestore.parse_spec, restore(**{kind.plural: ["App-1", "app-1"]}))

    assert message == f"spec.{kind.plural} lists a {kind} twice (names are case-insensitive)"


def test_a_keyrestore_of_secrets_alone_restores_no_key() -> None:
    spec = keyrestore.parse_spec(restore(secrets=["db-password"]))

    assert spec.items == {ItemKind.SECRET: ("db-password",)}


@pytest.mark.parametrize(
    ("selector", "name", "tags", "chosen"),
    [
        pytest.param(ItemSelector(), "anything", None, True, id="empty-selector-matches-all"),
        pytest.param(
            ItemSelector(name_pattern=NamePattern.compile("app-[0-9]+", "namePattern")),
            "app-12",
            {},
            True,
            id="pattern-matches-the-whole-name",
        ),
        pytest.param(
            ItemSelector(name_pattern=NamePattern.compile("app-[0-9]+", "namePattern")),
            "app-12-old",
            {},
            False,
            id="pattern-must-match-the-whole-name",
        ),
        pytest.param(
            ItemSelector(tags={"env": "prod", "team": "a"}),
            "k",
            {"env": "prod", "team": "a", "extra": "x"},
            True,
            id="all-tags-present",
        ),
        pytest.param(
            ItemSelector(tags={"env": "prod", "team": "a"}),
            "k",
            {"env": "prod", "team": "b"},
            False,
            id="one-tag-differs",
        ),
    ],
)
def test_a_selector_matches_a_key_only_by_full_name_pattern_and_every_tag(
    selector: ItemSelector, name: str, tags: dict[str, str] | None, chosen: bool
) -> None:
    assert selector.matches(name, tags) is chosen


ACCOUNT = "https://backups.blob.core.windows.net"
#: Each would make the blob SDK's URL parser leave the container named beside it.
ESCAPING_FOLDERS = [
    pytest.param("../other", id="parent-segment"),
    pytest.param("prod/../../other", id="parent-segment-inside"),
    pytest.param("./prod", id="current-segment"),
    pytest.param("prod/..", id="parent-segment-last"),
    pytest.param("%2e%2e/other", id="encoded-parent-segment"),
    pytest.param("%2E%2e/other", id="encoded-parent-segment-mixed-case"),
    pytest.param(".%2e/other", id="half-encoded-parent-segment"),
    pytest.param("prod%2F..%2Fother", id="encoded-slashes"),
    pytest.param("..\\other", id="backslash"),
    pytest.param("prod//other", id="empty-segment"),
    pytest.param("/other", id="leading-slash"),
    pytest.param("prod/\n", id="newline"),
]


def blob_destination(prefix: str) -> dict[str, Any]:
    return {"blob": {"accountUrl": ACCOUNT, "container": "team-a", "prefix": prefix}}


def blob_source(path: str) -> dict[str, Any]:
    return {"blob": {"accountUrl": ACCOUNT, "container": "team-a", "path": path}}


@pytest.mark.parametrize("prefix", ESCAPING_FOLDERS)
def test_a_blob_prefix_that_could_leave_its_container_is_refused_naming_the_field(
    prefix: str,
) -> None:
    message = refusal(keybackup.parse_spec, backup(destination=blob_destination(prefix)))

    assert message.startswith("spec.destination.blob.prefix must be folder names")


@pytest.mark.parametrize("folder", ESCAPING_FOLDERS)
def test_a_snapshot_path_that_could_leave_its_container_is_refused_naming_the_field(
    folder: str,
) -> None:
    for path in (f"{folder}/ns/kb/20261128-010203-abcd", f"{ACCOUNT}/team-a/{folder}/ns/kb"):
        message = refusal(keyrestore.parse_spec, restore(source=blob_source(path)))

        assert message.startswith("spec.source.blob.path must be a snapshot's folder")


@pytest.mark.parametrize(
    ("prefix", "kept"),
    [
        pytest.param("prod", "prod", id="one-folder"),
        pytest.param("backups/prod/", "backups/prod", id="trailing-slash"),
        pytest.param("v1.2/..hidden/a...b", "v1.2/..hidden/a...b", id="dots-within-names"),
        pytest.param("", "", id="empty"),
    ],
)
def test_a_blob_prefix_of_plain_folder_names_is_kept(prefix: str, kept: str) -> None:
    destination = keybackup.parse_spec(backup(destination=blob_destination(prefix))).destination

    assert isinstance(destination, keybackup.BlobDestination)
    assert destination.prefix == kept


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("prod/team-a/nightly/20261128-010203-abcd", id="folder"),
        pytest.param(
            f"{ACCOUNT}/team-a/prod/team-a/nightly/20261128-010203-abcd/", id="location-url"
        ),
        pytest.param(
            "http://127.0.0.1:10000/devstoreaccount1/team-a/prod/ns/kb/20261128-010203-abcd/",
            id="emulator-location-url",
        ),
    ],
)
def test_a_snapshot_path_as_a_folder_or_as_its_location_url_is_accepted(path: str) -> None:
    source = keyrestore.parse_spec(restore(source=blob_source(path))).source

    assert isinstance(source, keyrestore.BlobSnapshotSource)
    assert source.path == path


@pytest.mark.parametrize(
    "account_url",
    [
        pytest.param(f"{ACCOUNT}/..", id="parent-segment"),
        pytest.param(f"{ACCOUNT}/%2e%2e", id="encoded-parent-segment"),
        pytest.param(f"{ACCOUNT}/acct/other", id="two-segments"),
        pytest.param(f"{ACCOUNT}?comp=list", id="query"),
        pytest.param("http://backups.blob.core.windows.net", id="plain-http"),
        pytest.param("https://acct.blob.core.windows.net/other", id="path-on-azure"),
        pytest.param("https://acct.z01.blob.storage.azure.net/other", id="path-on-dns-zone"),
        pytest.param("https://backups.example.com/other", id="path-on-custom-domain"),
        pytest.param("https://127.0.0.1.nip.io:10000/acct", id="path-on-lookalike-host"),
    ],
)
def test_an_account_url_with_more_than_an_account_name_for_a_path_is_refused(
    account_url: str,
) -> None:
    destination = {"blob": {"accountUrl": account_url, "container": "team-a"}}

    message = refusal(keybackup.parse_spec, backup(destination=destination))

    assert message.startswith("spec.destination.blob.accountUrl")


def _crd_property(crd: str, *names: str) -> dict[str, Any]:
    document = yaml.safe_load((Path(__file__).parents[2] / "crds" / crd).read_text())
    node = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in names:
        node = node["properties"][name]
    return dict(node)


@pytest.mark.parametrize(
    ("crd", "names", "pattern"),
    [
        pytest.param(
            "keybackups.kvbackup.io.yaml",
            ("spec", "destination", "blob", "prefix"),
            fields.BLOB_PREFIX,
            id="prefix",
        ),
        pytest.param(
            "keybackups.kvbackup.io.yaml",
            ("spec", "destination", "blob", "accountUrl"),
            fields.ACCOUNT_URL,
            id="backup-account-url",
        ),
        pytest.param(
            "keyrestores.kvbackup.io.yaml",
            ("spec", "source", "blob", "path"),
            fields.SNAPSHOT_PATH,
            id="path",
        ),
        pytest.param(
            "keyrestores.kvbackup.io.yaml",
            ("spec", "source", "blob", "accountUrl"),
            fields.ACCOUNT_URL,
            id="restore-account-url",
        ),
    ],
)
def test_the_api_server_refuses_blob_folders_by_the_operators_own_pattern(
    crd: str, names: tuple[str, ...], pattern: re.Pattern[str]
) -> None:
    assert _crd_property(crd, *names)["pattern"] == pattern.pattern


@pytest.mark.parametrize("kind", ITEM_KINDS)
def test_the_api_server_bounds_a_name_pattern_as_the_operator_does(kind: ItemKind) -> None:
    name_pattern = _crd_property(
        "keybackups.kvbackup.io.yaml", "spec", kind.plural, "selector", "namePattern"
    )

    assert name_pattern["maxLength"] == keybackup.NAME_PATTERN_MAX_LENGTH


@pytest.mark.parametrize("kind", ITEM_KINDS)
def test_the_api_server_refuses_item_names_by_the_operators_own_pattern(kind: ItemKind) -> None:
    backed_up = _crd_property("keybackups.kvbackup.io.yaml", "spec", kind.plural, "names")
    restored = _crd_property("keyrestores.kvbackup.io.yaml", "spec", kind.plural)

    for names in (backed_up, restored):
        assert names["items"]["pattern"] == fields.KEY_NAME.pattern


@pytest.mark.parametrize(
    "account_url",
    [
        "http://127.0.0.1:10000/devstoreaccount1",
        "https://localhost:10000/devstoreaccount1/",
        "https://[::1]:10000/devstoreaccount1",
        "https://backups.blob.core.windows.net",
        "https://backups.blob.core.windows.net/",
    ],
)
def test_an_account_url_names_an_emulators_account_on_loopback_only(account_url: str) -> None:
    destination = {"blob": {"accountUrl": account_url, "container": "team-a"}}

    spec = keybackup.parse_spec(backup(destination=destination))

    assert isinstance(spec.destination, keybackup.BlobDestination)
    assert spec.destination.container.account_url == account_url.rstrip("/")
