"""The election's lease as a coordination.k8s.io/v1 Lease, each write guarded by its
resourceVersion."""

from __future__ import annotations

import datetime
from typing import Any

from kvbackup.adapters.kubernetes import KubernetesApi
from kvbackup.errors import NotFoundError
from kvbackup.services.leadership import LeaseRecord

_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _micro_time(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).strftime(_MICRO_TIME) if moment else None


def _parse_micro_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    for pattern in (_MICRO_TIME, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, pattern).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return None


def record_of(document: dict[str, Any]) -> LeaseRecord:
    spec = document.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        renew_time=_parse_micro_time(spec.get("renewTime")),
        acquire_time=_parse_micro_time(spec.get("acquireTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        version=(document.get("metadata") or {}).get("resourceVersion"),
    )


class KubernetesLeases:
    """One Lease in one namespace; implements the services' ``LeaseStore``."""

    def __init__(self, api: KubernetesApi, namespace: str, name: str, timeout: float) -> None:
        self._api, self._namespace, self._name = api, namespace, name
        #: Seconds a call may take; the elector gives up on it then, and so does the thread.
        self._timeout = timeout

    def _document(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if record.version is not None:
            metadata["resourceVersion"] = record.version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.duration_seconds,
                "renewTime": _micro_time(record.renew_time),
                "acquireTime": _micro_time(record.acquire_time),
                "leaseTransitions": record.transitions,
            },
        }

    @property
    def _what(self) -> str:
        return f"Lease {self._namespace}/{self._name}"

    async def read(self) -> LeaseRecord | None:
        try:
            document = await self._api.raw_json(
                f"read {self._what}",
                self._api.coordination.read_namespaced_lease,
                self._name,
                self._namespace,
                _request_timeout=self._timeout,
            )
        except NotFoundError:
            return None
        return record_of(document)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        document = await self._api.raw_json(
            f"create {self._what}",
            self._api.coordination.create_namespaced_lease,
            self._namespace,
            self._document(record),
            _request_timeout=self._timeout,
        )
        return record_of(document)

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        document = await self._api.raw_json(
            f"write {self._what}",
            self._api.coordination.replace_namespaced_lease,
            self._name,
            self._namespace,
            self._document(record),
            _request_timeout=self._timeout,
        )
        return record_of(document)
