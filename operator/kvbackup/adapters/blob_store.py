"""Snapshots kept as blobs in one Azure Blob Storage container.

Layout, for KeyBackup ``kb`` in namespace ``ns`` and snapshot ``s``, under the store's
``prefix`` (may be empty)::

    <prefix>/ns/kb/s/keys/<key-name>   the exact bytes backup_key returned, one blob per key
    <prefix>/ns/kb/s/manifest.json     the manifest, written last

A downloaded ``keys/<key-name>`` blob is a file ``az keyvault key restore --file`` accepts.
Key Vault names are case-insensitive, so ``<key-name>`` is the lower-cased name: a redone
run, or a read with another casing, finds the same blob. The manifest has the exact name.

A snapshot can also be read by its path alone (``read_manifest_at``, ``read_artifact_at``),
for restores after the KeyBackup, or the whole cluster, is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings, StorageErrorCode
from azure.storage.blob.aio import BlobPrefix, ContainerClient

from kvbackup.adapters.azure_errors import azure_errors
from kvbackup.adapters.completion import to_completion
from kvbackup.adapters.http import SharedSession
from kvbackup.adapters.proxies import proxies_for
from kvbackup.adapters.request_checks import AllowedHostsPolicy
from kvbackup.api.fields import require_secure_transport
from kvbackup.api.hosts import HostAllowList, endpoint
from kvbackup.api.keybackup import KeyBackupRef
from kvbackup.errors import InvalidSpecError, MissingReferenceError, NotFoundError
from kvbackup.services.ports import OpenedSnapshot, StoredSnapshot
from kvbackup.services.snapshot import KeyArtifact, Manifest, SnapshotSummary, sha256_hex

MANIFEST_BLOB = "manifest.json"
#: Metadata of the manifest blob: its summary, so snapshots are listed without reading them.
SUMMARY_METADATA = "summary"
KEYS_FOLDER = "keys"
#: Blob metadata holds 8 KiB in all; a longer list of versions is not recorded.
VERSIONS_METADATA_LIMIT = 6000
#: Blobs per listing page: the service's default of 5,000 is tens of MiB once parsed.
LISTING_PAGE_SIZE = 500


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


def artifact_blob(snapshot_folder: str, key_name: str) -> str:
    return f"{snapshot_folder}/{KEYS_FOLDER}/{key_name.lower()}"


def manifest_blob(snapshot_folder: str) -> str:
    return f"{snapshot_folder}/{MANIFEST_BLOB}"


@dataclass(frozen=True)
class _Found:
    """What a snapshot's folder holds: a manifest (with its blob's metadata) or key
    backups only."""

    complete: bool
    metadata: dict[str, str] = field(default_factory=dict)


class BlobSnapshotStore:
    """``SnapshotStore`` on an Azure Blob Storage container; the caller owns the client."""

    def __init__(self, container: ContainerClient, prefix: str = "") -> None:
        self._container = container
        self._prefix = prefix.strip("/")
        self._url = _without_query(container.primary_endpoint)

    def folder(self, namespace: str, *names: str) -> str:
        """The blob path of a KeyBackup (``namespace, keybackup``) or of one of its snapshots."""
        return "/".join(part for part in (self._prefix, namespace, *names) if part)

    async def write_artifact(
        self,
        keybackup: KeyBackupRef,
        snapshot_id: str,
        key_name: str,
        data: bytes,
        versions: tuple[str, ...] = (),
    ) -> str:
        folder = self.folder(keybackup.namespace, keybackup.name, snapshot_id)
        recorded = {"keyname": key_name, "sha256": sha256_hex(data)}
        joined = ",".join(versions)
        if len(joined) <= VERSIONS_METADATA_LIMIT:  # else a resumed run backs it up again
            recorded["versions"] = joined
        name = artifact_blob(folder, key_name)
        await self._upload(name, data, "application/octet-stream", recorded)
        return ""  # found by key name

    async def resumable(self, keybackup: KeyBackupRef, snapshot_id: str) -> list[KeyArtifact]:
        folder = self.folder(keybackup.namespace, keybackup.name, snapshot_id)
        candidates = []
        with self._errors(f"list stored backups in {self._url}/{folder}/"):
            async for blob in self._container.list_blobs(
                name_starts_with=f"{folder}/{KEYS_FOLDER}/",
                include=["metadata"],
                results_per_page=LISTING_PAGE_SIZE,
            ):
                recorded = blob.metadata or {}
                if recorded.get("keyname") and recorded.get("sha256") and recorded.get("versions"):
                    candidates.append((blob.name, recorded))
        found = []
        for name, recorded in candidates:
            data = await self._download(name)
            if sha256_hex(data) == recorded["sha256"]:
                versions = tuple(recorded["versions"].split(","))
                found.append(
                    KeyArtifact(recorded["keyname"], versions, recorded["sha256"], len(data))
                )
        return found

    async def write_manifest(self, manifest: Manifest) -> None:
        ref = manifest.keybackup
        folder = self.folder(ref.namespace, ref.name, manifest.snapshot_id)
        await self._upload(
            manifest_blob(folder),
            manifest.to_json(),
            "application/json",
            {SUMMARY_METADATA: manifest.summary.to_json().decode()},
        )

    async def list_snapshots(self, namespace: str, keybackup: str) -> list[SnapshotSummary]:
        listed = await self._listed(namespace, keybackup)
        summaries = await asyncio.gather(
            *(
                self._summary_of(self.folder(namespace, keybackup, snapshot_id), found)
                for snapshot_id, found in listed
                if found.complete
            )
        )
        return [s for s in summaries if s is not None]

    async def read_manifest(self, namespace: str, keybackup: str, snapshot_id: str) -> Manifest:
        return await self.read_manifest_at(self.folder(namespace, keybackup, snapshot_id))

    async def read_artifact(
        self, namespace: str, keybackup: str, snapshot_id: str, artifact: KeyArtifact
    ) -> bytes:
        return await self.read_artifact_at(self.folder(namespace, keybackup, snapshot_id), artifact)

    async def list_stored(self, namespace: str, keybackup: str) -> list[StoredSnapshot]:
        listed = await self._listed(namespace, keybackup)
        return [StoredSnapshot(snapshot_id, found.complete) for snapshot_id, found in listed]

    async def _listed(self, namespace: str, keybackup: str) -> list[tuple[str, _Found]]:
        """Each snapshot's id, newest first, with what its folder holds."""
        # One listing of the snapshot folders, then a look into each: listing every blob
        # would cost a page per 5,000 keys of every snapshot kept, and the memory of it.
        base = self.folder(namespace, keybackup) + "/"
        snapshot_ids: list[str] = []
        with self._errors(f"list snapshots in {self._url}/{base}"):
            async for item in self._container.walk_blobs(name_starts_with=base, delimiter="/"):
                if isinstance(item, BlobPrefix):
                    snapshot_ids.append(item.name[len(base) :].rstrip("/"))
        looks = await asyncio.gather(*(self._look_into(base + sid) for sid in snapshot_ids))
        listed = [
            (sid, found)
            for sid, found in zip(snapshot_ids, looks, strict=True)
            if found is not None
        ]
        return sorted(listed, key=lambda pair: pair[0], reverse=True)

    async def _look_into(self, folder: str) -> _Found | None:
        """None for a folder the store did not write (such as a directory entry of an
        account with a hierarchical namespace)."""
        name = manifest_blob(folder)
        try:
            with self._errors(f"read blob properties {self._url}/{name}"):
                properties = await self._container.get_blob_client(name).get_blob_properties()
            return _Found(complete=True, metadata=dict(properties.metadata or {}))
        except NotFoundError:
            pass
        with self._errors(f"list stored backups in {self._url}/{folder}/"):
            async for _ in self._container.list_blobs(
                name_starts_with=f"{folder}/{KEYS_FOLDER}/", results_per_page=1
            ):
                return _Found(complete=False)
        return None

    async def delete_snapshot(self, namespace: str, keybackup: str, snapshot_id: str) -> None:
        folder = self.folder(namespace, keybackup, snapshot_id)
        await self._delete(manifest_blob(folder))
        names: list[str] = []
        with self._errors(f"list blobs of snapshot {self._url}/{folder}/"):
            async for blob in self._container.list_blobs(
                name_starts_with=f"{folder}/", results_per_page=LISTING_PAGE_SIZE
            ):
                names.append(blob.name)
        for name in names:
            await self._delete(name)

    def location(self, namespace: str, keybackup: str, snapshot_id: str) -> str:
        return f"{self._url}/{self.folder(namespace, keybackup, snapshot_id)}/"

    async def read_manifest_at(self, snapshot_path: str) -> Manifest:
        """The manifest of the snapshot at ``snapshot_path``, ignoring the store's prefix.

        ``snapshot_path`` is the snapshot's folder in this container, or the URL that
        ``location`` gave for it.
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
        """The snapshot at ``snapshot_path`` (as for the manifest), ready to be read."""
        manifest = await self.read_manifest_at(snapshot_path)
        return OpenedSnapshot(manifest, partial(self.read_artifact_at, snapshot_path))

    async def read_artifact_at(self, snapshot_path: str, artifact: KeyArtifact) -> bytes:
        """The backup of one key in the snapshot at ``snapshot_path`` (as for the manifest)."""
        key_name = artifact.name
        name = artifact_blob(self._snapshot_folder(snapshot_path), key_name)
        try:
            return await self._download(name)
        except NotFoundError:
            raise NotFoundError(
                f"backup of key {key_name} is missing (blob {self._url}/{name})",
                reason="ArtifactMissing",
            ) from None

    def _snapshot_folder(self, snapshot_path: str) -> str:
        path = snapshot_path.strip()
        if "://" in path:
            if not path.startswith(f"{self._url}/"):
                raise InvalidSpecError(f"snapshot {path} is not in blob container {self._url}")
            path = path[len(self._url) + 1 :]
        return path.strip("/")

    async def _manifest_if_present(self, folder: str) -> Manifest | None:
        try:
            raw = await self._download(manifest_blob(folder))
        except NotFoundError:  # never written, or deleted since it was listed
            return None
        return Manifest.from_json(raw)

    async def _summary_of(self, folder: str, found: _Found) -> SnapshotSummary | None:
        """From the manifest blob's metadata; a manifest written without it is read whole."""
        recorded = found.metadata.get(SUMMARY_METADATA)
        if recorded:
            return SnapshotSummary.from_json(recorded)
        manifest = await self._manifest_if_present(folder)
        return manifest.summary if manifest else None

    async def _upload(
        self, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        # overwrite: redoing an interrupted run replaces its own blobs instead of failing.
        with self._errors(f"write blob {self._url}/{name}"):
            await to_completion(
                self._container.upload_blob(
                    name,
                    data,
                    overwrite=True,
                    content_settings=ContentSettings(content_type=content_type),
                    metadata=metadata,
                )
            )

    async def _download(self, name: str) -> bytes:
        with self._errors(f"read blob {self._url}/{name}"):
            downloader = await self._container.download_blob(name)
            return await downloader.readall()

    async def _delete(self, name: str) -> None:
        try:
            with self._errors(f"delete blob {self._url}/{name}"):
                await self._container.delete_blob(name)
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
