"""The verdict on a pip-audit JSON report: ``python hack/pip_audit_verdict.py REPORT``.

pip-audit fails on every known vulnerability, and passes, saying "No known
vulnerabilities found", when it could not ask its service about a single package. This
reads its report instead and exits with:

- 1 when a package has a vulnerability that a newer release fixes (upgrade it in the lock);
- 3 when no package could be audited at all (the service was not reachable), naming why;
- 0 otherwise. Vulnerabilities without a fix, and packages that could not be audited
  while others were, are printed but do not fail.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FIXABLE = 1
NOT_AUDITED = 3


def verdict(report: dict[str, Any]) -> tuple[int, list[str]]:
    """The exit code and the lines to print for one report."""
    dependencies: list[dict[str, Any]] = report.get("dependencies", [])
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = [d for d in dependencies if "skip_reason" not in d]
    lines: list[str] = []
    fixable = 0
    for dependency in audited:
        for vuln in dependency.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            name = f"{dependency['name']} {dependency['version']}: {vuln['id']}"
            if fixes:
                fixable += 1
                lines.append(f"VULNERABLE {name}, fixed in {', '.join(fixes)}")
            else:
                lines.append(f"vulnerable, no fix released yet: {name}")
    if dependencies and not audited:
        lines.append(
            f"NOT AUDITED: none of {len(dependencies)} packages could be checked; "
            f"pip-audit says, e.g.: {skipped[0]['skip_reason']}"
        )
        return NOT_AUDITED, lines
    lines.extend(f"not audited: {d['skip_reason']}" for d in skipped)
    lines.append(f"audited {len(audited)} packages: {fixable} vulnerabilities with a fix available")
    return (FIXABLE if fixable else 0), lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} PIP_AUDIT_JSON_REPORT", file=sys.stderr)
        return 2
    code, lines = verdict(json.loads(Path(argv[1]).read_text()))
    for line in lines:
        print(f"audit: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
