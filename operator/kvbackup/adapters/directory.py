"""A snapshot as files in a local directory, for the day the cluster is gone.

Layout: a folder per kind, ``keys/``, ``secrets/`` and ``certificates/``, made for the
kinds the snapshot holds, with ``<name>.bak`` per item: exactly the bytes Key Vault's
backup returned (a file ``az keyvault key|secret|certificate restore --file`` and the SDKs'
``restore_key_backup``, ``restore_secret_backup`` and ``restore_certificate_backup``
accept as it is); and ``manifest.json``, the snapshot's whole manifest, written last. A
key and a secret may share a name: their folders keep them apart.

An export stands alone: its manifest lists every item the snapshot holds, and each
item's file lies beside it, even when the store kept the bytes with an earlier snapshot
(``Manifest.self_contained``). A manifest there that names another snapshot (a base it
lists differences from, or where an item is stored) is refused: it would not tell the
whole snapshot.

An export made before there were other kinds than keys holds ``<key-name>.bak`` beside
the manifest, with no ``keys/`` folder; it is read as it is.

The names come from a manifest, which whoever could write to the storage (or to the
directory) could have forged: a file is only ever named after a Key Vault name (letters,
digits, dashes), a folder only after a kind, and each is opened relative to the
directory without following a symbolic link (an export's directory is not followed
either), so nothing is read or written outside it. What is read is bounded: the manifest
by its limit, a backup by the size the manifest records for it, and only regular files
are read (a FIFO planted there would block the read forever).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from kvbackup.api.fields import item_name
from kvbackup.api.kinds import ITEM_KINDS, ItemKind
from kvbackup.errors import (
    ConflictError,
    IntegrityError,
    InvalidSpecError,
    KvBackupError,
    NotFoundError,
)
from kvbackup.services.ports import OpenedSnapshot
from kvbackup.services.snapshot import MANIFEST_MAX_BYTES, Artifact, Manifest

MANIFEST_FILE = "manifest.json"
BACKUP_SUFFIX = ".bak"

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: The directory itself is not followed either: a link planted where the target directory
#: was named would have the export write wherever the link points.
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def backup_file(kind: ItemKind, name: str) -> str:
    """The file of one item's backup in its kind's folder; a name that is not a Key Vault
    name is refused."""
    try:
        return item_name(name, f"a {kind}'s name in the manifest", kind) + BACKUP_SUFFIX
    except InvalidSpecError as error:
        raise InvalidSpecError(f"{error.message}: no file is named after it") from None


class ExportDirectory:
    """Writes a snapshot's files into a directory of its own (``ExportTarget``)."""

    def __init__(self, directory: Path, descriptor: int, folders: ExitStack) -> None:
        self._directory = directory
        self._descriptor = descriptor
        #: Closes the kinds' folders with the directory.
        self._folders = folders
        self._folder_of: dict[ItemKind, int] = {}

    async def write_backup(self, artifact: Artifact, data: bytes) -> str:
        name = backup_file(artifact.kind, artifact.name)
        folder = self._folder(artifact.kind)
        path = self._directory / artifact.kind.plural / name
        _write(path, name, data, folder)
        return str(path)

    async def write_manifest(self, manifest: Manifest) -> None:
        path = self._directory / MANIFEST_FILE
        _write(path, MANIFEST_FILE, manifest.to_json(), self._descriptor)

    def _folder(self, kind: ItemKind) -> int:
        """The kind's folder, made with its first item: an export has the kinds it holds.
        Made and opened without an ``await`` in between, so never twice."""
        descriptor = self._folder_of.get(kind)
        if descriptor is None:
            with _file_errors(self._directory / kind.plural):
                os.mkdir(kind.plural, 0o700, dir_fd=self._descriptor)
                descriptor = os.open(kind.plural, _DIRECTORY, dir_fd=self._descriptor)
            self._folders.callback(os.close, descriptor)
            self._folder_of[kind] = descriptor
        return descriptor


def _write(path: Path, name: str, data: bytes, folder: int) -> None:
    """A new file ``name`` in ``folder`` holding ``data``; ``path`` names it for people."""
    with _file_errors(path):
        # Never an existing file: two items of one kind and name (Key Vault names ignore
        # case) or a planted link must not overwrite anything.
        handle = os.open(name, _CREATE, 0o600, dir_fd=folder)
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
    with ExitStack() as folders:
        folders.callback(os.close, descriptor)
        # Judged through the descriptor: the directory written into is the one found empty,
        # even if its name is made to point elsewhere in between.
        with _file_errors(directory):
            if os.listdir(descriptor):
                raise InvalidSpecError(f"{directory} is not empty; export into a new directory")
        yield ExportDirectory(directory, descriptor, folders)


@contextmanager
def directory_snapshot(directory: Path) -> Iterator[OpenedSnapshot]:
    """The snapshot an export wrote into ``directory``, in either layout, ready to be read."""
    with ExitStack() as opened:
        with _file_errors(directory):
            descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.callback(os.close, descriptor)
        try:
            # One byte more than a manifest may have, so that a larger one is refused.
            raw = _read(
                directory / MANIFEST_FILE, MANIFEST_FILE, descriptor, MANIFEST_MAX_BYTES + 1
            )
        except NotFoundError:
            raise NotFoundError(
                f"{directory} holds no {MANIFEST_FILE}: not an exported snapshot",
                reason="SourceNotFound",
            ) from None
        manifest = _self_contained(
            Manifest.from_json(raw, found_in=str(directory / MANIFEST_FILE)), directory
        )
        places = {kind: _folder_of(directory, kind, descriptor, opened) for kind in ITEM_KINDS}
        if isinstance(places[ItemKind.KEY], NotFoundError):
            # The layout before other kinds: keys beside the manifest, in no folder.
            places[ItemKind.KEY] = _Folder(directory, descriptor)

        async def read_backup(artifact: Artifact) -> bytes:
            place = places[artifact.kind]
            try:
                if isinstance(place, KvBackupError):
                    raise type(place)(place.message, reason=place.reason)
                name = backup_file(artifact.kind, artifact.name)
                # One byte more than recorded: a longer file is told apart, not cut short.
                data = _read(place.path / name, name, place.descriptor, artifact.size + 1)
            except NotFoundError as error:
                raise NotFoundError(error.message, reason="ArtifactMissing") from None
            if len(data) > artifact.size:
                raise IntegrityError(
                    f"{place.path / name} holds more than the {artifact.size} bytes the "
                    f"manifest records for {artifact.kind} {artifact.name}"
                )
            return data

        yield OpenedSnapshot(manifest, read_backup)


def _self_contained(manifest: Manifest, directory: Path) -> Manifest:
    """``manifest`` when it needs nothing but ``directory``, as an export writes it."""
    elsewhere = sorted(manifest.references)
    if elsewhere:
        # A forged manifest may name thousands: a few say enough.
        named = ", ".join(elsewhere[:3]) + (", ..." if len(elsewhere) > 3 else "")
        raise IntegrityError(
            f"{directory / MANIFEST_FILE} refers to snapshot {named} for some of its items; "
            "an export holds every item beside its manifest"
        )
    return manifest


@dataclass(frozen=True)
class _Folder:
    """Where an export keeps one kind's files: the path people read, the descriptor used."""

    path: Path
    descriptor: int


def _folder_of(
    directory: Path, kind: ItemKind, descriptor: int, opened: ExitStack
) -> _Folder | KvBackupError:
    """The kind's folder in an export, never what a link there points to (closed with
    ``opened``); else why not, for each of its items to fail with."""
    path = directory / kind.plural
    try:
        folder = os.open(kind.plural, _DIRECTORY, dir_fd=descriptor)
    except FileNotFoundError:
        return NotFoundError(f"{path} does not exist")
    except OSError as error:
        # ELOOP, ENOTDIR: a symbolic link, or a file, where the folder should be.
        wrong = error.errno in (errno.ELOOP, errno.ENOTDIR)
        why = "not a folder (a symbolic link is never followed)" if wrong else error.strerror
        return KvBackupError(f"{path}: {why}", reason="FileError")
    opened.callback(os.close, folder)
    return _Folder(path, folder)


def _read(path: Path, name: str, folder: int, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``name`` in ``folder``."""
    with _file_errors(path):
        handle = os.open(name, _READ, dir_fd=folder)
        with os.fdopen(handle, "rb") as file:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                raise KvBackupError(f"{path} is not a regular file", reason="FileError")
            return file.read(limit)


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
