"""A snapshot exported to files: a folder per kind with each item's exact bytes, wherever
the store kept them, the manifest last and naming no other snapshot, the keys-only layout
of earlier exports still read, and nothing read or written outside the directory whatever
a manifest or the directory holds."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from kvbackup.adapters.directory import backup_file, directory_snapshot, export_directory
from kvbackup.api.kinds import ItemKind, ItemRef
from kvbackup.errors import (
    ConflictError,
    IntegrityError,
    InvalidSpecError,
    KvBackupError,
    NotFoundError,
)
from kvbackup.services.inspection import export_snapshot, verify_snapshot
from kvbackup.services.ports import OpenedSnapshot
from kvbackup.services.snapshot import MANIFEST_MAX_BYTES, Artifact, Manifest, sha256_hex
from tests.unit.fakes import manifest_of

KEY, SECRET, CERTIFICATE = ItemKind.KEY, ItemKind.SECRET, ItemKind.CERTIFICATE
#: Two keys, a secret of the same name as one of them, and a certificate.
MIXED = {
    ItemRef(KEY, "signing"): b"key backup of signing",
    ItemRef(KEY, "Wrapping"): b"key backup of Wrapping",
    ItemRef(SECRET, "signing"): b"secret backup of signing",
    ItemRef(CERTIFICATE, "api-tls"): b"certificate backup of api-tls",
}


def stored(items: dict[ItemRef, bytes]) -> OpenedSnapshot:
    """A snapshot holding ``items``, read from memory as a store would hand it over."""
    manifest = manifest_of(
        *(
            Artifact(ref.name, ("v1",), sha256_hex(data), len(data), kind=ref.kind)
            for ref, data in items.items()
        )
    )
    return OpenedSnapshot(manifest, reading(items))


def reading(items: dict[ItemRef, bytes]) -> Callable[[Artifact], Awaitable[bytes]]:
    async def read(artifact: Artifact) -> bytes:
        return items[ItemRef(artifact.kind, artifact.name)]

    return read


async def exported(items: dict[ItemRef, bytes], directory: Path) -> Manifest:
    snapshot = stored(items)
    with export_directory(directory) as target:
        await export_snapshot(snapshot, target)
    return snapshot.manifest


def files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


async def test_an_export_keeps_each_kind_in_its_folder_with_the_exact_bytes(
    tmp_path: Path,
) -> None:
    snapshot = stored(MIXED)

    with export_directory(tmp_path / "out") as target:
        outcomes = await export_snapshot(snapshot, target)

    assert [(o.kind, o.name, o.reason) for o in outcomes] == [
        (KEY, "signing", "Exported"),
        (KEY, "Wrapping", "Exported"),
        (SECRET, "signing", "Exported"),
        (CERTIFICATE, "api-tls", "Exported"),
    ]
    assert files_under(tmp_path / "out") == [
        "certificates",
        "certificates/api-tls.bak",
        "keys",
        "keys/Wrapping.bak",
        "keys/signing.bak",
        "manifest.json",
        "secrets",
        "secrets/signing.bak",
    ]
    assert (tmp_path / "out/secrets/signing.bak").read_bytes() == b"secret backup of signing"
    assert (tmp_path / "out/keys/signing.bak").read_bytes() == b"key backup of signing"
    assert outcomes[2].message == (
        f"wrote {tmp_path / 'out/secrets/signing.bak'} ({len(b'secret backup of signing')} bytes)"
    )


async def test_an_export_reads_back_as_the_same_snapshot_item_by_item_of_every_kind(
    tmp_path: Path,
) -> None:
    manifest = await exported(MIXED, tmp_path)

    with directory_snapshot(tmp_path) as read_back:
        assert read_back.manifest == manifest
        for artifact in manifest.artifacts:
            async with read_back.verified(artifact) as data:
                assert data == MIXED[ItemRef(artifact.kind, artifact.name)]
        verified = await verify_snapshot(read_back)

    assert [(o.kind, o.name, o.failed) for o in verified] == [
        (KEY, "signing", False),
        (KEY, "Wrapping", False),
        (SECRET, "signing", False),
        (CERTIFICATE, "api-tls", False),
    ]


#: The snapshot that stored the bytes of items a later one carried forward.
EARLIER = "20261101-000000-aaaa"


async def test_an_export_of_items_stored_with_an_earlier_snapshot_stands_alone(
    tmp_path: Path,
) -> None:
    """A snapshot whose signing key was carried from an earlier one, its manifest listing
    where each item's bytes are: the export holds them all, and its manifest names no
    other snapshot, nor where the store kept the bytes."""
    stored_with = {ItemRef(KEY, "signing"): EARLIER, ItemRef(SECRET, "signing"): ""}
    manifest = manifest_of(
        *(
            Artifact(
                ref.name,
                ("v1",),
                sha256_hex(MIXED[ref]),
                len(MIXED[ref]),
                location=f"kvbackup-pack-{home or 'own'}",
                kind=ref.kind,
                stored_in=home,
            )
            for ref, home in stored_with.items()
        ),
    )
    homes_read: list[str] = []

    async def read(artifact: Artifact) -> bytes:
        homes_read.append(artifact.home(manifest.snapshot_id))
        return MIXED[ItemRef(artifact.kind, artifact.name)]

    with export_directory(tmp_path) as target:
        exported = await export_snapshot(OpenedSnapshot(manifest, read), target)

    assert [o.failed for o in exported] == [False, False]
    assert sorted(homes_read) == sorted([EARLIER, manifest.snapshot_id])
    assert (tmp_path / "keys/signing.bak").read_bytes() == MIXED[ItemRef(KEY, "signing")]
    written = Manifest.from_json((tmp_path / "manifest.json").read_bytes())
    assert written == manifest.self_contained()
    assert written.references == frozenset()
    assert {(a.stored_in, a.location) for a in written.artifacts} == {("", "")}
    with directory_snapshot(tmp_path) as read_back:
        verified = await verify_snapshot(read_back)
    assert [(o.kind, o.name, o.reason) for o in verified] == [
        (KEY, "signing", "Verified"),
        (SECRET, "signing", "Verified"),
    ]


async def test_verify_reads_a_carried_item_where_it_is_stored_and_says_which_snapshot(
    tmp_path: Path,
) -> None:
    ref = ItemRef(KEY, "signing")
    data = MIXED[ref]
    carried = Artifact(ref.name, ("v1",), sha256_hex(data), len(data), stored_in=EARLIER)
    manifest = manifest_of(carried)
    by_home = {EARLIER: data, manifest.snapshot_id: b"not these bytes"}

    async def read(artifact: Artifact) -> bytes:
        return by_home[artifact.home(manifest.snapshot_id)]

    [verified] = await verify_snapshot(OpenedSnapshot(manifest, read))

    assert (verified.failed, verified.stored_in) == (False, EARLIER)
    assert verified.message == (
        f"sha256 and size match the manifest; stored with snapshot {EARLIER}"
    )


@pytest.mark.parametrize("elsewhere", ["base", "storedIn"])
def test_a_manifest_in_a_directory_that_refers_to_another_snapshot_is_refused(
    tmp_path: Path, elsewhere: str
) -> None:
    """It could not tell the whole snapshot: a differential one lists only what changed,
    and an item stored with another snapshot is not beside it."""
    [artifact] = stored({ItemRef(KEY, "signing"): b"one"}).manifest.artifacts
    if elsewhere == "base":
        manifest = replace(manifest_of(artifact), base=EARLIER)
    else:
        manifest = manifest_of(replace(artifact, stored_in=EARLIER))
    (tmp_path / "manifest.json").write_bytes(manifest.to_json())
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/signing.bak").write_bytes(b"one")

    with pytest.raises(IntegrityError) as refused, directory_snapshot(tmp_path):
        pass

    assert f"refers to snapshot {EARLIER} for some of its items" in refused.value.message


async def test_an_export_has_folders_only_for_the_kinds_its_snapshot_holds(
    tmp_path: Path,
) -> None:
    await exported({ItemRef(SECRET, "db-password"): b"s"}, tmp_path)

    assert files_under(tmp_path) == ["manifest.json", "secrets", "secrets/db-password.bak"]


async def test_an_export_of_the_keys_only_layout_before_other_kinds_is_still_read(
    tmp_path: Path,
) -> None:
    """As the export wrote them before secrets and certificates: ``<key>.bak`` beside the
    manifest, no folder."""
    keys = {ItemRef(KEY, "signing"): b"one", ItemRef(KEY, "tokens"): b"two"}
    manifest = stored(keys).manifest
    (tmp_path / "manifest.json").write_bytes(manifest.to_json())
    (tmp_path / "signing.bak").write_bytes(b"one")
    (tmp_path / "tokens.bak").write_bytes(b"two")

    with directory_snapshot(tmp_path) as read_back:
        verified = await verify_snapshot(read_back)
        async with read_back.verified(manifest.artifact(KEY, "tokens")) as data:
            assert data == b"two"

    assert [(o.name, o.reason) for o in verified] == [
        ("signing", "Verified"),
        ("tokens", "Verified"),
    ]


async def test_an_altered_backup_is_not_exported_and_fails_by_kind_and_name(
    tmp_path: Path,
) -> None:
    manifest = stored(MIXED).manifest
    altered = OpenedSnapshot(manifest, reading({**MIXED, ItemRef(SECRET, "signing"): b"altered"}))

    with export_directory(tmp_path) as target:
        outcomes = await export_snapshot(altered, target)

    assert [(o.kind, o.name) for o in outcomes if o.failed] == [(SECRET, "signing")]
    assert [o.reason for o in outcomes if o.failed] == ["IntegrityCheckFailed"]
    assert not (tmp_path / "secrets/signing.bak").exists()
    assert (tmp_path / "keys/signing.bak").exists()


async def test_a_file_that_was_altered_or_grown_after_the_export_fails_verification(
    tmp_path: Path,
) -> None:
    await exported(MIXED, tmp_path)
    (tmp_path / "certificates/api-tls.bak").write_bytes(b"x" * 10)
    (tmp_path / "secrets/signing.bak").write_bytes(b"secret backup of signing, and more")

    with directory_snapshot(tmp_path) as read_back:
        outcomes = await verify_snapshot(read_back)

    failed = {(o.kind, o.name): o for o in outcomes if o.failed}
    assert set(failed) == {(SECRET, "signing"), (CERTIFICATE, "api-tls")}
    assert {o.reason for o in failed.values()} == {"IntegrityCheckFailed"}
    assert "holds more than the 24 bytes the manifest records" in (
        failed[(SECRET, "signing")].message
    )


async def test_a_missing_folder_fails_the_items_of_its_kind_alone(tmp_path: Path) -> None:
    await exported(MIXED, tmp_path)
    for file in (tmp_path / "secrets").iterdir():
        file.unlink()
    (tmp_path / "secrets").rmdir()

    with directory_snapshot(tmp_path) as read_back:
        outcomes = await verify_snapshot(read_back)

    assert [(o.kind, o.name, o.reason) for o in outcomes if o.failed] == [
        (SECRET, "signing", "ArtifactMissing")
    ]


@pytest.mark.parametrize("planted", ["link", "file"])
async def test_a_kind_folder_that_is_a_link_or_a_file_is_never_followed(
    tmp_path: Path, planted: str
) -> None:
    await exported(MIXED, tmp_path / "out")
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "out/secrets").rename(elsewhere)
    if planted == "link":
        (tmp_path / "out/secrets").symlink_to(elsewhere)
    else:
        (tmp_path / "out/secrets").write_bytes(b"a file")

    with directory_snapshot(tmp_path / "out") as read_back:
        outcomes = await verify_snapshot(read_back)

    [refused] = [o for o in outcomes if o.failed]
    assert (refused.kind, refused.reason) == (SECRET, "FileError")
    assert "not a folder" in refused.message


async def test_a_backup_file_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    manifest = await exported(MIXED, tmp_path / "out")
    (tmp_path / "elsewhere").write_bytes(b"certificate backup of api-tls")
    (tmp_path / "out/certificates/api-tls.bak").unlink()
    (tmp_path / "out/certificates/api-tls.bak").symlink_to(tmp_path / "elsewhere")

    with directory_snapshot(tmp_path / "out") as read_back, pytest.raises(KvBackupError) as refused:
        await read_back.read_artifact(manifest.artifact(CERTIFICATE, "api-tls"))

    assert refused.value.reason == "FileError"


async def test_a_backup_that_is_no_regular_file_is_refused_without_waiting_on_it(
    tmp_path: Path,
) -> None:
    """A FIFO would block a read until someone writes to it."""
    manifest = await exported(MIXED, tmp_path)
    (tmp_path / "keys/signing.bak").unlink()
    os.mkfifo(tmp_path / "keys/signing.bak")

    with directory_snapshot(tmp_path) as read_back, pytest.raises(KvBackupError) as refused:
        await read_back.read_artifact(manifest.artifact(KEY, "signing"))

    assert refused.value.reason == "FileError"
    assert "not a regular file" in refused.value.message


def test_a_manifest_larger_than_a_manifest_may_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b" " * (MANIFEST_MAX_BYTES + 1))

    with pytest.raises(KvBackupError) as refused, directory_snapshot(tmp_path):
        pass

    assert refused.value.reason == "TooLarge"


def test_an_export_into_a_directory_that_holds_anything_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(InvalidSpecError, match="not empty"), export_directory(tmp_path):
        pass


@pytest.mark.parametrize("target", ["elsewhere", "missing"])
def test_an_export_into_a_symbolic_link_is_refused_and_writes_nothing_where_it_points(
    tmp_path: Path, target: str
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / target)

    with (
        pytest.raises(InvalidSpecError, match="out is a symbolic link"),
        export_directory(tmp_path / "out"),
    ):
        pass

    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert not (tmp_path / "missing").exists()


def test_an_export_into_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")

    with pytest.raises(KvBackupError, match="Not a directory"), export_directory(tmp_path / "out"):
        pass


@pytest.mark.parametrize("kind", [KEY, SECRET, CERTIFICATE])
@pytest.mark.parametrize("name", ["../escaped", "a/b", "", ".", "x.bak/../../y", "ключ"])
def test_only_a_key_vault_name_ever_names_a_file(kind: ItemKind, name: str) -> None:
    with pytest.raises(InvalidSpecError, match=f"Key Vault {kind} name.*no file is named"):
        backup_file(kind, name)


async def test_an_item_written_twice_never_overwrites_the_first_file(tmp_path: Path) -> None:
    [artifact] = stored({ItemRef(SECRET, "db-password"): b"first"}).manifest.artifacts

    with export_directory(tmp_path) as target:
        await target.write_backup(artifact, b"first")
        with pytest.raises(ConflictError):
            await target.write_backup(artifact, b"second")

    assert (tmp_path / "secrets/db-password.bak").read_bytes() == b"first"


def test_a_directory_without_a_manifest_is_not_taken_for_a_snapshot(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as missing, directory_snapshot(tmp_path):
        pass

    assert missing.value.reason == "SourceNotFound"
