"""The Helm chart: it renders what the real API server accepts, and its RBAC is enough.

Helm is built from the Go module proxy by hack/build-helm.sh. The RBAC tests apply the
chart's ServiceAccount and roles for real, run the operator with a token of that
ServiceAccount and show it doing its work with no 403 in its log; the operators they
start watch namespaces of their own (not ``t-*``, which the shared operator watches).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvbackup.api.tenancy import IdentityRule
from kvbackup.config import FORMER_CONCURRENCY_SETTING, Settings
from kvbackup.services.tenancy import blob_allowed, vault_allowed
from tests.harness.controlplane import REPO, ControlPlane, cached_by, free_port
from tests.harness.lowkey import Lowkey
from tests.harness.operator import OperatorProcess, emulator_hosts, start_operator
from tests.integration.conftest import Cluster, VaultUnderTest, on_the_terminal
from tests.integration.objects import keybackup, keyrestore

pytestmark = pytest.mark.integration

CHART = REPO / "charts" / "kvbackup-operator"
#: The chart's copy of crds/, rendered by templates/crds.yaml.
CHART_CRDS = CHART / "files" / "crds"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.fixture(scope="session")
def helm(pytestconfig: pytest.Config) -> Path:
    with on_the_terminal(pytestconfig):
        return cached_by("build-helm.sh") / "helm"


def _run_helm(helm: Path, *args: str, values: dict[str, Any] | None = None) -> str:
    command = [str(helm), *args]
    if values is not None:
        command += ["--values", "-"]
    result = subprocess.run(
        command, input=json.dumps(values or {}), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def render(
    helm: Path, release_namespace: str, values: dict[str, Any], release: str = "kvb"
) -> list[dict[str, Any]]:
    text = _run_helm(
        helm, "template", release, str(CHART), "--namespace", release_namespace, values=values
    )
    return [document for document in yaml.safe_load_all(text) if document]


def find(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def deployment_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = find(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


def dry_run_server(plane: ControlPlane, documents: list[dict[str, Any]]) -> str:
    manifest = "\n---\n".join(json.dumps(document) for document in documents)
    result = plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert result.returncode == 0, f"the API server refused the chart:\n{result.stderr}"
    return result.stdout


def own_namespace(plane: ControlPlane, prefix: str = "chart") -> str:
    """A namespace that no other test's operator watches."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    plane.kubectl("create", "namespace", name)
    return name


def unique_release() -> str:
    """Cluster-scoped objects are named after the release: one release name per test."""
    return f"kvb-{uuid.uuid4().hex[:6]}"


def apply_rbac(plane: ControlPlane, documents: list[dict[str, Any]]) -> None:
    manifest = "\n---\n".join(json.dumps(d) for d in documents if d["kind"] in RBAC_KINDS)
    plane.kubectl("apply", "-f", "-", input=manifest)


def service_account_kubeconfig(
    plane: ControlPlane, namespace: str, service_account: str, path: Path
) -> Path:
    token = plane.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": plane.server,
                            "certificate-authority": str(plane.workdir / "pki" / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": service_account, "user": {"token": token}}],
                "contexts": [
                    {"name": "local", "context": {"cluster": "local", "user": service_account}}
                ],
                "current-context": "local",
            }
        )
    )
    return path


def operator_env(documents: list[dict[str, Any]], lowkey: Lowkey) -> dict[str, str]:
    """The chart's settings, except those the harness sets for fast, local runs and for the
    emulators' loopback hosts, plus what reaching the Key Vault emulator takes."""
    env = deployment_env(documents)
    for name in (
        "KVBACKUP_HEALTH_PORT",
        "KVBACKUP_METRICS_PORT",
        "KVBACKUP_RETRY_BASE_SECONDS",
        "KVBACKUP_RETRY_MAX_SECONDS",
        *emulator_hosts(),
    ):
        env.pop(name)
    return env | lowkey.operator_env()


def forbidden_lines(log: str, namespaces: Collection[str]) -> list[str]:
    """Refusals in the log: any of the API server's to the operator's ServiceAccount, and
    any met by an object in ``namespaces``. A cluster-wide operator also serves other tests'
    objects, some of which are meant to be refused by their storage."""

    def refused(line: str) -> bool:
        # A word match: object uids in the log may contain the digits 403; and the
        # timestamp opening each line is left out, as its milliseconds may be 403.
        text = re.sub(r"^\[[^]]*\]", "", line)
        if "system:serviceaccount:" in text:
            return True
        of_object = re.search(r"\[([a-z0-9-]+)/[^]]+\]", text)
        ours = of_object is None or of_object.group(1) in namespaces
        return ours and re.search(r"\b403\b|Forbidden", text) is not None

    return [line for line in log.splitlines() if refused(line)]


def _keybackup(name: str) -> str:
    vault = f"https://127.0.0.1:{free_port()}"
    return (
        f"apiVersion: kvbackup.io/v1alpha1\nkind: KeyBackup\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vaultUrl: {vault}\n  keys: {{names: [app-key]}}\n"
    )


def _keyrestore(name: str, keybackup: str) -> str:
    vault = f"https://127.0.0.1:{free_port()}"
    return (
        f"apiVersion: kvbackup.io/v1alpha1\nkind: KeyRestore\nmetadata: {{name: {name}}}\n"
        f"spec:\n  vaultUrl: {vault}\n  source: {{keyBackupRef: {{name: {keybackup}}}}}\n"
    )


#: The status of an object no operator has written to: the CRDs' default.
UNSEEN = {"observedGeneration": -1}


def prove_the_operator_works(
    start: Callable[[], OperatorProcess],
    cluster: Cluster,
    vault: VaultUnderTest,
    outside: Cluster | None = None,
) -> OperatorProcess:
    """In ``cluster``, by the operator that ``start`` starts: a failing backup and a failing
    restore reported, and the disaster-recovery round trip against ``vault``; an object in
    ``outside`` stays untouched."""
    cluster.apply(_keybackup("unreachable"))
    cluster.apply(_keyrestore("from-nothing", "gone"))
    if outside is not None:
        outside.apply(_keybackup("not-mine"))
    time.sleep(3)
    # No other operator serves these namespaces: whatever is written next is this one's.
    assert cluster.status("keybackup", "unreachable") == UNSEEN
    assert cluster.status("keyrestore", "from-nothing") == UNSEEN
    operator = start()
    cluster.wait_until(
        "the KeyBackup is Ready=False with reason VaultUnreachable",
        lambda: (
            cluster.ready_condition("keybackup", "unreachable").get("reason") == "VaultUnreachable"
        ),
    )
    cluster.wait_until(
        "the KeyRestore is Ready=False with reason SourceNotFound",
        lambda: (
            cluster.ready_condition("keyrestore", "from-nothing").get("reason") == "SourceNotFound"
        ),
    )
    assert cluster.ready_condition("keybackup", "unreachable")["status"] == "False"
    reasons = {event["reason"] for event in cluster.events_for("unreachable")}
    assert "VaultUnreachable" in reasons, reasons
    log = operator.log()
    assert "restore failed: SourceNotFound after" in log
    assert "no complete snapshot of KeyBackup gone" in log

    originals = vault.create_rsa_key("signing", versions=3)
    cluster.apply(keybackup("round-trip", vault.url, keys=["signing"]))
    cluster.wait_for_phase("keybackup", "round-trip", "Succeeded")
    vault.delete_and_purge("signing")
    cluster.apply(keyrestore("round-trip", vault.url, keybackup="round-trip"))
    cluster.wait_for_phase("keyrestore", "round-trip", "Succeeded")
    assert vault.version_ids("signing") == originals

    if outside is not None:
        assert outside.status("keybackup", "not-mine") == UNSEEN
        assert outside.events_for("not-mine") == []
    return operator


@pytest.fixture
def operators() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        process.stop()


# --- rendering and linting ---------------------------------------------------------


def test_the_chart_passes_helm_lint_with_default_and_non_default_values(helm: Path) -> None:
    _run_helm(helm, "lint", "--strict", str(CHART))
    _run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        values={
            "watchNamespaces": ["team-a", "team-b"],
            "networkPolicy": {"enabled": True},
            "workloadIdentity": {"enabled": True, "clientId": "c"},
        },
    )


def test_the_charts_crds_are_byte_identical_to_the_repositorys_crds() -> None:
    ours = sorted(path.name for path in (REPO / "crds").glob("*.yaml"))
    theirs = sorted(path.name for path in CHART_CRDS.iterdir())
    assert ours == theirs
    for name in ours:
        assert (CHART_CRDS / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/kvbackup-operator/files/crds/{name} differs from crds/{name}: copy it again"
        )
    # Helm would install a crds/ folder once and never upgrade it, beside the templates.
    assert not (CHART / "crds").exists()


def test_the_crds_render_as_in_their_files_kept_on_uninstall_unless_told_otherwise(
    helm: Path,
) -> None:
    rendered = find(render(helm, "ops", {}), "CustomResourceDefinition")
    by_name = {crd["metadata"]["name"]: crd for crd in rendered}
    assert sorted(by_name) == ["keybackups.kvbackup.io", "keyrestores.kvbackup.io"]
    for name, crd in by_name.items():
        written = yaml.safe_load((CHART_CRDS / f"{name}.yaml").read_text())
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in written.items() if k != "metadata"
        }
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

    unkept = find(render(helm, "ops", {"crds": {"keep": False}}), "CustomResourceDefinition")
    assert [crd["metadata"].get("annotations") for crd in unkept] == [None, None]
    assert find(render(helm, "ops", {"crds": {"enabled": False}}), "CustomResourceDefinition") == []


#: The Kubernetes minor version that first accepts (by default) each CRD feature the CRDs
#: may use: a feature missing here fails the test below until its version is looked up.
CRD_FEATURE_SINCE = {
    "x-kubernetes-validations": 25,  # CEL validation rules, beta and on by default
    "rule": 25,
    "message": 25,
    "messageExpression": 27,
    "reason": 28,
    "fieldPath": 28,
    "optionalOldSelf": 30,
    "selectableFields": 31,
}


def _crd_features(node: Any) -> Iterator[str]:
    """The CRD features of CRD_FEATURE_SINCE a CRD document uses, with each validation
    rule's own fields."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "x-kubernetes-validations":
                yield key
                for rule in value:
                    yield from rule
            elif key == "selectableFields":
                yield key
            else:
                yield from _crd_features(value)
    elif isinstance(node, list):
        for item in node:
            yield from _crd_features(item)


def test_the_charts_kube_version_is_the_oldest_that_accepts_every_crd_feature_used() -> None:
    used = {
        feature
        for path in sorted(CHART_CRDS.glob("*.yaml"))
        for feature in _crd_features(yaml.safe_load(path.read_text()))
    }
    unknown = used - set(CRD_FEATURE_SINCE)
    assert unknown == set(), f"add to CRD_FEATURE_SINCE the version that brought {unknown}"
    assert "fieldPath" in used  # the KeyRestore's purgeDeletedKeys rule
    oldest = max(CRD_FEATURE_SINCE[feature] for feature in used)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">=1.{oldest}.0-0"


CRD_NAMES = ("keybackups.kvbackup.io", "keyrestores.kvbackup.io")


def _crd(plane: ControlPlane, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(plane.kubectl("get", "crd", name, "-o", "json").stdout)
    return document


def test_helm_adopts_applied_crds_upgrades_them_and_leaves_them_and_their_objects_on_uninstall(
    helm: Path, control_plane: ControlPlane, namespace: str, cluster: Cluster, tmp_path: Path
) -> None:
    """The CRDs as the test cluster has them, applied with kubectl (as from the chart's old
    crds/ folder): Helm refuses to take them over until the README's label and annotations
    say whose they are; then upgrades change them, and uninstalling keeps them."""
    # The test API server, built from source, says it is v0.0.0-master, which no
    # kubeVersion admits (the render test below checks the chart's): copies without it.
    chart, upgraded = tmp_path / "installed", tmp_path / "upgraded"
    for copy in (chart, upgraded):
        shutil.copytree(CHART, copy)
        metadata = copy / "Chart.yaml"
        metadata.write_text(re.sub(r"(?m)^kubeVersion:.*\n", "", metadata.read_text()))
    # The next chart version's CRDs, which the upgrade applies.
    crd_file = upgraded / "files" / "crds" / "keybackups.kvbackup.io.yaml"
    document = yaml.safe_load(crd_file.read_text())
    (version,) = document["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["description"] = "Upgraded by helm upgrade."
    crd_file.write_text(yaml.safe_dump(document))

    release = unique_release()
    kubeconfig = ("--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace)
    install = [str(helm), "install", release, str(chart), *kubeconfig]
    refused = subprocess.run(install, capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr

    control_plane.kubectl(
        "label", "crd", *CRD_NAMES, "app.kubernetes.io/managed-by=Helm", "--overwrite"
    )
    control_plane.kubectl(
        "annotate",
        "crd",
        *CRD_NAMES,
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
        "--overwrite",
    )
    _run_helm(helm, "install", release, str(chart), *kubeconfig)
    for name in CRD_NAMES:
        assert _crd(control_plane, name)["metadata"]["annotations"]["helm.sh/resource-policy"] == (
            "keep"
        )
    cluster.apply(_keybackup("kept"))

    _run_helm(helm, "upgrade", release, str(upgraded), *kubeconfig)
    (served,) = _crd(control_plane, "keybackups.kvbackup.io")["spec"]["versions"]
    assert served["schema"]["openAPIV3Schema"]["description"] == "Upgraded by helm upgrade."
    _run_helm(helm, "upgrade", release, str(chart), *kubeconfig)
    (served,) = _crd(control_plane, "keybackups.kvbackup.io")["spec"]["versions"]
    assert served["schema"]["openAPIV3Schema"]["description"] != "Upgraded by helm upgrade."

    uninstalled = _run_helm(helm, "uninstall", release, *kubeconfig)
    assert "kept due to the resource policy" in uninstalled
    for name in CRD_NAMES:
        assert _crd(control_plane, name)["metadata"]["name"] == name
    assert cluster.get("keybackup", "kept")["metadata"]["name"] == "kept"


def test_helm_refuses_to_render_the_chart_for_a_kubernetes_older_than_its_crds_need(
    helm: Path,
) -> None:
    _run_helm(helm, "template", "r", str(CHART), "--kube-version", "1.28.0")
    older = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--kube-version", "1.27.9"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert older.returncode != 0
    assert "chart requires kubeVersion: >=1.28.0-0" in older.stderr


def test_the_charts_default_image_is_the_one_make_image_builds(helm: Path) -> None:
    (deployment,) = find(render(helm, "kvbackup", {}), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "image.sh"), "ref"], check=True, capture_output=True, text=True
    )
    assert container["image"] == built.stdout.strip()


def test_default_values_render_objects_the_api_server_accepts(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    documents = render(helm, namespace, {}, release=unique_release())
    assert {d["kind"] for d in documents} == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",  # on the replicas' Lease, in the release namespace
        "RoleBinding",
        "Deployment",
        "Service",
    }
    assert not find(documents, "NetworkPolicy")
    assert "KVBACKUP_WATCH_NAMESPACES" not in deployment_env(documents)
    dry_run_server(control_plane, documents)


def test_watched_namespaces_render_a_role_per_namespace_the_api_server_accepts(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    team_a, team_b = own_namespace(control_plane), own_namespace(control_plane)
    documents = render(
        helm, namespace, {"watchNamespaces": [team_a, team_b]}, release=unique_release()
    )
    # A Role and RoleBinding in each watched namespace, and the Lease's in the release's.
    watched = sorted([team_a, team_b, namespace])
    roles = find(documents, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == watched
    assert sorted(b["metadata"]["namespace"] for b in find(documents, "RoleBinding")) == watched
    (discovery,) = [
        role
        for role in find(documents, "ClusterRole")
        if role["metadata"]["name"].endswith("-discovery")
    ]
    assert {r for rule in discovery["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert deployment_env(documents)["KVBACKUP_WATCH_NAMESPACES"] == f"{team_a},{team_b}"
    dry_run_server(control_plane, documents)


def test_the_network_policy_renders_and_the_api_server_accepts_it(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    documents = render(
        helm,
        namespace,
        {
            "networkPolicy": {
                "enabled": True,
                "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
                "extraEgress": [
                    {
                        "to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}],
                        "ports": [{"protocol": "TCP", "port": 80}],
                    }
                ],
            }
        },
        release=unique_release(),
    )
    (policy,) = find(documents, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8080}]},
        {"ports": [{"protocol": "TCP", "port": 8081}]},
    ]
    egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["spec"]["egress"]]
    assert egress_ports == [[6443], [443], [53, 53], [80]]
    assert policy["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    dry_run_server(control_plane, documents)


def test_a_workload_identity_client_id_annotates_the_service_account_and_labels_the_pod(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    client_id = str(uuid.uuid4())
    documents = render(
        helm,
        namespace,
        {"workloadIdentity": {"enabled": True, "clientId": client_id, "tenantId": "contoso"}},
        release=unique_release(),
    )
    (account,) = find(documents, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": client_id,
        "azure.workload.identity/tenant-id": "contoso",
    }
    (deployment,) = find(documents, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    dry_run_server(control_plane, documents)


def test_a_ca_bundle_configmap_is_mounted_read_only_and_named_in_the_settings(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    documents = render(
        helm,
        namespace,
        {"settings": {"caBundle": {"configMapName": "corp-ca", "key": "bundle.pem"}}},
        release=unique_release(),
    )
    (deployment,) = find(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ca-bundle"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ca-bundle"]
    assert volume["configMap"]["name"] == "corp-ca"
    path = deployment_env(documents)["KVBACKUP_CA_BUNDLE"]
    assert path == f"{mount['mountPath']}/bundle.pem"
    dry_run_server(control_plane, documents)


def test_a_proxy_is_set_with_what_bypasses_it_and_none_by_default(helm: Path) -> None:
    proxied = deployment_env(
        render(helm, "ops", {"proxy": {"httpsProxy": "http://proxy.corp:3128"}})
    )
    plain = deployment_env(render(helm, "ops", {}))

    assert proxied["HTTPS_PROXY"] == "http://proxy.corp:3128"
    bypassed = proxied["NO_PROXY"].split(",")
    assert bypassed[0] == "$(KUBERNETES_SERVICE_HOST)"  # the API server's address, in the pod
    assert "169.254.169.254" in bypassed
    assert "HTTP_PROXY" not in proxied
    assert not {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"} & set(plain)


def test_the_operator_pod_meets_the_restricted_pod_security_standard(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    documents = render(helm, namespace, {}, release=unique_release())
    (deployment,) = find(documents, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert find(documents, "PodDisruptionBudget") == []  # one replica: nothing to keep up
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]

    # The API server's PodSecurity admission, enforcing "restricted", admits the pod.
    restricted = own_namespace(control_plane, "restricted")
    control_plane.kubectl(
        "label", "namespace", restricted, "pod-security.kubernetes.io/enforce=restricted"
    )
    pod_object: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kvbackup-operator", "namespace": restricted},
        "spec": {**pod, "serviceAccountName": "default"},
    }
    result = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod_object), check=False
    )
    assert result.returncode == 0, result.stderr
    # ...where a pod that may escalate its privileges is refused, so the check is real.
    pod_object["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod_object), check=False
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


def test_every_operator_setting_is_a_chart_value_the_operator_accepts(helm: Path) -> None:
    config = (REPO / "operator" / "kvbackup" / "config.py").read_text()
    known = set(re.findall(r'"(KVBACKUP_[A-Z_]+)"', config)) - {FORMER_CONCURRENCY_SETTING}
    documents = render(
        helm,
        "ops",
        {
            "watchNamespaces": ["team-a", "team-b"],
            "defaultIdentity": {
                "rules": [
                    {"namespaces": ["team-a"], "vaultUrls": ["https://a.vault.azure.net"]},
                    {"namespaces": ["team-*"], "vaultUrls": ["https://shared-*.vault.azure.net"]},
                ]
            },
            "settings": {
                "caBundle": {"configMapName": "corp-ca"},
                "verifyChallengeResource": False,
                "keyvaultApiVersion": "7.6",
                "maxVaultCalls": 4,
                "keysPerRun": 6,
                "vaultRateLimit": 12.5,
                "retryBaseSeconds": 0.5,
                "retryMaxSeconds": 120,
                "incompleteSnapshotGraceSeconds": 7200,
                "statusKeysLimit": 20,
                "logFormat": "json",
                "healthPort": 9090,
                "metricsPort": 9464,
                "metricsAddress": "127.0.0.1",
                "leaderElectionLeaseSeconds": 30,
                "vaultHosts": ["*.vault.azure.net", "vaults.example.internal:8443"],
                "blobHosts": ["*.blob.core.windows.net"],
            },
        },
    )
    env = deployment_env(documents)
    assert known <= set(env), f"settings the chart cannot set: {sorted(known - set(env))}"

    settings = Settings.from_env(env)  # the operator's own parser accepts every value
    assert settings.watch_namespaces == ("team-a", "team-b")
    assert settings.ca_bundle == "/etc/kvbackup/ca-bundle/ca.crt"
    assert settings.verify_challenge_resource is False
    assert settings.keyvault_api_version == "7.6"
    assert (settings.max_vault_calls, settings.keys_per_run) == (4, 6)
    assert settings.vault_rate_limit == 12.5
    assert settings.retry_base_seconds == 0.5
    assert settings.retry_max_seconds == 120
    assert settings.incomplete_snapshot_grace_seconds == 7200
    assert settings.status_keys_limit == 20
    assert settings.log_format == "json"
    assert settings.health_port == 9090
    assert settings.metrics_port == 9464
    assert settings.metrics_address == "127.0.0.1"
    assert settings.leader_election_namespace == "ops"
    assert settings.leader_election_lease == "kvb-kvbackup-operator"
    assert settings.leader_election_lease_seconds == 30
    assert str(settings.vault_hosts) == "*.vault.azure.net,vaults.example.internal:8443"
    assert str(settings.blob_hosts) == "*.blob.core.windows.net"
    rules = settings.default_identity_rules
    assert [(r.namespaces, tuple(p.text for p in r.vault_urls)) for r in rules] == [
        (("ops",), ("*",)),  # the release's own namespace, by default
        (("team-a",), ("https://a.vault.azure.net",)),
        (("team-*",), ("https://shared-*.vault.azure.net",)),
    ]

    defaults = Settings.from_env(deployment_env(render(helm, "ops", {})))
    # The chart's defaults are the operator's, but for the release's own namespace, whose
    # objects may use the operator's identity, and the Lease its replicas elect by.
    assert defaults == Settings(
        default_identity_rules=defaults.default_identity_rules,
        leader_election_namespace="ops",
        leader_election_lease="kvb-kvbackup-operator",
    )


def _identity_rules(helm: Path, values: dict[str, Any]) -> tuple[IdentityRule, ...]:
    return Settings.from_env(deployment_env(render(helm, "ops", values))).default_identity_rules


def test_by_default_only_the_release_namespace_may_use_the_operators_identity(
    helm: Path,
) -> None:
    rules = _identity_rules(helm, {})

    assert vault_allowed(rules, "ops", "https://any.vault.azure.net")
    assert blob_allowed(rules, "ops", "https://acct.blob.core.windows.net", "c")
    assert not vault_allowed(rules, "team-a", "https://any.vault.azure.net")
    assert not blob_allowed(rules, "team-a", "https://acct.blob.core.windows.net", "c")
    # Not even the release namespace restores another namespace's snapshots without a rule.
    assert not any(
        rule.allows_restore_from("ops", "https://acct.blob.core.windows.net/c", "team-a")
        for rule in rules
    )
    assert _identity_rules(helm, {"defaultIdentity": {"releaseNamespace": False}}) == ()


def test_one_value_lets_every_namespace_of_a_single_tenant_cluster_use_the_identity(
    helm: Path,
) -> None:
    rules = _identity_rules(helm, {"defaultIdentity": {"allNamespaces": True}})

    assert vault_allowed(rules, "team-a", "https://any.vault.azure.net")
    assert blob_allowed(rules, "team-a", "https://acct.blob.core.windows.net", "c")
    # One tenant: a namespace may restore another's snapshots, e.g. into a renamed one.
    assert any(
        rule.allows_restore_from("team-a", "https://acct.blob.core.windows.net/c", "team-b")
        for rule in rules
    )


def test_a_rules_grant_to_restore_other_namespaces_passes_the_schema_into_the_setting(
    helm: Path,
) -> None:
    rule = {
        "namespaces": ["team-a"],
        "vaultUrls": [],
        "blobUrls": ["https://acct.blob.core.windows.net/shared"],
        "restoreFromNamespaces": ["team-b"],
    }
    (release_rule, parsed) = _identity_rules(helm, {"defaultIdentity": {"rules": [rule]}})

    assert parsed.restore_from_namespaces == ("team-b",)
    assert release_rule.restore_from_namespaces == ()


def _value_paths(values: Any, schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Each value's dotted path, down to the leaves or to a free-form Kubernetes type
    (``resources``, ``affinity``...), which the schema leaves open; fails on a value the
    schema does not declare."""
    properties = schema.get("properties")
    if not isinstance(values, dict) or not values or properties is None:
        yield prefix
        return
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        assert key in properties, f"{path} is not in values.schema.json"
        yield from _value_paths(value, properties[key], path)


def test_every_value_is_in_the_schema_and_documented_in_the_chart_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    paths = list(_value_paths(values, schema))
    assert "settings.caBundle.configMapName" in paths
    undocumented = [path for path in paths if f"`{path}`" not in readme]
    assert undocumented == [], "values missing from the chart README"


def test_two_replicas_render_a_disruption_budget_and_a_lease_only_they_may_renew(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    release = unique_release()
    documents = render(helm, namespace, {"replicaCount": 2}, release=release)
    (deployment,) = find(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    (budget,) = find(documents, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    (role,) = [r for r in find(documents, "Role") if r["metadata"]["name"].endswith("-election")]
    assert role["metadata"]["namespace"] == namespace
    lease = f"{release}-kvbackup-operator"
    assert role["rules"][1] == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": [lease],
        "verbs": ["get", "update"],
    }
    assert deployment_env(documents)["KVBACKUP_LEADER_ELECTION_LEASE"] == lease
    dry_run_server(control_plane, documents)


def test_the_schema_refuses_unknown_values_and_a_negative_replica_count(helm: Path) -> None:
    for values, complaint in (
        ({"monitoring": {"enabled": True}}, "additional properties 'monitoring' not allowed"),
        (
            {"metrics": {"serviceMonitor": {"enable": True}}},
            "additional properties 'enable' not allowed",
        ),
        ({"metrics": {"prometheusRule": {"keyVaultThrottled": {"share": 2}}}}, "share"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"settings": {"leaderElectionLeaseSeconds": 1}}, "leaderElectionLeaseSeconds"),
        ({"defaultIdentity": {"rules": [{"namespaces": ["a"]}]}}, "vaultUrls"),
        (
            {"defaultIdentity": {"rules": [{"namespaces": ["a"], "vaultUrls": ["a-*.vault"]}]}},
            "does not match pattern",
        ),
        ({"settings": {"maxVaultCalls": 0}}, "maxVaultCalls"),
    ):
        result = subprocess.run(
            [str(helm), "template", "r", str(CHART), "--values", "-"],
            input=json.dumps(values),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0, values
        assert complaint in result.stderr, result.stderr


# --- metrics: the Service, the ServiceMonitor and the alert rules ---------------------


@pytest.fixture(scope="session")
def monitoring_crds(control_plane: ControlPlane) -> None:
    """The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, as published,
    installed into the test API server so it validates the chart's objects of those kinds."""
    control_plane.kubectl("apply", "--server-side", "-f", str(cached_by("monitoring-crds.sh")))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )


MONITORED = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {
            "enabled": True,
            "labels": {"role": "alert-rules"},
            "keyBackupTooOld": {"maxAgeSeconds": 93600},
        },
    }
}


def test_a_metrics_service_reaches_the_operators_metrics_port_by_default(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    documents = render(helm, namespace, {}, release=unique_release())
    assert deployment_env(documents)["KVBACKUP_METRICS_PORT"] == "8081"
    (deployment,) = find(documents, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    (service,) = find(documents, "Service")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    # Both need the Prometheus Operator's CRDs, so they are off unless asked for.
    assert find(documents, "ServiceMonitor") == find(documents, "PrometheusRule") == []
    dry_run_server(control_plane, documents)


def test_the_service_monitor_and_the_alert_rules_are_accepted_by_the_api_server(
    helm: Path, control_plane: ControlPlane, namespace: str, monitoring_crds: None
) -> None:
    documents = render(helm, namespace, MONITORED, release=unique_release())
    dry_run_server(control_plane, documents)

    (service,) = find(documents, "Service")
    (monitor,) = find(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [namespace]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # The series' own namespace label is the KeyBackup's, not the operator's.
    assert endpoint["honorLabels"] is True

    (rule,) = find(documents, "PrometheusRule")
    assert rule["metadata"]["labels"]["role"] == "alert-rules"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "KeyBackupTooOld",
        "KeyBackupFailing",
        "KeyBackupCopyFailing",
        "KeyBackupVerificationFailed",
        "KeyBackupUnprotectedItems",
        "KeyVaultThrottled",
        "KeyBackupOperatorDown",
    }
    assert "2 * kvbackup_keybackup_schedule_interval_seconds" in alerts["KeyBackupTooOld"]["expr"]
    assert "> 93600" in alerts["KeyBackupTooOld"]["expr"]

    # The validation is real: a ServiceMonitor with a malformed interval is refused.
    monitor["spec"]["endpoints"][0]["interval"] = "soon"
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(monitor), check=False
    )
    assert result.returncode != 0
    assert "spec.endpoints[0].interval" in result.stderr


def test_without_a_max_age_the_too_old_alert_compares_with_the_schedule_alone(
    helm: Path,
) -> None:
    documents = render(helm, "ops", {"metrics": {"prometheusRule": {"enabled": True}}})
    (rule,) = find(documents, "PrometheusRule")
    (too_old,) = [r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "KeyBackupTooOld"]
    assert " or" not in too_old["expr"]


@pytest.fixture(scope="session")
def promtool(pytestconfig: pytest.Config) -> Path:
    with on_the_terminal(pytestconfig):
        return cached_by("build-promtool.sh") / "promtool"


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """One input series of a promtool rule test."""
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


#: Where the alerts' runbook_url annotations point by default.
RUNBOOK = "https://github.com/kvbackup/kvbackup/blob/main/README.md"


def _too_old(namespace: str, name: str, age: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "critical", "namespace": namespace, "name": name},
        "exp_annotations": {
            "runbook_url": f"{RUNBOOK}#keybackuptooold",
            "summary": f"KeyBackup {namespace}/{name} has no recent successful backup",
            "description": f"The last successful backup of KeyBackup {namespace}/{name} "
            f"completed {age} ago. See kubectl describe keybackup -n {namespace} {name}.",
        },
    }


THROTTLED_DESCRIPTION = (
    "10% of the operator's calls to busy were answered 429 (Too Many Requests). Runs go on "
    "more slowly; lower KVBACKUP_VAULT_RATE_LIMIT or spread the schedules of its KeyBackups."
)
OPERATOR_DOWN = {
    "exp_labels": {"severity": "critical"},
    "exp_annotations": {
        "runbook_url": f"{RUNBOOK}#keybackupoperatordown",
        "summary": "No replica of the kvbackup operator leads",
        "description": "No replica of the kvbackup operator in namespace ops has led for 5m: "
        "no backup, schedule or restore runs. Either none runs or Prometheus scrapes none "
        "(kubectl get pods -n ops), or none can hold its Lease (kubectl get lease -n ops, "
        "and the replicas' logs).",
    },
}
#: KeyBackupOperatorDown: two replicas that both stand by, none scraped at all, and a
#: hand-over with a minute in which neither leads.
LEADER_CASES: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [
            series("kvbackup_leader", "0x30", instance="r1"),
            series("kvbackup_leader", "0x30", instance="r2"),
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "KeyBackupOperatorDown", "exp_alerts": []},
            {
                "eval_time": "6m",
                "alertname": "KeyBackupOperatorDown",
                "exp_alerts": [OPERATOR_DOWN],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [series("up", "0x30", job="kvbackup-operator")],
        "alert_rule_test": [
            {
                "eval_time": "6m",
                "alertname": "KeyBackupOperatorDown",
                "exp_alerts": [OPERATOR_DOWN],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            series("kvbackup_leader", "1x10 0x20", instance="r1"),
            series("kvbackup_leader", "0x11 1x20", instance="r2"),
        ],
        "alert_rule_test": [
            {"eval_time": "11m", "alertname": "KeyBackupOperatorDown", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "KeyBackupOperatorDown", "exp_alerts": []},
        ],
    },
]


def _hand_over_case(old_leader_keeps_its_series: bool) -> dict[str, Any]:
    """KeyBackupTooOld over a daily KeyBackup that last succeeded at 0, shown by replica r1
    until it hands over at minute 60 and by r2 from then on; with ``old_leader_keeps_its_series``
    r1 goes on showing it too, as replicas did before they dropped their series."""
    old = "0x5000" if old_leader_keeps_its_series else "0x59 stale"
    old_interval = "86400x5000" if old_leader_keeps_its_series else "86400x59 stale"
    last_success = "kvbackup_keybackup_last_success_timestamp_seconds"
    interval = "kvbackup_keybackup_schedule_interval_seconds"
    return {
        "interval": "1m",
        "input_series": [
            series(last_success, old, namespace="a", name="daily", instance="r1"),
            series(interval, old_interval, namespace="a", name="daily", instance="r1"),
            series(last_success, "_x60 0x5000", namespace="a", name="daily", instance="r2"),
            series(interval, "_x60 86400x5000", namespace="a", name="daily", instance="r2"),
        ],
        "alert_rule_test": [
            {"eval_time": "47h", "alertname": "KeyBackupTooOld", "exp_alerts": []},
            {
                "eval_time": "48h12m",
                "alertname": "KeyBackupTooOld",
                # One alert, labelled by the KeyBackup alone: whichever replica shows it.
                "exp_alerts": [_too_old("a", "daily", "2d 0h 12m 0s")],
            },
        ],
    }


def _alert(anchor: str, summary: str, description: str, **labels: str) -> Any:
    return {
        "exp_labels": labels,
        "exp_annotations": {
            "runbook_url": f"{RUNBOOK}#{anchor}",
            "summary": summary,
            "description": description,
        },
    }


#: KeyBackupCopyFailing, KeyBackupVerificationFailed and KeyBackupUnprotectedItems.
COPY_AND_VERIFICATION_CASES: list[dict[str, Any]] = [
    {
        # Copy "offsite" of a/nightly fails from minute 2 on; copy "dr" never does.
        "interval": "1m",
        "input_series": [
            series(
                "kvbackup_keybackup_copy_failing",
                "0 0 1x60",
                namespace="a",
                name="nightly",
                copy="offsite",
            ),
            series(
                "kvbackup_keybackup_copy_failing", "0x60", namespace="a", name="nightly", copy="dr"
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "16m", "alertname": "KeyBackupCopyFailing", "exp_alerts": []},
            {
                "eval_time": "18m",
                "alertname": "KeyBackupCopyFailing",
                "exp_alerts": [
                    _alert(
                        "keybackupcopyfailing",
                        "Copy offsite of KeyBackup a/nightly lacks the latest snapshot",
                        "The latest snapshot of KeyBackup a/nightly could not be written to its "
                        "copy offsite; its CopiesComplete condition and CopyFailed Events say why "
                        "(kubectl describe keybackup -n a nightly).",
                        severity="warning",
                        namespace="a",
                        name="nightly",
                        copy="offsite",
                    )
                ],
            },
        ],
    },
    {
        # "damaged"'s verification at minute 3 finds a problem; "sound"'s finds none.
        "interval": "1m",
        "input_series": [
            series(
                "kvbackup_keybackup_verification_failing",
                "0 0 0 1x60",
                namespace="a",
                name="damaged",
            ),
            series("kvbackup_keybackup_verification_failing", "0x60", namespace="a", name="sound"),
        ],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "KeyBackupVerificationFailed", "exp_alerts": []},
            {
                "eval_time": "3m",
                "alertname": "KeyBackupVerificationFailed",
                "exp_alerts": [
                    _alert(
                        "keybackupverificationfailed",
                        "Verification of KeyBackup a/damaged found damaged snapshots",
                        "The latest verification of KeyBackup a/damaged found backups missing, "
                        "tampered with or unreadable; status.verification.findings names each "
                        "(kubectl get keybackup -n a damaged -o yaml).",
                        severity="critical",
                        namespace="a",
                        name="damaged",
                    )
                ],
            },
        ],
    },
    {
        # "lagging" has had 2 unprotected items since time 0; "caught-up" had some for an
        # hour, then none; "fresh" has had some for an hour only.
        "interval": "10m",
        "input_series": [
            series("kvbackup_unprotected_items", "2x200", namespace="a", name="lagging"),
            series(
                "kvbackup_keybackup_unprotected_since_timestamp_seconds",
                "0x200",
                namespace="a",
                name="lagging",
            ),
            series("kvbackup_unprotected_items", "3x6 0x200", namespace="a", name="caught-up"),
            series(
                "kvbackup_keybackup_unprotected_since_timestamp_seconds",
                "0x6 _x200",
                namespace="a",
                name="caught-up",
            ),
            series("kvbackup_unprotected_items", "_x150 1x50", namespace="a", name="fresh"),
            series(
                "kvbackup_keybackup_unprotected_since_timestamp_seconds",
                "_x150 90000x50",
                namespace="a",
                name="fresh",
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "23h", "alertname": "KeyBackupUnprotectedItems", "exp_alerts": []},
            {
                "eval_time": "25h",
                "alertname": "KeyBackupUnprotectedItems",
                "exp_alerts": [
                    _alert(
                        "keybackupunprotecteditems",
                        "KeyBackup a/lagging leaves vault items unprotected",
                        "2 item(s) of the vault of KeyBackup a/lagging are in no snapshot, or have "
                        "versions none holds, and verifications have found such items for a while; "
                        "status.verification.unprotected names them.",
                        severity="warning",
                        namespace="a",
                        name="lagging",
                    )
                ],
            },
        ],
    },
]


#: promtool's rule unit tests: series from minute 0 (time() counts from 0 too), and the
#: alerts expected at chosen times.
ALERT_CASES: dict[str, Any] = {
    "evaluation_interval": "1m",
    "tests": [
        {
            # "daily" succeeded at 0 and is scheduled every 24h; "unscheduled" succeeded
            # at 0 too, with no schedule, so only the 3-day maximum age applies to it.
            "interval": "1m",
            "input_series": [
                series(
                    "kvbackup_keybackup_last_success_timestamp_seconds",
                    "0x5000",
                    namespace="a",
                    name="daily",
                ),
                series(
                    "kvbackup_keybackup_schedule_interval_seconds",
                    "86400x5000",
                    namespace="a",
                    name="daily",
                ),
                series(
                    "kvbackup_keybackup_last_success_timestamp_seconds",
                    "0x5000",
                    namespace="a",
                    name="unscheduled",
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "47h", "alertname": "KeyBackupTooOld", "exp_alerts": []},
                # Older than 2 x 24h from 48h1m on, for 10m: pending until 48h11m.
                {"eval_time": "48h5m", "alertname": "KeyBackupTooOld", "exp_alerts": []},
                {
                    "eval_time": "48h12m",
                    "alertname": "KeyBackupTooOld",
                    "exp_alerts": [_too_old("a", "daily", "2d 0h 12m 0s")],
                },
                {
                    "eval_time": "72h12m",
                    "alertname": "KeyBackupTooOld",
                    "exp_alerts": [
                        _too_old("a", "daily", "3d 0h 12m 0s"),
                        _too_old("a", "unscheduled", "3d 0h 12m 0s"),
                    ],
                },
            ],
        },
        {
            # "broken" fails from minute 2 on; "fine" never does.
            "interval": "1m",
            "input_series": [
                series("kvbackup_keybackup_failing", "0 0 1x60", namespace="a", name="broken"),
                series("kvbackup_keybackup_failing", "0x60", namespace="a", name="fine"),
            ],
            "alert_rule_test": [
                {"eval_time": "16m", "alertname": "KeyBackupFailing", "exp_alerts": []},
                {
                    "eval_time": "18m",
                    "alertname": "KeyBackupFailing",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "namespace": "a",
                                "name": "broken",
                            },
                            "exp_annotations": {
                                "runbook_url": f"{RUNBOOK}#keybackupfailing",
                                "summary": "KeyBackup a/broken is failing",
                                "description": "The runs of KeyBackup a/broken have been failing "
                                "or partially failing for a while; its Ready condition and Events "
                                "say why (kubectl describe keybackup -n a broken).",
                            },
                        }
                    ],
                },
            ],
        },
        {
            # One call in ten to "busy" is answered 429 (over 5 %), one in a hundred to "calm";
            # a vault's calls count together, whatever the operation and kind of item.
            "interval": "1m",
            "input_series": [
                series(
                    "kvbackup_keyvault_calls_total",
                    "0+90x60",
                    vault="busy",
                    operation="backup",
                    kind="key",
                    code="2xx",
                ),
                series(
                    "kvbackup_keyvault_calls_total",
                    "0+10x60",
                    vault="busy",
                    operation="backup",
                    kind="secret",
                    code="429",
                ),
                series(
                    "kvbackup_keyvault_calls_total",
                    "0+99x60",
                    vault="calm",
                    operation="backup",
                    kind="certificate",
                    code="2xx",
                ),
                series(
                    "kvbackup_keyvault_calls_total",
                    "0+1x60",
                    vault="calm",
                    operation="list",
                    kind="key",
                    code="429",
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "KeyVaultThrottled", "exp_alerts": []},
                {
                    "eval_time": "30m",
                    "alertname": "KeyVaultThrottled",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "warning", "vault": "busy"},
                            "exp_annotations": {
                                "runbook_url": f"{RUNBOOK}#keyvaultthrottled",
                                "summary": "Key Vault busy throttles the kvbackup operator",
                                "description": THROTTLED_DESCRIPTION,
                            },
                        }
                    ],
                },
            ],
        },
        *LEADER_CASES,
        _hand_over_case(old_leader_keeps_its_series=False),
        *COPY_AND_VERIFICATION_CASES,
    ],
}


def _rule_file(helm: Path, tmp_path: Path) -> Path:
    """The chart's alert rules, as a Prometheus rule file."""
    values = {
        "metrics": {
            "prometheusRule": {"enabled": True, "keyBackupTooOld": {"maxAgeSeconds": 259200}}
        }
    }
    (rule,) = find(render(helm, "ops", values), "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return rules


def _promtool_test(
    promtool: Path, rules: Path, tmp_path: Path, cases: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    written = tmp_path / "cases.yaml"
    written.write_text(yaml.safe_dump({"rule_files": [str(rules)], **cases}))
    return subprocess.run(
        [str(promtool), "test", "rules", str(written)], capture_output=True, text=True, check=False
    )


def test_the_alert_rules_pass_promtool_and_fire_when_and_only_when_they_should(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    rules = _rule_file(helm, tmp_path)
    checked = subprocess.run(
        [str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout

    tested = _promtool_test(promtool, rules, tmp_path, ALERT_CASES)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_too_old_alert_cannot_join_two_replicas_series_of_one_keybackup(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    """Why a replica that stops leading drops its series: were both replicas to show a
    KeyBackup, the rule's join on (namespace, name) would fail to evaluate, and the alert
    the hand-over case above expects would never fire."""
    rules = _rule_file(helm, tmp_path)
    overlapping = {
        "evaluation_interval": "1m",
        "tests": [_hand_over_case(old_leader_keeps_its_series=True)],
    }
    tested = _promtool_test(promtool, rules, tmp_path, overlapping)
    assert tested.returncode != 0
    assert "many-to-many matching not allowed" in tested.stdout + tested.stderr


def test_each_alerts_runbook_url_is_an_anchor_of_the_readmes_alerts_section(
    helm: Path,
) -> None:
    readme = (REPO / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"(?m)^#+ (.+)$", readme)
    }
    base = "https://git.example.com/platform/kvbackup/-/blob/v0.1.0/README.md"
    for values, expected_base in (
        ({"enabled": True}, RUNBOOK),
        ({"enabled": True, "runbookBaseUrl": base}, base),
    ):
        (rule,) = find(
            render(helm, "ops", {"metrics": {"prometheusRule": values}}), "PrometheusRule"
        )
        (group,) = rule["spec"]["groups"]
        for alert in group["rules"]:
            url = alert["annotations"]["runbook_url"]
            assert url == f"{expected_base}#{alert['alert'].lower()}"
            assert url.partition("#")[2] in anchors, f"README.md has no heading {alert['alert']}"


def test_the_network_policy_admits_scrapes_of_the_metrics_port_from_the_given_peers(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    documents = render(
        helm,
        namespace,
        {"networkPolicy": {"enabled": True, "metricsIngressFrom": [prometheus]}},
        release=unique_release(),
    )
    (policy,) = find(documents, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8080}]},
        {"ports": [{"protocol": "TCP", "port": 8081}], "from": [prometheus]},
    ]
    dry_run_server(control_plane, documents)

    closed = render(
        helm,
        namespace,
        {
            "networkPolicy": {"enabled": True},
            "settings": {"healthPort": 0, "metricsPort": 0},
        },
    )
    (policy,) = find(closed, "NetworkPolicy")
    assert policy["spec"]["ingress"] == []


def test_without_the_metrics_endpoint_there_is_no_metrics_port_or_service(helm: Path) -> None:
    documents = render(helm, "ops", {"settings": {"metricsPort": 0}})
    assert deployment_env(documents)["KVBACKUP_METRICS_PORT"] == "0"
    (deployment,) = find(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [port["name"] for port in container["ports"]] == ["health"]
    assert find(documents, "Service") == []


@pytest.mark.parametrize(
    "metrics",
    [
        pytest.param({"serviceMonitor": {"enabled": True}}, id="a ServiceMonitor"),
        pytest.param({"prometheusRule": {"enabled": True}}, id="alert rules"),
    ],
)
def test_monitoring_without_the_metrics_endpoint_fails_to_render(
    helm: Path, metrics: dict[str, Any]
) -> None:
    result = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--values", "-"],
        input=json.dumps({"settings": {"metricsPort": 0}, "metrics": metrics}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "set settings.metricsPort above 0, or disable them" in result.stderr


def test_a_service_monitor_without_the_service_fails_to_render(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "template", "r", str(CHART), "--values", "-"],
        input=json.dumps(
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in result.stderr


# --- RBAC: the operator at work under the chart's ServiceAccount ---------------------


def test_the_cluster_wide_operator_works_under_the_charts_rbac_without_forbidden_errors(
    helm: Path,
    control_plane: ControlPlane,
    namespace: str,
    operators: list[OperatorProcess],
    lowkey: Lowkey,
    vault: VaultUnderTest,
    tmp_path: Path,
) -> None:
    release = unique_release()
    # The tests' objects live in namespaces of their own: the single-tenant opt-in.
    documents = render(
        helm, namespace, {"defaultIdentity": {"allNamespaces": True}}, release=release
    )
    apply_rbac(control_plane, documents)
    kubeconfig = service_account_kubeconfig(
        control_plane, namespace, release + "-kvbackup-operator", tmp_path / "kubeconfig"
    )

    def start() -> OperatorProcess:
        operator = start_operator(
            kubeconfig, tmp_path / "operator.log", operator_env(documents, lowkey)
        )
        operators.append(operator)
        return operator

    served = own_namespace(control_plane)
    operator = prove_the_operator_works(start, Cluster(control_plane, served), vault)

    operator.stop()
    assert forbidden_lines(operator.log(), [served]) == []


def test_a_namespaced_operator_works_in_its_namespaces_and_cannot_read_secrets_elsewhere(
    helm: Path,
    control_plane: ControlPlane,
    namespace: str,
    operators: list[OperatorProcess],
    lowkey: Lowkey,
    vault: VaultUnderTest,
    tmp_path: Path,
) -> None:
    release = unique_release()
    team_a, team_b = own_namespace(control_plane, "team-a"), own_namespace(control_plane, "team-b")
    documents = render(
        helm,
        namespace,
        {
            "watchNamespaces": [team_a],
            "defaultIdentity": {"rules": [{"namespaces": [team_a], "vaultUrls": ["*"]}]},
        },
        release=release,
    )
    apply_rbac(control_plane, documents)
    account = f"system:serviceaccount:{namespace}:{release}-kvbackup-operator"

    def can(*args: str) -> str:
        result = control_plane.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
        return result.stdout.strip()

    assert can("get", "secrets", "-n", team_a) == "yes"
    assert can("deletecollection", "secrets", "-n", team_a) == "yes"
    assert can("patch", "keybackups.kvbackup.io", "--subresource=status", "-n", team_a) == "yes"
    for verb in ("get", "create", "update", "deletecollection"):
        assert can(verb, "secrets", "-n", team_b) == "no", verb
    assert can("list", "keybackups.kvbackup.io", "-n", team_b) == "no"
    assert can("list", "secrets", "--all-namespaces") == "no"
    assert can("list", "keybackups.kvbackup.io", "--all-namespaces") == "no"
    assert can("get", "secrets", "-n", namespace) == "no"  # not even its own namespace

    kubeconfig = service_account_kubeconfig(
        control_plane, namespace, release + "-kvbackup-operator", tmp_path / "kubeconfig"
    )
    # The same with the ServiceAccount's own token, straight to the API server.
    as_operator = subprocess.run(
        [
            str(control_plane.kubectl_path),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "secrets",
            "-n",
            team_b,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert as_operator.returncode != 0
    assert "Forbidden" in as_operator.stderr
    assert "cannot list resource" in as_operator.stderr

    def start() -> OperatorProcess:
        operator = start_operator(
            kubeconfig, tmp_path / "operator.log", operator_env(documents, lowkey)
        )
        operators.append(operator)
        return operator

    # It works in team-a; an object in team-b, which it does not watch, is left alone.
    operator = prove_the_operator_works(
        start, Cluster(control_plane, team_a), vault, outside=Cluster(control_plane, team_b)
    )

    operator.stop()
    assert forbidden_lines(operator.log(), [team_a, team_b]) == []


def test_the_user_roles_let_namespace_users_view_or_manage_keybackups_and_keyrestores(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    """The aggregated ClusterRoles' own rules, bound directly (no controller-manager runs
    here to aggregate them into view/edit/admin)."""
    release = unique_release()
    documents = render(helm, namespace, {}, release=release)
    roles = [
        d
        for d in find(documents, "ClusterRole")
        if d["metadata"]["name"] != release + "-kvbackup-operator"
    ]
    labels = {r["metadata"]["name"]: r["metadata"]["labels"] for r in roles}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {
        k
        for k, v in labels[f"{release}-kvbackup-operator-view"].items()
        if k.startswith(aggregate) and v == "true"
    } == {
        aggregate + "view",
        aggregate + "edit",
        aggregate + "admin",
    }
    assert {
        k
        for k, v in labels[f"{release}-kvbackup-operator-edit"].items()
        if k.startswith(aggregate) and v == "true"
    } == {
        aggregate + "edit",
        aggregate + "admin",
    }
    control_plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(r) for r in roles))
    for role, user in (("view", "viewer"), ("edit", "editor")):
        control_plane.kubectl(
            "create",
            "rolebinding",
            f"{user}-{release}",
            "-n",
            namespace,
            f"--clusterrole={release}-kvbackup-operator-{role}",
            f"--user={user}",
        )
        if role == "edit":  # edit and admin get both roles by aggregation
            control_plane.kubectl(
                "create",
                "rolebinding",
                f"{user}-view-{release}",
                "-n",
                namespace,
                f"--clusterrole={release}-kvbackup-operator-view",
                f"--user={user}",
            )

    def can(user: str, verb: str, resource: str, *more: str) -> str:
        result = control_plane.kubectl(
            "auth", "can-i", verb, resource, *more, "-n", namespace, f"--as={user}", check=False
        )
        return result.stdout.strip()

    for resource in ("keybackups.kvbackup.io", "keyrestores.kvbackup.io"):
        assert can("viewer", "list", resource) == "yes"
        assert can("viewer", "create", resource) == "no"
        assert can("editor", "create", resource) == "yes"
        assert can("editor", "delete", resource) == "yes"
        assert can("editor", "watch", resource) == "yes"
    assert can("editor", "patch", "keybackups.kvbackup.io", "--subresource=status") == "no"
    assert can("viewer", "get", "secrets") == "no"
