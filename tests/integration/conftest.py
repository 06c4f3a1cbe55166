"""Fixtures for tests against the real API server and the operator as a real process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane, install_crds, start
from tests.harness.operator import OperatorProcess, start_operator


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start(tmp_path_factory.mktemp("control-plane"))
    try:
        install_crds(plane)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = start_operator(
        control_plane.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log"
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    return name


class Cluster:
    """What a user does with kubectl, for the tests to read like user actions."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace

    def apply(self, manifest: str) -> None:
        self.plane.kubectl("apply", "-n", self.namespace, "-f", "-", input=manifest)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out = self.plane.kubectl("get", "-n", self.namespace, kind, name, "-o", "json")
        document: dict[str, Any] = json.loads(out.stdout)
        return document

    def status(self, kind: str, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(kind, name).get("status") or {}
        return status

    def events_for(self, name: str) -> list[dict[str, Any]]:
        out = self.plane.kubectl(
            "get",
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def wait_until(
        self, what: str, check: Callable[[], bool], timeout: float = 90, interval: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting until {what}")

    def ready_condition(self, kind: str, name: str) -> dict[str, Any]:
        for condition in self.status(kind, name).get("conditions", []):
            if condition.get("type") == "Ready":
                return dict(condition)
        return {}


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str) -> Cluster:
    return Cluster(control_plane, namespace)
