"""Snapshots kept as blobs in one Azure Blob Storage container.

Layout, for KeyBackup ``kb`` in namespace ``ns`` and snapshot ``s``, under the store's
``prefix`` (may be empty)::

    <prefix>/ns/kb/s/keys/<name>           the exact bytes Key Vault's backup of a key
    <prefix>/ns/kb/s/secrets/<name>        ... of a secret
    <prefix>/ns/kb/s/certificates/<name>   ... of a certificate
    <prefix>/ns/kb/s/manifest.json         the manifest, written last

One blob per item, in the folder of its kind, so that items of different kinds sharing a
name stay apart. A downloaded blob is a file ``az keyvault key restore --file`` (``secret
restore``, ``certificate restore``) accepts. Key Vault names are case-insensitive, so
``<name>`` is the lower-cased name: a redone run, or a read with another casing, finds the
same blob. The manifest has the exact name. Each blob's metadata records the item's kind,
name, sha256 and versions, for a resumed run to check; a blob written before there were
other kinds records no kind (and its name as ``keyname``), and is a key.

An item unchanged since an earlier snapshot is not stored again: its manifest entry's
``storedIn`` names the snapshot whose folder holds the bytes, a sibling in the same
KeyBackup's folder (``<prefix>/ns/kb/<storedIn>/<kind>/<name>``), and that is where the
item's blob is read and where a person downloads it from. A differential manifest names
its ``base``, a whole manifest in a sibling folder too.

A snapshot can also be read by its path alone (``read_manifest_at``, ``read_artifact_at``,
``open_at``), for restores after the KeyBackup, or the whole cluster, is gone.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials import AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContentSettings, StorageErrorCode
from azure.storage.blob.aio import BlobPrefix, ContainerClient

from kvbackup.adapters.azure_errors import azure_errors
from kvbackup.adapters.completion import to_completion
from kvbackup.adapters.http import SharedSession, request_id
from kvbackup.adapters.proxies import proxies_for
from kvbackup.adapters.request_checks import AllowedHostsPolicy
from kvbackup.api.fields import KEY_NAME, SNAPSHOT_ID, require_secure_transport
from kvbackup.api.hosts import HostAllowList, endpoint
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.api.kinds import ITEM_KINDS, ItemKind, ItemRef
from kvbackup.errors import (
    DeletionRefusedError,
    IntegrityError,
    InvalidSpecError,
    MissingReferenceError,
    NotFoundError,
    TooLargeError,
    foreign_text,
)
from kvbackup.services.ports import OpenedSnapshot, StoredSnapshot
from kvbackup.services.snapshot import (
    ARTIFACT_MAX_BYTES,
    MANIFEST_MAX_BYTES,
    SHA256_HEX,
    SNAPSHOT_KEYS_MAX,
    VERSION_ID,
    Artifact,
    Manifest,
    SnapshotSummary,
    require_snapshot_id,
    sha256_hex,
    whole_manifest,
)

MANIFEST_BLOB = "manifest.json"
#: Metadata of the manifest blob: its summary, so snapshots are listed without reading them.
SUMMARY_METADATA = "summary"
#: Metadata of a backup blob: what a resumed run checks it by.
KIND_METADATA = "kind"
NAME_METADATA = "name"
SHA256_METADATA = "sha256"
VERSIONS_METADATA = "versions"
#: Where a blob written before there were other kinds (and so recording no kind) records
#: its key's name.
LEGACY_NAME_METADATA = "keyname"
#: Blob metadata holds 8 KiB in all; a longer list of versions is not recorded.
VERSIONS_METADATA_LIMIT = 6000
#: Blobs per listing page: the service's default of 5,000 is tens of MiB once parsed.
LISTING_PAGE_SIZE = 500
#: Reads (a manifest blob's properties, a manifest) one listing runs at once: enough to
#: overlap round trips, few enough that a folder of many snapshots costs little memory
#: and leaves the connection pool to other work.
LISTING_READS_AT_ONCE = 8
#: Snapshots of one KeyBackup a listing considers: the newest this many. A look into each
#: is a request, and what it finds is held until the listing ends; hourly runs kept for
#: over half a year fit. Retention deleting within them brings older ones into view.
LISTED_SNAPSHOTS_MAX = 5000
#: A path segment that URL resolution reads as '.' or '..', or an empty one.
_DOT_SEGMENT = re.compile(r"(?:\.|%2e)*", re.IGNORECASE)
#: What Blob Storage answers a ranged read of an empty blob.
_RANGE_NOT_SATISFIABLE = 416

_T = TypeVar("_T")
_R = TypeVar("_R")


def container_client(
    account_url: str,
    container: str,
    *,
    hosts: HostAllowList,
    connection_string: str | None = None,
    sas_token: str | None = None,
    credential: AsyncTokenCredential | None = None,
    http: SharedSession | None = None,
) -> ContainerClient:
    """A client for ``container``, authenticated by exactly one of the three means.

    A connection string names its own endpoint, which must then be ``account_url``'s: the
    spec's URL is what the schema, the identity rules and the status show. The endpoint
    the client would send to is checked against ``hosts`` and for https (http only on
    loopback) before it is returned, however it was given, so a refused one is never
    resolved nor connected to. ``http`` is the session to send through (None: one of the
    client's own).
    """
    given = [
        what
        for what, value in (
            ("connection string", connection_string),
            ("SAS token", sas_token),
            ("credential", credential),
        )
        if value
    ]
    if len(given) != 1:
        raise InvalidSpecError(
            f"blob container {container} needs exactly one of a connection string, a SAS token "
            f"or a credential; got {', '.join(given) or 'none'}"
        )

    def build(**options: Any) -> ContainerClient:
        # A redirect could lead anywhere; requests go only to hosts the list allows, and
        # each request is checked again as it leaves.
        options |= {
            "permit_redirects": False,
            "raw_request_hook": AllowedHostsPolicy(hosts, "Blob Storage").on_request,
        }
        if connection_string:
            return ContainerClient.from_connection_string(connection_string, container, **options)
        # As a credential object the token is sent per request, never kept in the URL.
        auth = AzureSasCredential(sas_token.lstrip("?")) if sas_token else credential
        return ContainerClient(account_url, container, credential=auth, **options)

    # Built once, without any I/O, to learn the endpoint it would use. Only the primary
    # endpoint is checked because only it is ever used: the client is never put in
    # secondary location mode nor told to retry there.
    primary = build().primary_endpoint
    hosts.check(primary, "storage account")
    require_secure_transport(primary, f"the blob endpoint {_without_query(primary)}")
    if connection_string and not _same_url(primary, f"{account_url}/{container}"):
        raise InvalidSpecError(
            f"the connection string's blob endpoint {_without_query(primary)} is not the "
            f"container at accountUrl {account_url}; the two must name the same account",
            reason="InvalidCredentials",
        )
    if http is None:
        return build()
    return build(transport=http.transport(), proxies=proxies_for(primary))


def _without_query(url: str) -> str:
    """A client's URL as it may be shown: a SAS token in its query must never reach a
    status, an Event or a log."""
    return urlsplit(url)._replace(query="", fragment="").geturl()


def _same_url(one: str, other: str) -> bool:
    """Whether two URLs reach the same place: scheme, host and port as a client connects,
    and the same path."""
    try:
        reached = endpoint(one) == endpoint(other)
    except ValueError:
        return False
    return reached and urlsplit(one).path.rstrip("/") == urlsplit(other).path.rstrip("/")


def artifact_blob(snapshot_folder: str, kind: ItemKind, name: str) -> str:
    """The blob of one item's backup: in its kind's folder, under its lower-cased name."""
    return f"{snapshot_folder}/{kind.plural}/{name.lower()}"


def manifest_blob(snapshot_folder: str) -> str:
    return f"{snapshot_folder}/{MANIFEST_BLOB}"


def safe_blob_name(name: str) -> str:
    """``name`` when none of its segments is empty, '.' or '..' (in any case or
    percent-encoding); refused before any request otherwise.

    The blob SDK quotes a name keeping its slashes, and aiohttp's URL parser resolves dot
    segments before the request leaves, so ``ns/kb/../../other`` would reach a blob
    outside the folder it was built under. Every name and listing prefix the store sends
    passes here, whatever checked it before.
    """
    if any(_DOT_SEGMENT.fullmatch(segment) for segment in name.split("/")):
        raise InvalidSpecError(
            f"blob name {foreign_text(name)!r} has an empty, '.' or '..' segment",
            reason="UnsafeBlobName",
        )
    return name


async def _each_at_most(
    limit: int, items: Sequence[_T], read: Callable[[_T], Awaitable[_R]]
) -> list[_R]:
    """``read`` of every item, at most ``limit`` at once, in the items' order. Workers
    take the next item as they free up, so nothing exists for an item before its turn;
    the first failure stops the others and is raised."""
    pending = iter(enumerate(items))
    results: dict[int, _R] = {}

    async def worker() -> None:
        for index, item in pending:
            results[index] = await read(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limit, len(items))):
                group.create_task(worker())
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [results[index] for index in range(len(items))]


@dataclass(frozen=True)
class _Found:
    """What a snapshot's folder holds: a manifest (with the summary recorded in its blob's
    metadata, if any) or item backups only."""

    complete: bool
    summary: str | None = None


class BlobSnapshotStore:
    """``SnapshotStore`` on an Azure Blob Storage container; the caller owns the client.

    Everything read back is bounded before it is read (``_download``) and checked against
    where it was found: a snapshot's id is its folder's name, and a manifest or summary
    naming another snapshot, KeyBackup or namespace than its folder is refused.
    """

    def __init__(self, container: ContainerClient, prefix: str = "") -> None:
        self._container = container
        self._prefix = prefix.strip("/")
        self._url = _without_query(container.primary_endpoint)

    def folder(self, namespace: str, *names: str) -> str:
        """The blob path of a KeyBackup (``namespace, keybackup``) or of one of its snapshots."""
        return "/".join(part for part in (self._prefix, namespace, *names) if part)

    def _snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        """The folder of a snapshot whose id is checked first: it becomes a path segment."""
        require_snapshot_id(snapshot_id, f"a request for {self._url}/{namespace}/{keybackup}")
        return self.folder(namespace, keybackup, snapshot_id)

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        kind: ItemKind,
        name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        folder = self._snapshot(keybackup.namespace, keybackup.name, snapshot_id)
        recorded = {
            KIND_METADATA: kind.value,
            NAME_METADATA: name,
            SHA256_METADATA: sha256_hex(data),
        }
        joined = ",".join(versions)
        if len(joined) <= VERSIONS_METADATA_LIMIT:  # else a resumed run backs it up again
            recorded[VERSIONS_METADATA] = joined
        blob = artifact_blob(folder, kind, name)
        await self._upload(blob, data, "application/octet-stream", recorded)
        return ""  # found by kind and name

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[Artifact]:
        """Read one blob at a time; a blob whose name, metadata or size is not what this
        store writes is left out (its item is backed up again)."""
        folder = self._snapshot(keybackup.namespace, keybackup.name, snapshot_id)
        found: list[Artifact] = []
        listing = self._blobs(f"{folder}/", f"list stored backups in {self._url}/{folder}/", True)
        async with aclosing(listing) as blobs:
            async for blob in blobs:
                recorded = _resumable_record(blob, folder)
                if recorded is None:
                    continue
                item, digest, versions = recorded
                data = await self._download(
                    blob.name, ARTIFACT_MAX_BYTES, "the most a backup may have"
                )
                if sha256_hex(data) == digest:
                    found.append(Artifact(item.name, versions, digest, len(data), "", item.kind))
                    if len(found) >= SNAPSHOT_KEYS_MAX:
                        break
        return found

    async def write_manifest(self, manifest: Manifest, summary: SnapshotSummary) -> None:
        ref = manifest.keybackup
        folder = self._snapshot(ref.namespace, ref.name, manifest.snapshot_id)
        # A summary naming another snapshot would fail every later listing of the KeyBackup.
        found_in = f"what was given to store with the manifest of {ref.namespace}/{ref.name}"
        summary.require_found_at(manifest.snapshot_id, found_in)
        await self._upload(
            manifest_blob(folder),
            manifest.to_json(),
            "application/json",
            {SUMMARY_METADATA: summary.to_json().decode()},
        )

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        complete = [
            (snapshot_id, found)
            for snapshot_id, found in await self._listed(namespace, keybackup)
            if found.complete
        ]

        async def summary(listed: tuple[str, _Found]) -> SnapshotSummary | None:
            return await self._summary_of(namespace, keybackup, *listed)

        summaries = await _each_at_most(LISTING_READS_AT_ONCE, complete, summary)
        return [s for s in summaries if s is not None]

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        return await self.read_manifest_at(self._snapshot(namespace, keybackup, snapshot_id))

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: Artifact
    ) -> bytes:
        folder = self._snapshot(namespace, keybackup, snapshot_id)
        return await self.read_artifact_at(folder, artifact)

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        listed = await self._listed(namespace, keybackup)
        return [StoredSnapshot(snapshot_id, found.complete) for snapshot_id, found in listed]

    async def _listed(self, namespace: str, keybackup: str) -> list[tuple[str, _Found]]:
        """Each snapshot's id, newest first, with what its folder holds.

        A snapshot's id is the name of the folder it was listed under, and only a name
        that is a snapshot id counts: anything else in the KeyBackup's folder was not
        written by this store. At most ``LISTED_SNAPSHOTS_MAX`` snapshots, the newest, are
        considered, so a folder of any size costs a bounded listing's memory.
        """
        # One listing of the snapshot folders, then a look into each: listing every blob
        # would cost a page per 5,000 keys of every snapshot kept, and the memory of it.
        base = self.folder(namespace, keybackup) + "/"
        newest: deque[str] = deque(maxlen=LISTED_SNAPSHOTS_MAX)
        with self._errors(f"list snapshots in {self._url}/{base}"):
            async for item in self._container.walk_blobs(
                name_starts_with=safe_blob_name(base.removesuffix("/")) + "/",
                delimiter="/",
                results_per_page=LISTING_PAGE_SIZE,
            ):
                # Listed in name order, which is time order for snapshot ids.
                if isinstance(item, BlobPrefix) and item.name.startswith(base):
                    snapshot_id = item.name[len(base) :].removesuffix("/")
                    if SNAPSHOT_ID.fullmatch(snapshot_id):
                        newest.append(snapshot_id)
        snapshot_ids = list(newest)

        async def look(snapshot_id: str) -> _Found | None:
            return await self._look_into(base + snapshot_id)

        looks = await _each_at_most(LISTING_READS_AT_ONCE, snapshot_ids, look)
        listed = [
            (sid, found)
            for sid, found in zip(snapshot_ids, looks, strict=True)
            if found is not None
        ]
        return sorted(listed, key=lambda pair: pair[0], reverse=True)

    async def _look_into(self, folder: str) -> _Found | None:
        """None for a folder the store did not write (such as a directory entry of an
        account with a hierarchical namespace)."""
        name = safe_blob_name(manifest_blob(folder))
        try:
            with self._errors(f"read blob properties {self._url}/{name}"):
                properties = await self._container.get_blob_client(name).get_blob_properties()
            return _Found(complete=True, summary=(properties.metadata or {}).get(SUMMARY_METADATA))
        except NotFoundError:
            pass
        for kind in ITEM_KINDS:
            listing = self._blobs(
                f"{folder}/{kind.plural}/", f"list stored backups in {self._url}/{folder}/", page=1
            )
            async with aclosing(listing) as blobs:
                async for _ in blobs:
                    return _Found(complete=False)
        return None

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        folder = self._snapshot(namespace, keybackup, snapshot_id)
        await self._delete(manifest_blob(folder))
        # Deleted as listed: the listing goes on from the last name it gave, so deleting
        # what it gave already changes nothing, and no list of every name is held.
        async for blob in self._blobs(
            f"{folder}/", f"list blobs of snapshot {self._url}/{folder}/"
        ):
            await self._delete(blob.name)

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        return f"{self._url}/{self.folder(namespace, keybackup, snapshot_id)}/"

    async def read_manifest_at(self, snapshot_path: str) -> Manifest:
        """The manifest of the snapshot at ``snapshot_path`` as stored (it may be
        differential), ignoring the store's prefix.

        ``snapshot_path`` is the snapshot's folder in this container, or the URL that
        ``location`` gave for it. Its last three segments are the namespace, KeyBackup and
        snapshot id the manifest must name.
        """
        folder = self._snapshot_folder(snapshot_path)
        manifest = await self._manifest_if_present(folder)
        if manifest is None:
            raise MissingReferenceError(
                f"no complete snapshot at {self._url}/{folder}/: {MANIFEST_BLOB} is missing",
                reason="SourceNotFound",
            )
        return manifest

    async def open_at(self, snapshot_path: str) -> OpenedSnapshot:
        """The snapshot at ``snapshot_path`` (as for the manifest), ready to be read, with
        its whole manifest: a differential one is merged onto its base, read from the
        sibling folder the base's id names (and checked to be that snapshot's)."""
        folder = self._snapshot_folder(snapshot_path)
        manifest = await self.read_manifest_at(folder)

        async def read_base(base: str) -> Manifest:
            try:
                return await self.read_manifest_at(self._sibling(folder, base))
            except MissingReferenceError as error:
                raise MissingReferenceError(
                    f"snapshot {manifest.snapshot_id} lists only its differences from snapshot "
                    f"{base}, and there is {error.message}",
                    reason=error.reason,
                ) from None

        whole = await whole_manifest(manifest, read_base)
        return OpenedSnapshot(whole, partial(self.read_artifact_at, folder))

    async def read_artifact_at(self, snapshot_path: str, artifact: Artifact) -> bytes:
        """The backup of one item listed by the snapshot at ``snapshot_path`` (as for the
        manifest): only from the blob its kind and name map to, in the folder of the
        snapshot holding it (``artifact.home``: that one, or a sibling), and no more bytes
        than the manifest records for it."""
        item = ItemRef(artifact.kind, artifact.name)
        folder = self._snapshot_folder(snapshot_path)
        home = artifact.home(folder.rpartition("/")[2])
        name = artifact_blob(self._sibling(folder, home), item.kind, item.name)
        try:
            return await self._download(
                name, artifact.size, f"the size the manifest records for {item}"
            )
        except NotFoundError:
            raise NotFoundError(
                f"backup of {item} is missing from snapshot {home} (blob {self._url}/{name})",
                reason="ArtifactMissing",
            ) from None

    def _sibling(self, snapshot_folder: str, snapshot_id: str) -> str:
        """The folder of snapshot ``snapshot_id`` of the same KeyBackup as the snapshot in
        ``snapshot_folder``. The id was checked when the manifest naming it was parsed,
        and is again: it becomes a path segment."""
        require_snapshot_id(snapshot_id, f"the manifest of {self._url}/{snapshot_folder}/")
        return f"{snapshot_folder.rpartition('/')[0]}/{snapshot_id}"

    def _snapshot_folder(self, snapshot_path: str) -> str:
        path = snapshot_path.strip()
        if "://" in path:
            if not path.startswith(f"{self._url}/"):
                raise InvalidSpecError(f"snapshot {path} is not in blob container {self._url}")
            path = path[len(self._url) + 1 :]
        folder = path.strip("/")
        if folder.count("/") < 2:
            raise InvalidSpecError(
                f"snapshot path {folder} does not end in <namespace>/<keybackup>/<snapshot id>"
            )
        return safe_blob_name(folder)

    async def _manifest_if_present(self, folder: str) -> Manifest | None:
        """The manifest in ``folder`` (whose last three segments it must name), or None."""
        name = manifest_blob(folder)
        try:
            raw = await self._download(name, MANIFEST_MAX_BYTES, "the most a manifest may have")
        except NotFoundError:  # never written, or deleted since it was listed
            return None
        found_in = f"blob {self._url}/{name}"
        manifest = Manifest.from_json(raw, found_in=found_in)
        namespace, keybackup, snapshot_id = folder.split("/")[-3:]
        manifest.require_found_at(namespace, keybackup, snapshot_id, found_in)
        return manifest

    async def _summary_of(
        self, namespace: str, keybackup: str, snapshot_id: str, found: _Found
    ) -> SnapshotSummary | None:
        """From the manifest blob's metadata; a manifest written without it is read whole."""
        folder = self.folder(namespace, keybackup, snapshot_id)
        if found.summary:
            found_in = f"the metadata of blob {self._url}/{manifest_blob(folder)}"
            summary = SnapshotSummary.from_json(found.summary, found_in=found_in)
            summary.require_found_at(snapshot_id, found_in)
            return summary
        manifest = await self._manifest_if_present(folder)
        if manifest is None:
            return None
        if manifest.differential:  # the store writes a summary with every one of those
            raise IntegrityError(
                f"blob {self._url}/{manifest_blob(folder)} holds a differential manifest and "
                "no summary of it"
            )
        return manifest.summary

    async def _blobs(
        self, prefix: str, what: str, metadata: bool = False, page: int = LISTING_PAGE_SIZE
    ) -> AsyncGenerator[BlobProperties]:
        """The blobs whose names start with ``prefix`` (a folder and its slash), listed a
        page at a time."""
        checked = safe_blob_name(prefix.removesuffix("/")) + "/"
        with self._errors(what):
            async for blob in self._container.list_blobs(
                name_starts_with=checked,
                include=["metadata"] if metadata else None,
                results_per_page=page,
            ):
                yield blob

    async def _upload(
        self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        # overwrite: redoing an interrupted run replaces its own blobs instead of failing.
        with self._errors(f"write blob {self._url}/{name}"):
            await to_completion(
                self._container.upload_blob(
                    safe_blob_name(name),
                    data,
                    overwrite=True,
                    content_settings=ContentSettings(content_type=content_type),
                    metadata=metadata,
                    client_request_id=request_id(),
                )
            )

    async def _download(self, name: str, limit: int, why: str) -> bytes:
        """The blob's bytes as stored, at most ``limit`` of them (``why`` says whose bound).

        One request asks for ``limit`` + 1 bytes, so a larger blob is told apart without
        more of it ever being read. Nothing is inflated: azure-core would itself inflate
        a blob stored with ``Content-Encoding: gzip`` (a 65 KB one into hundreds of MiB),
        and the store never writes one, so an encoded blob is refused unread.
        """
        where = f"blob {self._url}/{name}"
        with self._errors(f"read {where}"):
            try:
                downloader = await self._container.download_blob(
                    safe_blob_name(name), offset=0, length=limit + 1, decompress=False
                )
            except HttpResponseError as error:
                if error.status_code == _RANGE_NOT_SATISFIABLE:  # an empty blob
                    return b""
                raise
            encoding = downloader.properties.content_settings.content_encoding
            if encoding and encoding.strip().lower() != "identity":
                raise IntegrityError(
                    f"{where} is stored with Content-Encoding {foreign_text(encoding)!r}; the "
                    "operator writes blobs as they are and reads them so"
                )
            if downloader.size > limit:
                raise TooLargeError(f"{where} holds more than {limit} bytes, {why}")
            return await downloader.readall()

    async def _delete(self, name: str) -> None:
        what = f"delete blob {self._url}/{name}"
        try:
            with self._errors(what):
                try:
                    await self._container.delete_blob(safe_blob_name(name))
                except HttpResponseError as error:
                    refusal = _deletion_refusal(error)
                    if refusal:
                        raise DeletionRefusedError(f"{what}: {refusal}") from error
                    raise
        except NotFoundError:  # already gone: a redone deletion is not an error
            pass

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        with azure_errors(what):
            try:
                yield
            except ResourceNotFoundError as error:
                # Told apart from a missing blob: a container may still be created (by
                # Terraform, a GitOps tool) after the KeyBackup, so it is retried.
                if getattr(error, "error_code", None) == StorageErrorCode.CONTAINER_NOT_FOUND:
                    raise MissingReferenceError(
                        f"{what}: blob container {self._container.container_name} does not "
                        f"exist ({self._url})",
                        reason="ContainerNotFound",
                    ) from error
                raise


#: What Blob Storage answers (409) a delete of a blob under a time-based retention policy
#: or a legal hold (its documented error codes; the SDK's StorageErrorCode has neither).
IMMUTABLE_BLOB_CODES = ("BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold")
#: What it answers (403) an identity, or a SAS, allowed to write blobs but not to delete them.
PERMISSION_MISMATCH = "AuthorizationPermissionMismatch"


def _deletion_refusal(error: HttpResponseError) -> str:
    """Why storage refused a delete that retention may retry later, or "" for any other
    error."""
    code = getattr(error, "error_code", None)
    if error.status_code == 409 and code in IMMUTABLE_BLOB_CODES:
        return f"the blob is immutable ({code}): kept until its policy or hold allows it"
    if error.status_code == 403 and code == PERMISSION_MISMATCH:
        return (
            f"the identity may not delete blobs ({code}): kept; with a role that writes but "
            "does not delete, the account's lifecycle rules remove old backups"
        )
    return ""


def _resumable_record(
    blob: BlobProperties, folder: str
) -> tuple[ItemRef, str, tuple[str, ...]] | None:
    """The item, sha256 and versions recorded with a backup blob, when they are what
    ``write_artifact`` records, the blob is the one its kind and name map to, and it is
    no larger than a backup may be; None otherwise. A blob recording no kind is a key's,
    written before there were other kinds, with its name as ``keyname``."""
    recorded = blob.metadata or {}
    kind = recorded.get(KIND_METADATA)
    name = recorded.get(NAME_METADATA if kind else LEGACY_NAME_METADATA, "")
    digest = recorded.get(SHA256_METADATA, "")
    versions = tuple(recorded.get(VERSIONS_METADATA, "").split(","))
    kind = kind or ItemKind.KEY.value
    if (
        kind in ITEM_KINDS
        and KEY_NAME.fullmatch(name)
        and blob.name == artifact_blob(folder, ItemKind(kind), name)
        and (blob.size or 0) <= ARTIFACT_MAX_BYTES
        and SHA256_HEX.fullmatch(digest)
        and all(VERSION_ID.fullmatch(version) for version in versions)
    ):
        return ItemRef(ItemKind(kind), name), digest, versions
    return None
