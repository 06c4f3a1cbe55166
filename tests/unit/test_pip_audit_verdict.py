"""The verdict `make test` draws from pip-audit's report on requirements.lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def judge(report: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(report))
    return subprocess.run(
        [sys.executable, str(REPO / "hack" / "pip_audit_verdict.py"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def vuln(identifier: str, *fixes: str) -> dict[str, Any]:
    return {"id": identifier, "fix_versions": list(fixes), "aliases": [], "description": ""}


def test_a_vulnerability_with_a_fix_released_fails_the_audit_and_names_the_fix(
    tmp_path: Path,
) -> None:
    result = judge(
        {
            "dependencies": [
                {"name": "aiohttp", "version": "3.9.0", "vulns": [vuln("GHSA-1", "3.9.4")]},
                {"name": "idna", "version": "3.20", "vulns": []},
            ]
        },
        tmp_path,
    )
    assert result.returncode == 1
    assert "VULNERABLE aiohttp 3.9.0: GHSA-1, fixed in 3.9.4" in result.stderr


def test_a_vulnerability_without_a_fix_is_reported_but_passes(tmp_path: Path) -> None:
    result = judge(
        {"dependencies": [{"name": "ecdsa", "version": "0.19.1", "vulns": [vuln("GHSA-2")]}]},
        tmp_path,
    )
    assert result.returncode == 0
    assert "no fix released yet: ecdsa 0.19.1: GHSA-2" in result.stderr


def test_a_report_where_no_package_could_be_audited_is_not_taken_for_a_clean_one(
    tmp_path: Path,
) -> None:
    reason = "Dependency not found on PyPI and could not be audited: idna (3.20)"
    result = judge(
        {"dependencies": [{"name": "idna", "skip_reason": reason}], "fixes": []}, tmp_path
    )
    assert result.returncode == 3
    assert f"NOT AUDITED: none of 1 packages could be checked; pip-audit says, e.g.: {reason}" in (
        result.stderr
    )


def test_packages_that_could_not_be_audited_beside_audited_ones_are_listed_and_pass(
    tmp_path: Path,
) -> None:
    result = judge(
        {
            "dependencies": [
                {"name": "idna", "version": "3.20", "vulns": []},
                {"name": "kvbackup", "skip_reason": "not on PyPI"},
            ]
        },
        tmp_path,
    )
    assert result.returncode == 0
    assert "not audited: not on PyPI" in result.stderr
    assert "audited 1 packages: 0 vulnerabilities with a fix available" in result.stderr
