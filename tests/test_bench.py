"""``mecfed bench``: the pure parts (steps from spans, statistics, failure
grouping) and ``--quick`` end to end on a real testbed: both backends at
N=2, one run each, and everything the report promises is on disk."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import STEPS
from benchmarks.report import failure_kinds, stats
from benchmarks.runner import FederationRow
from benchmarks.traces import federation_roots, step_seconds


def _span(name: str, span_id: str, parent: str, start: float, end: float, **attrs: str) -> dict:
    return {
        "name": name,
        "span_id": span_id,
        "parent_span_id": parent,
        "start_ns": int(start * 1e9),
        "end_ns": int(end * 1e9),
        "attributes": attrs,
    }


def test_steps_come_from_the_federation_spans_children() -> None:
    spans = [
        _span("federation", "r1", "", 0, 3, federation_id="fed-1"),
        _span("offer_collection", "a", "r1", 0, 1),
        _span("award", "b", "r1", 1, 1.5),
        _span("award", "c", "r1", 1.5, 1.75),  # retried with the next offer: summed
        _span("deployment", "d", "r1", 1.75, 3),
        _span("deployment", "x", "other-root", 0, 9),  # another federation's
        _span("grpc.call", "g", "d", 2, 2.5),  # not a step
    ]
    roots = federation_roots(spans, {"fed-1", "fed-2"})
    assert list(roots) == ["fed-1"]
    assert step_seconds(spans, roots["fed-1"]) == {
        "offer_collection": 1.0,
        "award": 0.75,
        "deployment": 1.25,
    }


def test_stats_and_failure_grouping() -> None:
    assert stats([]) is None
    assert stats([2.0]) == (2.0, 0.0, 2.0)
    mean, std, p95 = stats([1.0, 2.0, 3.0, 4.0])  # type: ignore[misc]
    assert (mean, round(std, 3), round(p95, 2)) == (2.5, 1.291, 3.85)
    rows = [
        FederationRow("chain", 5.0, 30, 2, run, "mec-01", state="FAILED", error=f"awarded {a}")
        for run, a in enumerate(["0xabc", "0xdef"])
    ]
    assert failure_kinds(rows) == {(("chain", 5.0, 30), "FAILED", "awarded …"): 2}


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, Docker)")
def test_quick_bench_writes_csv_summary_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "mecfed.cli", "bench", "--quick", "--out", str(out),
         "--testbed", "mfappb", "--subnet", "10.219.64.0/18"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    for name in ("federations.csv", "samples.csv", "summary.md", "machine.md", "resources.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "steps_chain_1s.png").exists() and (out / "steps_direct.png").exists()

    rows = list(csv.DictReader((out / "federations.csv").open()))
    assert sorted(r["backend"] for r in rows) == ["chain", "direct"]
    for r in rows:
        assert r["ok"] == "True" and r["state"] == "ESTABLISHED", r
        assert float(r["loss"]) == 0.0 and int(r["received"]) > 0, r
        assert r["steps_from_trace"] == "True", r
        steps = [float(r[f"{s}_s"]) for s in STEPS]  # every step filled from the trace
        assert all(v >= 0 for v in steps) and sum(steps) > 0, r
        # The steps run one after another inside the end-to-end time.
        assert sum(steps) <= float(r["e2e_s"]) + 0.05, r
        assert r["terminated"] == "True", r  # capacity freed after the run

    samples = list(csv.DictReader((out / "samples.csv").open()))
    components = {(s["backend"], s["component"]) for s in samples}
    assert {("chain", "chain"), ("chain", "mef"), ("chain", "meo"), ("direct", "mef")} <= components

    summary = (out / "summary.md").read_text()
    for needle in ("chain (block 1 s), N=2", "direct, N=2", "Clique 17.85", "SOA 2.46", "Targets"):
        assert needle in summary
