"""The Flux worked example of gitops/flux holds together: the HelmRelease upgrades the CRDs
and lets the example KeyBackups use the operator's identity, the Kustomizations point at
its folders and wait, and the KeyBackups are what the API server accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvbackup.config import Settings
from kvbackup.services.tenancy import blob_allowed, vault_allowed
from tests.harness.controlplane import REPO, ControlPlane, cached_by
from tests.integration.conftest import on_the_terminal

pytestmark = pytest.mark.integration

FLUX = REPO / "gitops" / "flux"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _only(path: Path) -> dict[str, Any]:
    (document,) = _documents(path)
    return document


def _kustomizations() -> dict[str, dict[str, Any]]:
    return {k["metadata"]["name"]: k["spec"] for k in _documents(FLUX / "kustomizations.yaml")}


def _example_keybackups() -> list[dict[str, Any]]:
    listed = _only(FLUX / "keybackups" / "kustomization.yaml")["resources"]
    return [_only(FLUX / "keybackups" / name) for name in listed]


@pytest.fixture(scope="module")
def helm(pytestconfig: pytest.Config) -> Path:
    with on_the_terminal(pytestconfig):
        return cached_by("build-helm.sh") / "helm"


def test_the_helmrelease_creates_the_crds_on_install_and_replaces_them_on_upgrade() -> None:
    release = _only(FLUX / "operator" / "helmrelease.yaml")["spec"]
    assert release["install"]["crds"] == "CreateReplace"
    assert release["upgrade"]["crds"] == "CreateReplace"
    chart = REPO / release["chart"]["spec"]["chart"]
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == "kvbackup-operator"


def test_the_helmreleases_values_let_each_example_keybackup_use_the_operators_identity(
    helm: Path,
) -> None:
    release = _only(FLUX / "operator" / "helmrelease.yaml")
    chart = REPO / release["spec"]["chart"]["spec"]["chart"]
    namespace = release["metadata"]["namespace"]
    rendered = subprocess.run(
        [str(helm), "template", "kvbackup", str(chart), "--namespace", namespace, "--values", "-"],
        input=json.dumps(release["spec"]["values"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    rules = Settings.from_env(env).default_identity_rules

    for keybackup in _example_keybackups():
        its_namespace, spec = keybackup["metadata"]["namespace"], keybackup["spec"]
        assert vault_allowed(rules, its_namespace, spec["vaultUrl"]), keybackup["metadata"]
        if blob := spec.get("destination", {}).get("blob"):
            assert blob_allowed(rules, its_namespace, blob["accountUrl"], blob["container"])


def test_the_keybackups_kustomization_waits_for_them_after_the_operators() -> None:
    kustomizations = _kustomizations()
    assert kustomizations["kvbackup-keybackups"]["dependsOn"] == [{"name": "kvbackup-operator"}]
    for spec in kustomizations.values():
        assert spec["wait"] is True
        assert (REPO / spec["path"] / "kustomization.yaml").is_file()


def test_the_example_keybackups_build_with_kustomize_and_the_api_server_accepts_them(
    control_plane: ControlPlane,
) -> None:
    built = control_plane.kubectl("kustomize", str(FLUX / "keybackups")).stdout
    documents = [d for d in yaml.safe_load_all(built) if d]
    assert [d["kind"] for d in documents] == ["KeyBackup"] * len(_example_keybackups())
    # The example names its namespaces; they exist on a user's cluster, as here.
    for namespace in sorted({d["metadata"]["namespace"] for d in documents}):
        created = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(created))
    accepted = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=built).stdout
    assert accepted.count("(server dry run)") == len(documents)


def test_the_operator_folder_builds_into_the_namespace_its_source_and_its_helmrelease(
    control_plane: ControlPlane,
) -> None:
    built = control_plane.kubectl("kustomize", str(FLUX / "operator")).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built) if d)
    assert kinds == ["GitRepository", "HelmRelease", "Namespace"]
