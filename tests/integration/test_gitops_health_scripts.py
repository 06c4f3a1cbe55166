"""GitOps tools read the states of the status contract the way kvbackup means them.

Argo CD evaluates gitops/argocd's Lua health checks with its own code (argo-cd's util/lua
through gitops-engine's health.GetResourceHealth, built by hack/build-argocd-health.sh);
Flux and kpt judge objects with kstatus (cli-utils' status.Compute, built by
hack/build-kstatus.sh). The objects are the testdata of the health checks: one per state
of the contract (Ready, Reconciling and Stalled conditions, each stamped with the
generation it describes, and status.observedGeneration defaulted to -1 by the CRDs).
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.controlplane import REPO
from tests.harness.gitops import (
    HEALTH_CHECKS,
    KINDS,
    Health,
    HealthCase,
    argocd_health,
    argocd_health_binary,
    health_cases,
    health_script,
    kstatus,
    kstatus_binary,
)
from tests.integration.conftest import on_the_terminal

pytestmark = pytest.mark.integration

CASES = [case for kind in KINDS for case in health_cases(kind)]

#: kstatus' verdict on each testdata object, as the status contract says it must be.
KSTATUS_VERDICTS = {
    # kstatus compares generations only when status.observedGeneration exists: without
    # the CRDs' default of -1, a KeyBackup nobody has looked at yet would be Current.
    "KeyBackup/no-status": "Current",
    "KeyBackup/just-applied": "InProgress",
    "KeyBackup/running": "InProgress",
    "KeyBackup/retry-scheduled": "InProgress",
    "KeyBackup/succeeded": "Current",
    "KeyBackup/partially-failed": "Failed",
    "KeyBackup/identity-not-allowed": "Failed",
    "KeyBackup/invalid-spec": "Failed",
    "KeyBackup/scheduled-waiting-for-first-slot": "Current",
    "KeyBackup/scheduled-last-run-succeeded": "Current",
    "KeyBackup/scheduled-last-run-failed": "Failed",
    "KeyBackup/edited-not-yet-observed": "InProgress",
    # kstatus does not read a condition's own observedGeneration (kubectl wait and the
    # Argo CD health check do): a Ready left at an older generation passes it.
    "KeyBackup/edited-ready-left-behind": "Current",
    "KeyBackup/edited-and-observed": "Current",
    # kstatus has no suspended state; the operator keeps a suspended KeyBackup Ready.
    "KeyBackup/suspended": "Current",
    "KeyRestore/just-applied": "InProgress",
    "KeyRestore/running": "InProgress",
    "KeyRestore/retry-scheduled": "InProgress",
    "KeyRestore/dry-run-succeeded": "Current",
    "KeyRestore/edited-not-yet-observed": "InProgress",
    "KeyRestore/succeeded": "Current",
    "KeyRestore/partially-failed": "Failed",
    "KeyRestore/identity-not-allowed": "Failed",
}


@pytest.fixture(scope="module")
def argocd(pytestconfig: pytest.Config) -> Path:
    with on_the_terminal(pytestconfig):
        return argocd_health_binary()


@pytest.fixture(scope="module")
def kstatus_tool(pytestconfig: pytest.Config) -> Path:
    with on_the_terminal(pytestconfig):
        return kstatus_binary()


def _testdata() -> Iterator[tuple[str, Path]]:
    for kind in KINDS:
        for path in sorted((HEALTH_CHECKS / kind / "testdata").glob("*.yaml")):
            yield f"{kind}/{path.stem}", path


def _condition_message(obj: dict[str, Any], condition_type: str) -> str:
    (message,) = [c["message"] for c in obj["status"]["conditions"] if c["type"] == condition_type]
    return str(message)


def _being_deleted(case_name: str) -> dict[str, Any]:
    (case,) = [c for c in CASES if c.name == case_name]
    obj = copy.deepcopy(case.object())
    obj["metadata"]["deletionTimestamp"] = "2026-12-07T12:00:00Z"
    obj["metadata"]["finalizers"] = ["kvbackup.io/snapshots"]
    return obj


# --- Argo CD ---------------------------------------------------------------------------


def test_every_testdata_object_is_a_case_of_its_kinds_health_test() -> None:
    assert sorted(case.name for case in CASES) == sorted(name for name, _ in _testdata())
    assert {case.expected.status for case in CASES} == {
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
    }


@pytest.mark.parametrize(
    "open_libs", [False, True], ids=["as-argocd-cm-runs-it", "with-the-lua-standard-libraries"]
)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_argo_cd_gives_each_health_test_case_its_expected_status_and_message(
    argocd: Path, case: HealthCase, open_libs: bool
) -> None:
    got = argocd_health(argocd, health_script(case.kind), case.object(), open_libs=open_libs)
    assert got == case.expected


def test_each_degraded_case_expects_the_stalled_conditions_message() -> None:
    degraded = [case for case in CASES if case.expected.status == "Degraded"]
    assert degraded
    for case in degraded:
        assert case.expected.message == _condition_message(case.object(), "Stalled")


def test_a_stalled_condition_of_an_older_generation_does_not_degrade_the_edited_object(
    argocd: Path,
) -> None:
    (case,) = [c for c in CASES if c.name == "KeyBackup/identity-not-allowed"]
    edited = case.object()
    edited["metadata"]["generation"] = edited["status"]["observedGeneration"] = 2
    got = argocd_health(argocd, health_script("KeyBackup"), edited)
    assert got == Health("Progressing", "Waiting for the Ready condition of generation 2")


def test_argo_cd_shows_an_object_being_deleted_as_pending_deletion_before_any_script_runs(
    argocd: Path,
) -> None:
    for kind in KINDS:
        got = argocd_health(argocd, health_script(kind), _being_deleted(f"{kind}/succeeded"))
        assert got == Health("Progressing", "Pending deletion")


def test_argo_cd_configured_in_argocd_cm_offers_no_string_library_unless_asked(
    argocd: Path, tmp_path: Path
) -> None:
    """So the first mode of the cases above is the strict one the checks must pass."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = string.upper("healthy"):sub(1, 1) .. "ealthy"}\n')
    (case,) = [c for c in CASES if c.name == "KeyBackup/succeeded"]
    assert argocd_health(argocd, script, case.object(), open_libs=True) == Health("Healthy", "")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        argocd_health(argocd, script, case.object())
    assert "attempt to index a non-table object(nil) with key 'upper'" in failed.value.stderr


# --- kstatus ---------------------------------------------------------------------------


def test_every_testdata_object_has_the_verdict_kstatus_must_reach() -> None:
    assert sorted(KSTATUS_VERDICTS) == sorted(name for name, _ in _testdata())


def test_kstatus_reads_each_state_of_the_contract_as_flux_will(kstatus_tool: Path) -> None:
    names, paths = zip(*_testdata(), strict=True)
    objects = [yaml.safe_load(path.read_text()) for path in paths]
    verdicts = kstatus(kstatus_tool, objects)
    assert [(v.kind, v.name) for v in verdicts] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    assert dict(zip(names, (v.status for v in verdicts), strict=True)) == KSTATUS_VERDICTS


def test_kstatus_fails_a_stalled_object_with_the_stalled_conditions_message(
    kstatus_tool: Path,
) -> None:
    stalled = [
        yaml.safe_load(path.read_text())
        for name, path in _testdata()
        if KSTATUS_VERDICTS[name] == "Failed"
    ]
    verdicts = kstatus(kstatus_tool, stalled)
    assert [v.message for v in verdicts] == [_condition_message(o, "Stalled") for o in stalled]


def test_kstatus_reads_a_just_applied_object_as_waiting_for_its_first_generation(
    kstatus_tool: Path,
) -> None:
    for kind in KINDS:
        (case,) = [c for c in CASES if c.name == f"{kind}/just-applied"]
        (verdict,) = kstatus(kstatus_tool, [case.object()])
        assert verdict.message == f"{kind} generation is 1, but latest observed generation is -1"


def test_kstatus_reads_an_object_being_deleted_as_terminating(kstatus_tool: Path) -> None:
    deleted = [_being_deleted(f"{kind}/succeeded") for kind in KINDS]
    assert [v.status for v in kstatus(kstatus_tool, deleted)] == ["Terminating"] * len(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_charts_argocd_values_carry_the_very_health_checks_tested_here(kind: str) -> None:
    values = yaml.safe_load(
        (REPO / "charts" / "kvbackup-operator" / "argocd-health-values.yaml").read_text()
    )

    shipped = values["configs"]["cm"][f"resource.customizations.health.kvbackup.io_{kind}"]

    assert shipped == health_script(kind).read_text()
