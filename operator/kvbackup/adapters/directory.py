"""A snapshot as files in a local directory, for the day the cluster is gone.

Layout: ``<key-name>.bak`` per key, holding exactly the bytes ``backup_key`` returned (a
file ``az keyvault key restore --file`` and any SDK's ``restore_key_backup`` accept as it
is), and ``manifest.json``, the snapshot's manifest, written last.

The key names come from a manifest, which whoever could write to the storage could have
forged: a file is only ever named after a Key Vault key name (letters, digits, dashes),
and opened relative to the directory without following a symbolic link (an export's
directory is not followed either), so nothing is read or written outside it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kvbackup.api.fields import key_name
from kvbackup.errors import ConflictError, InvalidSpecError, KvBackupError, NotFoundError
from kvbackup.services.ports import OpenedSnapshot
from kvbackup.services.snapshot import KeyArtifact, Manifest

MANIFEST_FILE = "manifest.json"
BACKUP_SUFFIX = ".bak"

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
#: The directory itself is not followed either: a link planted where the target directory
#: was named would have the export write wherever the link points.
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def backup_file(name: str) -> str:
    """The file of one key's backup; a name that is not a Key Vault key name is refused."""
    try:
        return key_name(name, "a key's name in the manifest") + BACKUP_SUFFIX
    except InvalidSpecError as error:
        raise InvalidSpecError(f"{error.message}: no file is named after it") from None


class ExportDirectory:
    """Writes a snapshot's files into a directory of its own (``ExportTarget``)."""

    def __init__(self, directory: Path, descriptor: int) -> None:
        self._directory = directory
        self._descriptor = descriptor

    async def write_backup(self, artifact: KeyArtifact, data: bytes) -> str:
        name = backup_file(artifact.name)
        self._write(name, data)
        return str(self._directory / name)

    async def write_manifest(self, manifest: Manifest) -> None:
        self._write(MANIFEST_FILE, manifest.to_json())

    def _write(self, name: str, data: bytes) -> None:
        with _file_errors(self._directory / name):
            # Never an existing file: two keys of one name (Key Vault names ignore case)
            # or a planted link must not overwrite anything.
            handle = os.open(name, _CREATE, 0o600, dir_fd=self._descriptor)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())


@contextmanager
def export_directory(directory: Path) -> Iterator[ExportDirectory]:
    """``directory``, made if absent; it must be empty, so that what it holds afterwards is
    exactly one snapshot."""
    with _file_errors(directory):
        # Whatever is there already (a link, a file) is judged by opening it.
        with suppress(FileExistsError):
            directory.mkdir(parents=True, exist_ok=True)
        descriptor = _open_directory(directory)
    try:
        # Judged through the descriptor: the directory written into is the one found empty,
        # even if its name is made to point elsewhere in between.
        with _file_errors(directory):
            if os.listdir(descriptor):
                raise InvalidSpecError(f"{directory} is not empty; export into a new directory")
        yield ExportDirectory(directory, descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def directory_snapshot(directory: Path) -> Iterator[OpenedSnapshot]:
    """The snapshot an export wrote into ``directory``, ready to be read."""
    with _file_errors(directory):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:

        def read(name: str) -> bytes:
            with _file_errors(directory / name):
                handle = os.open(name, _READ, dir_fd=descriptor)
                with os.fdopen(handle, "rb") as file:
                    return file.read()

        try:
            manifest = Manifest.from_json(read(MANIFEST_FILE))
        except NotFoundError:
            raise NotFoundError(
                f"{directory} holds no {MANIFEST_FILE}: not an exported snapshot",
                reason="SourceNotFound",
            ) from None

        async def read_backup(artifact: KeyArtifact) -> bytes:
            try:
                return read(backup_file(artifact.name))
            except NotFoundError as error:
                raise NotFoundError(error.message, reason="ArtifactMissing") from None

        yield OpenedSnapshot(manifest, read_backup)
    finally:
        os.close(descriptor)


def _open_directory(directory: Path) -> int:
    """A descriptor of ``directory`` itself, never of what a link there points to."""
    try:
        return os.open(directory, _DIRECTORY)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR) and directory.is_symlink():
            raise InvalidSpecError(
                f"{directory} is a symbolic link; name the directory itself"
            ) from None
        raise


@contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except FileExistsError:
        raise ConflictError(f"{path} exists already") from None
    except OSError as error:
        # ELOOP: a symbolic link where a file was expected.
        raise KvBackupError(f"{path}: {error.strerror}", reason="FileError") from None
