"""A snapshot exported to files: exact bytes per key, the manifest last, and nothing read
or written outside the directory whatever a manifest names."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvbackup.adapters.directory import backup_file, directory_snapshot, export_directory
from kvbackup.errors import ConflictError, InvalidSpecError, KvBackupError, NotFoundError
from kvbackup.services.inspection import export_snapshot
from tests.unit.fakes import InMemoryStore, opened, take_snapshot


async def test_an_export_holds_each_keys_exact_bytes_and_reads_back_as_the_same_snapshot(
    tmp_path: Path,
) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, ("signing", ("s1", "s2")), ("Wrapping", ("w1",)))

    with export_directory(tmp_path / "out") as target:
        outcomes = await export_snapshot(opened(store, manifest), target)

    assert [(o.name, o.reason) for o in outcomes] == [
        ("signing", "Exported"),
        ("Wrapping", "Exported"),
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "Wrapping.bak",
        "manifest.json",
        "signing.bak",
    ]
    with directory_snapshot(tmp_path / "out") as exported:
        assert exported.manifest == manifest
        for artifact in manifest.keys:
            stored = await opened(store, manifest).read_artifact(artifact)
            async with exported.verified(artifact) as data:
                assert data == stored


async def test_an_altered_backup_is_not_exported_and_fails_by_name(tmp_path: Path) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, ("signing", ("s1",)), ("tokens", ("t1",)))
    store.replace_artifact("signing", b"altered")

    with export_directory(tmp_path) as target:
        outcomes = await export_snapshot(opened(store, manifest), target)

    assert [(o.name, o.failed, o.reason) for o in outcomes] == [
        ("signing", True, "IntegrityCheckFailed"),
        ("tokens", False, "Exported"),
    ]
    assert not (tmp_path / "signing.bak").exists()


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


@pytest.mark.parametrize("name", ["../escaped", "a/b", "", ".", "x.bak/../../y", "ключ"])
def test_only_a_key_vault_key_name_ever_names_a_file(name: str) -> None:
    with pytest.raises(InvalidSpecError, match="no file is named after it"):
        backup_file(name)


async def test_a_key_written_twice_never_overwrites_the_first_file(tmp_path: Path) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, ("signing", ("s1",)))
    [artifact] = manifest.keys

    with export_directory(tmp_path) as target:
        await target.write_backup(artifact, b"first")
        with pytest.raises(ConflictError):
            await target.write_backup(artifact, b"second")

    assert (tmp_path / "signing.bak").read_bytes() == b"first"


async def test_a_backup_file_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, ("signing", ("s1",)))
    with export_directory(tmp_path / "out") as target:
        await export_snapshot(opened(store, manifest), target)
    (tmp_path / "elsewhere").write_bytes(b"outside")
    (tmp_path / "out" / "signing.bak").unlink()
    (tmp_path / "out" / "signing.bak").symlink_to(tmp_path / "elsewhere")

    with directory_snapshot(tmp_path / "out") as exported, pytest.raises(KvBackupError) as refused:
        await exported.read_artifact(manifest.keys[0])

    assert refused.value.reason == "FileError"


def test_a_directory_without_a_manifest_is_not_taken_for_a_snapshot(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as missing, directory_snapshot(tmp_path):
        pass

    assert missing.value.reason == "SourceNotFound"


async def test_a_backup_file_altered_after_the_export_fails_verification_when_read_back(
    tmp_path: Path,
) -> None:
    store = InMemoryStore()
    manifest = await take_snapshot(store, ("signing", ("s1",)))
    with export_directory(tmp_path) as target:
        await export_snapshot(opened(store, manifest), target)
    (tmp_path / "signing.bak").write_bytes(b"altered")

    with directory_snapshot(tmp_path) as exported, pytest.raises(KvBackupError) as refused:
        async with exported.verified(manifest.keys[0]):
            pass

    assert refused.value.reason == "IntegrityCheckFailed"
