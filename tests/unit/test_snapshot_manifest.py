"""Snapshot manifests, artifact integrity, snapshot ids and the names of their Secrets."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re

import pytest

from kvbackup.adapters.secret_store import (
    INDEX_DATA_KEY,
    entry_name,
    manifest_part_name,
    manifest_secret_name,
    pack_secret_name,
)
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import IntegrityError, NotFoundError, TooLargeError
from kvbackup.services.snapshot import (
    ARTIFACT_MAX_BYTES,
    MANIFEST_MAX_BYTES,
    SUMMARY_MAX_BYTES,
    Artifact,
    ChangeRecord,
    ItemFailure,
    Manifest,
    SnapshotSummary,
    new_snapshot_id,
    sha256_hex,
    snapshot_time,
)
from tests.unit.fakes import MOMENT, NAMESPACE, REF, SNAPSHOT_ID, manifest_of

BACKUP = b"\x00opaque key vault backup blob\xff"
ARTIFACT = Artifact("Signing-Key", ("v1", "v2"), sha256_hex(BACKUP), len(BACKUP))
SECRET_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def test_a_manifest_survives_a_round_trip_through_json() -> None:
    manifest = Manifest(
        snapshot_id="20240501-120000-abcd",
        keybackup=REF,
        vault_url="https://source.vault.azure.net",
        start_time=MOMENT,
        completion_time=MOMENT + datetime.timedelta(minutes=2),
        operator_version="0.1.0",
        artifacts=(ARTIFACT, Artifact("other", ("a",), "0" * 64, 7)),
        failures=(ItemFailure("gone", "NotFound", "key gone not found"),),
    )

    assert Manifest.from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(
            manifest_of(ARTIFACT).to_json().replace(b'"SnapshotManifest"', b'"ConfigMap"'),
            id="complete-but-another-kind",
        ),
        pytest.param(b'{"kind": "SnapshotManifest", "snapshotId": "x"}', id="fields-missing"),
        pytest.param(
            manifest_of(ARTIFACT).to_json().replace(b'"sha256"', b'"sha1"'),
            id="a-key-without-its-digest",
        ),
        pytest.param(
            manifest_of(Artifact("escapee", ("v1",), "0" * 64, 1))
            .to_json()
            .replace(b'"escapee"', b'"../../other/x"'),
            id="a-key-name-that-leaves-the-snapshot",
        ),
        pytest.param(
            manifest_of(ARTIFACT).to_json().replace(b'"size":', b'"size":"many","x":', 1),
            id="a-size-that-is-not-a-number",
        ),
    ],
)
def test_an_unreadable_manifest_raises_an_integrity_error(raw: bytes) -> None:
    with pytest.raises(IntegrityError, match="snapshot manifest is unreadable"):
        Manifest.from_json(raw)


def test_a_manifest_that_is_json_but_not_an_object_raises_an_integrity_error() -> None:
    with pytest.raises(IntegrityError):
        Manifest.from_json(b"[]")


def test_an_artifact_is_found_whatever_the_case_of_the_key_name() -> None:
    assert manifest_of(ARTIFACT).artifact(ItemKind.KEY, "SIGNING-key") == ARTIFACT


def test_a_key_missing_from_the_snapshot_raises_not_found_with_reason_key_not_in_snapshot() -> None:
    with pytest.raises(NotFoundError) as caught:
        manifest_of(ARTIFACT).artifact(ItemKind.KEY, "other-key")

    assert caught.value.reason == "KeyNotInSnapshot"
    assert "other-key" in caught.value.message


def test_an_artifact_accepts_exactly_the_bytes_it_recorded() -> None:
    ARTIFACT.verify(BACKUP)  # raises on a mismatch


def test_an_artifact_refuses_bytes_with_one_byte_altered() -> None:
    with pytest.raises(IntegrityError) as caught:
        ARTIFACT.verify(BACKUP[:-1] + b"\xfe")

    assert caught.value.reason == "IntegrityCheckFailed"
    assert "Signing-Key" in caught.value.message


def test_a_snapshot_id_is_utc_date_time_and_four_hex_digits() -> None:
    in_utc_plus_two = datetime.datetime(
        2024, 5, 1, 14, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )

    snapshot_id = new_snapshot_id(in_utc_plus_two)

    assert re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}", snapshot_id)
    assert snapshot_id.startswith("20240501-120304-")


def test_snapshot_ids_sort_by_time() -> None:
    utc = datetime.UTC
    times = [
        datetime.datetime(2023, 12, 31, 23, 59, 59, tzinfo=utc),
        datetime.datetime(2024, 1, 1, 0, 0, 0, tzinfo=utc),
        datetime.datetime(2024, 1, 1, 9, 0, 0, tzinfo=utc),
        datetime.datetime(2024, 1, 1, 10, 0, 0, tzinfo=utc),
        datetime.datetime(2024, 2, 1, 0, 0, 0, tzinfo=utc),
    ]

    ids = [new_snapshot_id(moment) for moment in times]

    assert sorted(ids) == ids


def test_a_snapshot_id_tells_when_its_snapshot_was_started_to_the_second() -> None:
    started = datetime.datetime(
        2024, 5, 1, 14, 3, 4, 987654, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )

    assert snapshot_time(new_snapshot_id(started)) == datetime.datetime(
        2024, 5, 1, 12, 3, 4, tzinfo=datetime.UTC
    )


@pytest.mark.parametrize(
    "snapshot_id",
    [
        pytest.param("manual-copy", id="foreign"),
        pytest.param("", id="empty"),
        pytest.param("20241341-120000-abcd", id="impossible-date"),
    ],
)
def test_a_snapshot_id_that_records_no_time_tells_none(snapshot_id: str) -> None:
    assert snapshot_time(snapshot_id) is None


def test_secret_names_are_valid_dns_names_for_the_longest_keybackup_name() -> None:
    keybackup = "k" * 62 + "b"  # the longest name the CRD schema allows
    snapshot_id = new_snapshot_id(MOMENT)

    names = [
        manifest_secret_name(keybackup, snapshot_id),
        manifest_part_name(keybackup, snapshot_id, 41),
        pack_secret_name(keybackup, snapshot_id, "ab12", 99_999),
    ]

    for name in names:
        assert len(name) <= 253
        assert DNS_1123_SUBDOMAIN.fullmatch(name), name


@pytest.mark.parametrize(("chunk", "chunks"), [(0, 1), (0, 2), (17, 18)])
def test_a_key_entry_in_a_pack_is_a_valid_data_key_that_never_clashes_with_the_index(
    chunk: int, chunks: int
) -> None:
    name = entry_name(ItemKind.KEY, "Key-" + "x" * 123, chunk, chunks)

    assert SECRET_DATA_KEY.fullmatch(name)
    assert name != INDEX_DATA_KEY
    assert "." not in "Key-" + "x" * 123  # Key Vault names have no dots; the index has one


def test_a_whole_key_is_stored_under_its_own_name_so_kubectl_can_find_it() -> None:
    assert entry_name(ItemKind.KEY, "signing-key", 0, 1) == "signing-key"
    assert entry_name(ItemKind.KEY, "signing-key", 1, 3) == "signing-key.1"


def test_a_secret_and_a_certificate_are_stored_under_their_kind_and_name() -> None:
    assert entry_name(ItemKind.SECRET, "db-password", 0, 1) == "secret_db-password"
    assert entry_name(ItemKind.CERTIFICATE, "api-tls", 1, 2) == "certificate_api-tls.1"
    assert SECRET_DATA_KEY.fullmatch(entry_name(ItemKind.CERTIFICATE, "api-tls", 0, 1))


def test_a_summary_tells_the_counts_of_its_manifest_and_survives_json() -> None:
    manifest = Manifest(
        snapshot_id=SNAPSHOT_ID,
        keybackup=REF,
        vault_url="https://payments.vault.azure.net",
        start_time=MOMENT,
        completion_time=MOMENT,
        operator_version="0.2.0",
        artifacts=(ARTIFACT, Artifact("other", ("v9",), sha256_hex(b"x"), 1)),
        failures=(ItemFailure("gone", "NotFound", "no such key"),),
    )

    summary = manifest.summary

    assert (summary.keys, summary.failed_keys, summary.total_bytes) == (2, 1, len(BACKUP) + 1)
    assert SnapshotSummary.from_json(summary.to_json()) == summary


def test_where_the_store_put_a_key_survives_the_manifests_json() -> None:
    placed = Artifact("Signing-Key", ("v1",), sha256_hex(BACKUP), len(BACKUP), "kb-s-a-0f0f-3")
    manifest = manifest_of(placed, ARTIFACT)

    again = Manifest.from_json(manifest.to_json())

    assert again.artifacts == (placed, ARTIFACT)
    assert b'"location"' not in manifest_of(ARTIFACT).to_json()  # as 0.1 wrote them


def test_an_unreadable_summary_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="summary"):
        SnapshotSummary.from_json(b'{"snapshotId": "x"}')


def _forged(field: bytes, value: bytes) -> bytes:
    """A manifest whose ``field`` (its first occurrence) holds ``value`` instead."""
    text = manifest_of(ARTIFACT).to_json()
    old = re.compile(rb'"' + field + rb'":(\[[^\]]*\]|"[^"]*"|[^,}]+)')
    return old.sub(b'"' + field + b'":' + value.replace(b"\\", b"\\\\"), text, count=1)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_forged(b"snapshotId", b'"20240501-120000-abcd\\n"'), id="id-with-newline"),
        pytest.param(_forged(b"snapshotId", b'"0/../x"'), id="id-climbing"),
        pytest.param(_forged(b"snapshotId", b"20240501"), id="id-a-number"),
        pytest.param(_forged(b"namespace", b'"../other"'), id="namespace-climbing"),
        pytest.param(_forged(b"namespace", b'"team-a\\n"'), id="namespace-with-newline"),
        pytest.param(_forged(b"name", b'"nightly/../../x"'), id="keybackup-climbing"),
        pytest.param(_forged(b"name", b'"' + b"k" * 64 + b'"'), id="keybackup-too-long"),
        pytest.param(_forged(b"sha256", b'"not-a-digest"'), id="digest-not-hex"),
        pytest.param(_forged(b"size", b"-1"), id="size-negative"),
        pytest.param(_forged(b"size", b"true"), id="size-a-boolean"),
        pytest.param(_forged(b"versions", b'["v1/../x"]'), id="version-climbing"),
        pytest.param(_forged(b"versions", b'"v1"'), id="versions-not-a-list"),
        pytest.param(_forged(b"vaultUrl", b"7"), id="vault-url-not-text"),
    ],
)
def test_a_manifest_with_a_field_outside_its_grammar_is_refused(raw: bytes) -> None:
    with pytest.raises(IntegrityError, match="snapshot manifest is unreadable"):
        Manifest.from_json(raw)


def test_a_manifest_larger_than_its_bound_is_refused_unparsed() -> None:
    with pytest.raises(TooLargeError) as refused:
        Manifest.from_json(b" " * (MANIFEST_MAX_BYTES + 1), found_in="blob x/manifest.json")

    assert "blob x/manifest.json" in refused.value.message
    assert refused.value.reason == "TooLarge"


def test_a_manifest_recording_a_key_larger_than_any_key_backup_is_refused() -> None:
    raw = _forged(b"size", str(ARTIFACT_MAX_BYTES + 1).encode())

    with pytest.raises(TooLargeError, match="Signing-Key"):
        Manifest.from_json(raw)


def test_a_manifest_of_more_keys_than_its_bound_holds_is_refused_before_it_is_written() -> None:
    artifact = Artifact("k" * 127, ("v" * 64,) * 100, "0" * 64, 1)
    keys = tuple(artifact for _ in range(MANIFEST_MAX_BYTES // 6000 + 1))

    with pytest.raises(TooLargeError, match="back up fewer items"):
        manifest_of(*keys).to_json()


def test_text_from_a_refused_manifest_reaches_the_message_bounded() -> None:
    raw = _forged(b"snapshotId", b'"' + b"x" * 1_000_000 + b'"')

    with pytest.raises(IntegrityError) as refused:
        Manifest.from_json(raw)

    assert len(refused.value.message) < 400


@pytest.mark.parametrize(
    ("namespace", "keybackup", "snapshot_id"),
    [
        pytest.param("team-b", REF.name, SNAPSHOT_ID, id="another-namespace"),
        pytest.param(NAMESPACE, "other", SNAPSHOT_ID, id="another-keybackup"),
        pytest.param(NAMESPACE, REF.name, "20240501-120000-ffff", id="another-snapshot"),
    ],
)
def test_a_manifest_found_in_another_snapshots_place_is_refused(
    namespace: str, keybackup: str, snapshot_id: str
) -> None:
    manifest = manifest_of(ARTIFACT)

    with pytest.raises(IntegrityError, match="whose place it is in") as refused:
        manifest.require_found_at(namespace, keybackup, snapshot_id, "blob b")

    assert refused.value.message.startswith("blob b holds the manifest of snapshot")


def test_a_manifest_found_in_its_own_place_is_accepted() -> None:
    manifest_of(ARTIFACT).require_found_at(NAMESPACE, REF.name, SNAPSHOT_ID, "blob b")


@pytest.mark.parametrize(
    "snapshot_id",
    [
        pytest.param(f"{SNAPSHOT_ID}\n", id="trailing-newline"),
        pytest.param("0/../x", id="climbing"),
        pytest.param(f"../../{SNAPSHOT_ID}", id="climbing-to-a-valid-id"),
    ],
)
def test_a_summary_naming_a_forged_snapshot_id_is_refused(snapshot_id: str) -> None:
    raw = (
        manifest_of(ARTIFACT)
        .summary.to_json()
        .replace(SNAPSHOT_ID.encode(), json.dumps(snapshot_id).strip('"').encode())
    )

    with pytest.raises(IntegrityError, match="summary in blob b is unreadable"):
        SnapshotSummary.from_json(raw, found_in="blob b")


def test_a_summary_larger_than_its_bound_is_refused_unparsed() -> None:
    with pytest.raises(TooLargeError, match="Secret ns/kb"):
        SnapshotSummary.from_json(b" " * (SUMMARY_MAX_BYTES + 1), found_in="Secret ns/kb")


def test_a_summary_found_under_another_snapshot_is_refused() -> None:
    summary = manifest_of(ARTIFACT).summary

    with pytest.raises(IntegrityError, match="whose place it is in"):
        summary.require_found_at("20240501-120000-ffff", "blob b")
    summary.require_found_at(SNAPSHOT_ID, "blob b")


SECRET = Artifact("Signing-Key", ("s1",), sha256_hex(b"secret"), 6, "", ItemKind.SECRET)
CERTIFICATE = Artifact("api-tls", ("c1", "c2"), sha256_hex(b"cert"), 4, "", ItemKind.CERTIFICATE)


def test_a_manifest_of_every_kind_keeps_each_artifacts_kind_through_json() -> None:
    manifest = manifest_of(ARTIFACT, SECRET, CERTIFICATE)

    again = Manifest.from_json(manifest.to_json())

    assert again.artifacts == (ARTIFACT, SECRET, CERTIFICATE)
    # A key and a secret of the same name are two artifacts, each found by its kind.
    assert again.artifact(ItemKind.KEY, "signing-key") == ARTIFACT
    assert again.artifact(ItemKind.SECRET, "signing-key") == SECRET
    document = json.loads(manifest.to_json())
    assert [entry["kind"] for entry in document["secrets"]] == ["secret"]
    assert [entry["kind"] for entry in document["certificates"]] == ["certificate"]


def test_a_keys_only_manifest_written_before_other_kinds_reads_as_keys() -> None:
    document = json.loads(manifest_of(ARTIFACT).to_json())
    for entry in document["keys"]:
        del entry["kind"]

    again = Manifest.from_json(json.dumps(document).encode())

    assert again.artifacts == (ARTIFACT,)
    assert "secrets" not in json.loads(manifest_of(ARTIFACT).to_json())


def test_a_secret_that_is_not_in_the_snapshot_is_not_found_under_its_kind() -> None:
    with pytest.raises(NotFoundError) as refused:
        manifest_of(ARTIFACT).artifact(ItemKind.SECRET, "signing-key")

    assert refused.value.reason == "SecretNotInSnapshot"


@pytest.mark.parametrize(
    ("listed_in", "kind"), [("secrets", "key"), ("keys", "secret"), ("keys", "vault")]
)
def test_an_entry_whose_kind_is_not_its_lists_is_refused_as_unreadable(
    listed_in: str, kind: str
) -> None:
    document = json.loads(manifest_of(ARTIFACT).to_json())
    entry = document["keys"].pop()
    document[listed_in] = [{**entry, "kind": kind}]

    with pytest.raises(IntegrityError, match="unreadable"):
        Manifest.from_json(json.dumps(document).encode())


def test_a_summary_counts_each_kind_and_one_written_for_keys_only_still_reads() -> None:
    gone = ItemFailure("gone", "NotFound", "no such secret", ItemKind.SECRET)
    manifest = dataclasses.replace(manifest_of(ARTIFACT, SECRET, CERTIFICATE), failures=(gone,))

    summary = manifest.summary

    assert [summary.stored(kind) for kind in ITEM_KINDS] == [1, 1, 1]
    assert [summary.failed(kind) for kind in ITEM_KINDS] == [0, 1, 0]
    assert (summary.items, summary.failed_items) == (3, 1)
    assert SnapshotSummary.from_json(summary.to_json()) == summary
    keys_only = dataclasses.replace(manifest_of(ARTIFACT).summary, new_bytes=None).to_json()
    assert set(json.loads(keys_only)) == {
        "snapshotId",
        "startTime",
        "completionTime",
        "keys",
        "failedKeys",
        "bytes",
    }


EARLIER = "20240430-120000-beef"
RECORD = ChangeRecord.of(MOMENT - datetime.timedelta(days=1), ["enabled", True])


def chain() -> tuple[Manifest, Manifest]:
    """A whole manifest and a differential one on it: one item changed, one removed."""
    kept = dataclasses.replace(ARTIFACT, name="kept", change=RECORD)
    gone = dataclasses.replace(ARTIFACT, name="gone")
    changed = dataclasses.replace(ARTIFACT, name="changed", versions=("v1",))
    base = manifest_of(kept, gone, changed, snapshot_id=EARLIER)
    newer = dataclasses.replace(changed, versions=("v1", "v2"), sha256="1" * 64)
    whole = manifest_of(kept.carried_from(EARLIER), newer)
    return base, whole.differences_from(base)


class TestDifferentialManifests:
    def test_a_differential_manifest_lists_what_differs_and_survives_json(self) -> None:
        _, differential = chain()

        assert differential.base == EARLIER
        assert [a.name for a in differential.artifacts] == ["changed"]
        assert differential.removed == (ItemRef(ItemKind.KEY, "gone"),)
        assert Manifest.from_json(differential.to_json()) == differential

    def test_merged_onto_its_base_it_lists_every_item_where_its_bytes_are(self) -> None:
        base, differential = chain()

        whole = differential.merged_onto(base)

        assert {a.name: a.stored_in for a in whole.artifacts} == {"kept": EARLIER, "changed": ""}
        assert whole.artifact(ItemKind.KEY, "kept").change == RECORD
        assert whole.summary.keys == 2
        assert whole.references == differential.references == frozenset({EARLIER})

    def test_a_base_of_another_keybackup_is_refused(self) -> None:
        base, differential = chain()
        foreign = dataclasses.replace(base, keybackup=dataclasses.replace(REF, name="other"))

        with pytest.raises(IntegrityError, match="was read for it"):
            differential.merged_onto(foreign)

    def test_a_base_that_is_itself_differential_is_refused(self) -> None:
        base, differential = chain()

        with pytest.raises(IntegrityError, match="not a whole manifest"):
            differential.merged_onto(dataclasses.replace(base, base=EARLIER))

    def test_a_base_of_another_vault_is_refused(self) -> None:
        base, differential = chain()

        with pytest.raises(IntegrityError, match="is of vault"):
            differential.merged_onto(
                dataclasses.replace(base, vault_url="https://x.vault.azure.net")
            )

    def test_a_differential_manifest_has_no_summary_of_its_own(self) -> None:
        _, differential = chain()

        with pytest.raises(ValueError, match="differential"):
            _ = differential.summary

    def test_an_export_lists_every_artifact_beside_the_manifest(self) -> None:
        base, differential = chain()

        exported = differential.merged_onto(base).self_contained()

        assert {(a.stored_in, a.location) for a in exported.artifacts} == {("", "")}
        assert (exported.base, exported.removed) == ("", ())
        with pytest.raises(ValueError, match="differential"):
            differential.self_contained()

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("storedIn", "../other"),
            ("storedIn", "20240430-120000-beef/x"),
            ("fingerprint", "not-hex"),
            ("updated", "yesterday"),
        ],
    )
    def test_an_entry_naming_a_bad_place_or_record_is_refused(self, field: str, value: str) -> None:
        document = json.loads(manifest_of(dataclasses.replace(ARTIFACT, change=RECORD)).to_json())
        document["keys"][0][field] = value

        with pytest.raises(IntegrityError, match="unreadable"):
            Manifest.from_json(json.dumps(document).encode())

    def test_a_base_that_is_not_a_snapshot_id_is_refused(self) -> None:
        _, differential = chain()
        document = json.loads(differential.to_json())
        document["base"] = "../../other-tenant"

        with pytest.raises(IntegrityError, match="not a snapshot id"):
            Manifest.from_json(json.dumps(document).encode())

    def test_a_removed_entry_that_is_not_an_item_is_refused(self) -> None:
        _, differential = chain()
        document = json.loads(differential.to_json())
        document["removed"] = [{"kind": "key", "name": "a/b"}]

        with pytest.raises(IntegrityError, match="not a Key Vault key name"):
            Manifest.from_json(json.dumps(document).encode())
