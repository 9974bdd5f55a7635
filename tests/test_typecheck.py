"""The type checker is part of the suite: ``mypy`` with the configuration in
pyproject.toml (``[tool.mypy]``: mecfed, mef, meo, benchmarks) must be clean.
A failure says mypy's summary line first, then its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOWN = 80  # error lines in the failure message


@pytest.mark.timeout(600)
def test_mypy_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=580
    )
    lines = proc.stdout.strip().splitlines()
    # The summary ("Success: ...", "Found N errors in M files ...") ends stdout;
    # configuration problems go to stderr.
    summary = lines[-1] if lines else f"mypy exited {proc.returncode} without a summary"
    if proc.returncode != 0:
        body = proc.stderr.strip().splitlines() + lines[:-1]
        errors = [ln for ln in body if ": error:" in ln] or body
        shown = "\n".join(errors[:SHOWN])
        more = f"\n... and {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
        pytest.fail(f"mypy: {summary}\n{shown}{more}", pytrace=False)
    assert summary.startswith("Success"), summary
