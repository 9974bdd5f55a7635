"""The Foundry fuzz and invariant tests of the contract (contracts/test/*.t.sol), run offline.

`scripts/forge.sh test` runs the pinned forge (npm @foundry-rs/forge-linux-amd64) in contracts/
with `offline = true` and our solc-js wrapper (scripts/solc-js) as `solc`. This test fails with
forge's summary line (and the failing tests) if anything fails, and never skips: a missing
forge is a failure that says what to install.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import ROOT

FORGE = ROOT / "node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
SUMMARY = re.compile(
    r"Ran (\d+) test suites? in .*?: (\d+) tests? passed, (\d+) failed, (\d+) skipped"
)


def test_forge_fuzz_and_invariant_tests() -> None:
    if not FORGE.exists():
        pytest.fail(f"forge not installed ({FORGE} missing): run `npm ci` in {ROOT}")
    res = subprocess.run(
        [str(ROOT / "scripts/forge.sh"), "test", "--color", "never"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = res.stdout + res.stderr
    summary = SUMMARY.search(out)
    failures = list(dict.fromkeys(ln for ln in out.splitlines() if ln.startswith("[FAIL")))
    report = "\n".join([summary.group(0) if summary else "forge printed no summary", *failures])
    if res.returncode != 0 or summary is None:
        tail = "\n".join(out.splitlines()[-40:])
        pytest.fail(f"forge test failed (exit {res.returncode}):\n{report}\n--- tail\n{tail}")
    suites, passed, failed, skipped = (int(g) for g in summary.groups())
    assert failed == 0 and skipped == 0, report
    assert suites >= 4 and passed >= 30, f"forge ran too few tests: {report}"
