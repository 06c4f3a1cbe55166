"""What GitOps tools make of kvbackup's objects, through their own code.

- kstatus, the status library of Flux and kpt (``sigs.k8s.io/cli-utils``'s
  ``status.Compute``), through ``hack/kstatus``;
- Argo CD's health assessment with our Lua health checks, through ``hack/argocd-health``
  (Argo CD's ``util/lua`` and gitops-engine's ``health.GetResourceHealth``).

Both are built from the Go module proxy by their hack/ scripts on first use and cached
outside the repository. Objects go in as they come from the API server (``kubectl get -o
json``) or from a file of ``gitops/argocd``'s testdata.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.controlplane import REPO, cached_by

#: Argo CD's resource_customizations folder for kvbackup.io: one folder per kind.
HEALTH_CHECKS = REPO / "gitops" / "argocd" / "resource_customizations" / "kvbackup.io"
KINDS = ("KeyBackup", "KeyRestore")
# Each tool prints one short JSON line per object; anything longer is not its answer.
_LINE_LIMIT = 64 * 1024


def kstatus_binary() -> Path:
    return cached_by("build-kstatus.sh") / "kstatus"


def argocd_health_binary() -> Path:
    return cached_by("build-argocd-health.sh") / "argocd-health"


def _text_field(answer: Mapping[str, Any], field: str) -> str:
    value = answer.get(field)
    if not isinstance(value, str):
        raise ValueError(f"the tool's answer has no text {field}: {answer!r}")
    return value


def _answers(stdout: str) -> list[dict[str, Any]]:
    answers = []
    for line in stdout.splitlines():
        if len(line) > _LINE_LIMIT:
            raise ValueError(f"an answer of {len(line)} characters")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ValueError(f"not an object: {line!r}")
        answers.append(answer)
    return answers


@dataclass(frozen=True)
class KstatusVerdict:
    kind: str
    namespace: str
    name: str
    #: InProgress, Failed, Current, Terminating or Unknown.
    status: str
    message: str


def kstatus(binary: Path, objects: Iterable[Mapping[str, Any]]) -> list[KstatusVerdict]:
    """kstatus' verdict on each object, in order."""
    listed = list(objects)
    document = {"apiVersion": "v1", "kind": "List", "items": listed}
    result = subprocess.run(
        [str(binary)],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    verdicts = [
        KstatusVerdict(
            kind=_text_field(answer, "kind"),
            namespace=_text_field(answer, "namespace"),
            name=_text_field(answer, "name"),
            status=_text_field(answer, "status"),
            message=_text_field(answer, "message"),
        )
        for answer in _answers(result.stdout)
    ]
    if len(verdicts) != len(listed):
        raise ValueError(f"{len(listed)} objects, {len(verdicts)} verdicts: {result.stdout!r}")
    return verdicts


@dataclass(frozen=True)
class Health:
    """Argo CD's health of one object: Healthy, Progressing, Degraded, Suspended, Missing,
    Unknown, or "" when no health check applies."""

    status: str
    message: str


def health_script(kind: str) -> Path:
    return HEALTH_CHECKS / kind / "health.lua"


def argocd_health(
    binary: Path, script: Path, obj: Mapping[str, Any], *, open_libs: bool = False
) -> Health:
    """Argo CD's health of ``obj`` with ``script`` configured for its group and kind in
    argocd-cm; ``open_libs`` is that entry's ``health.lua.useOpenLibs`` (Argo CD runs its
    built-in health checks with the Lua standard libraries open)."""
    command = [str(binary), *(["-open-libs"] if open_libs else []), str(script)]
    result = subprocess.run(
        command, input=json.dumps(obj), capture_output=True, text=True, check=True, timeout=60
    )
    (answer,) = _answers(result.stdout)
    return Health(_text_field(answer, "status"), _text_field(answer, "message"))


@dataclass(frozen=True)
class HealthCase:
    """One case of a health_test.yaml: the object in ``input_path`` has ``expected``."""

    kind: str
    input_path: Path
    expected: Health

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.input_path.stem}"

    def object(self) -> dict[str, Any]:
        loaded = yaml.safe_load(self.input_path.read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{self.input_path} holds no object")
        return loaded


def health_cases(kind: str) -> list[HealthCase]:
    """The cases of ``kind``'s health_test.yaml, in Argo CD's format."""
    folder = HEALTH_CHECKS / kind
    listed = yaml.safe_load((folder / "health_test.yaml").read_text())
    return [
        HealthCase(
            kind,
            folder / test["inputPath"],
            Health(test["healthStatus"]["status"], test["healthStatus"]["message"]),
        )
        for test in listed["tests"]
    ]
