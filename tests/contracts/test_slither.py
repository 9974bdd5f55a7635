"""Static analysis of contracts/Federation.sol with slither (.venv-slither), offline through forge.

`scripts/slither.sh` builds with the pinned forge and our solc-js wrapper and fails on any
finding. Findings are fixed, or suppressed in the source (`// Reason: ...` on its own line, then
`// slither-disable-next-line <detector>`); the script's two exclusions carry their reasons.
A second run with the suppressed findings shown checks that every suppression still matches a
finding on the line below it, so none outlives the code it was written for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "scripts/slither.sh"
# Its own virtual environment (scripts/install.sh): slither pins web3 below the
# version mecfed runs on, so it cannot share the project's.
SLITHER = ROOT / ".venv-slither/bin/slither"
FORGE = ROOT / "node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
SOURCE = ROOT / "contracts/Federation.sol"
DIRECTIVE = re.compile(r"^\s*//\s*slither-disable-next-line\s+([A-Za-z0-9_,-]+)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    if not FORGE.exists():
        pytest.fail(f"forge not installed ({FORGE} missing): run `npm ci` in {ROOT}")
    exe = SLITHER if SLITHER.exists() else shutil.which("slither")
    if exe is None:
        pytest.fail("slither not installed in .venv-slither: run scripts/install.sh")
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "SLITHER": str(exe)},
    )


def _findings(out: str) -> str:
    return "\n".join(ln for ln in out.splitlines() if not ln.startswith("'forge "))


def test_slither_reports_no_findings() -> None:
    res = _run()
    out = res.stdout + res.stderr
    assert "analyzed (1 contracts" in out, f"slither did not analyse the contract:\n{out}"
    assert res.returncode == 0 and " 0 result(s) found" in out, _findings(out)


def test_every_suppression_matches_a_finding(tmp_path: Path) -> None:
    report = tmp_path / "slither.json"
    _run("--show-ignored-findings", "--json", str(report))
    data = json.loads(report.read_text())
    assert data["success"], data.get("error")
    lines = SOURCE.read_text().splitlines()
    directives = {}  # line number of the statement below -> detectors
    for i, text in enumerate(lines, start=1):
        m = DIRECTIVE.match(text)
        if m:
            directives[i + 1] = set(m.group(1).split(","))
    used: set[tuple[int, str]] = set()
    for r in data["results"].get("detectors", []):
        for e in r["elements"]:
            sm = e.get("source_mapping") or {}
            if sm.get("filename_relative", "").endswith("Federation.sol") and sm.get("lines"):
                first = min(sm["lines"])
                if r["check"] in directives.get(first, ()):
                    used.add((first, r["check"]))
    stale = [
        f"Federation.sol#{line - 1}: slither-disable-next-line {det}"
        for line, dets in sorted(directives.items())
        for det in sorted(dets)
        if (line, det) not in used
    ]
    assert directives, "expected the documented suppressions in Federation.sol"
    assert not stale, "suppressions that match no finding:\n" + "\n".join(stale)
    for line in directives:
        # the comment block right above the directive must give the reason
        i = line - 3  # 0-based index of the line above the directive
        while i >= 0 and lines[i].strip().startswith("//") and "Reason:" not in lines[i]:
            i -= 1
        assert i >= 0 and "Reason:" in lines[i] and lines[i].strip().startswith("//"), (
            f"Federation.sol#{line - 1}: a suppression needs a `// Reason:` comment above it"
        )
