"""Raw CSVs, ``summary.md`` (ours beside the paper's) and ``machine.md``."""

from __future__ import annotations

import csv
import os
import platform
import re
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import psutil

from benchmarks import STEPS
from benchmarks.reference import (
    MEF_RSS_TARGET_MB,
    PAPER_BLOCK_TIME,
    PAPER_STEPS_N2,
    PROVIDERS_TARGET_N,
    TARGETS,
    paper_total,
)
from benchmarks.runner import BenchResult, FederationRow, SampleRow
from mecfed.testbed.plan import split_roles

Key = tuple[str, float | None, int]  # (backend, block time, N)

FED_COLUMNS = [
    "backend", "block_time", "n", "k", "run", "consumer", "federation_id", "provider",
    "price", "offers", "ok", "state", "error", "e2e_s",
    *(f"{s}_s" for s in STEPS),
    "steps_from_trace", "sent", "received", "loss", "rtt_ms", "terminated",
]  # fmt: skip
SAMPLE_COLUMNS = [
    "backend", "block_time", "n", "run", "t", "component", "instance", "pid", "cpu_vcpu", "rss_mb",
]  # fmt: skip


def _bt(bt: float | None) -> str:
    return "" if bt is None else f"{bt:g}"


def write_csvs(result: BenchResult, out: Path) -> None:
    with (out / "federations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FED_COLUMNS)
        for r in result.federations:
            w.writerow(
                [
                    r.backend, _bt(r.block_time), r.n, r.k, r.run, r.consumer, r.federation_id,
                    r.provider, r.price, r.offers, r.ok, r.state, r.error, f"{r.e2e_s:.4f}",
                    *(f"{r.steps[s]:.4f}" if s in r.steps else "" for s in STEPS),
                    r.steps_from_trace, r.sent, r.received, r.loss, r.rtt_ms, r.terminated,
                ]
            )  # fmt: skip
    with (out / "samples.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SAMPLE_COLUMNS)
        for row in result.samples:
            s = row.sample
            w.writerow(
                [
                    row.backend, _bt(row.block_time), row.n, row.run, s.t, s.component,
                    s.instance, s.pid, f"{s.cpu_vcpu:.4f}", f"{s.rss_mb:.2f}",
                ]
            )  # fmt: skip


# -- statistics -------------------------------------------------------------


def stats(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(mean, sample std, p95); None without values."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, float(np.percentile(values, 95))


def _fmt(st: tuple[float, float, float] | None) -> str:
    return "-" if st is None else f"{st[0]:.3f} ± {st[1]:.3f} (p95 {st[2]:.3f})"


def by_point(rows: Iterable[FederationRow]) -> dict[Key, list[FederationRow]]:
    out: dict[Key, list[FederationRow]] = defaultdict(list)
    for r in rows:
        out[(r.backend, r.block_time, r.n)].append(r)
    return dict(out)


def step_means(rows: Sequence[FederationRow]) -> dict[str, float]:
    ok = [r for r in rows if r.ok]
    return {
        s: statistics.fmean([r.steps[s] for r in ok if s in r.steps])
        for s in STEPS
        if any(s in r.steps for r in ok)
    }


def resource_table(samples: Iterable[SampleRow]) -> dict[tuple[Key, str], dict[str, float]]:
    """Per point and component: mean / max vCPU and mean / max RSS of one
    instance (averaged over instances), plus the max RSS of any instance."""
    acc: dict[tuple[Key, str], list[tuple[float, float]]] = defaultdict(list)
    for row in samples:
        key = ((row.backend, row.block_time, row.n), row.sample.component)
        acc[key].append((row.sample.cpu_vcpu, row.sample.rss_mb))
    return {
        key: {
            "cpu_mean": statistics.fmean(c for c, _ in vals),
            "cpu_max": max(c for c, _ in vals),
            "rss_mean": statistics.fmean(m for _, m in vals),
            "rss_max": max(m for _, m in vals),
        }
        for key, vals in acc.items()
    }


def _label(key: Key) -> str:
    backend, bt, n = key
    return f"{backend}" + (f" (block {bt:g} s)" if bt is not None else "") + f", N={n}"


def _why(rows: Sequence[FederationRow], bt: float | None) -> str:
    """The step breakdown behind a missed target, largest step first."""
    means = step_means(rows)
    if not means:
        return "no step spans"
    total = sum(means.values())
    parts = sorted(means.items(), key=lambda kv: -kv[1])[:2]
    text = ", ".join(f"{s} {v:.2f} s ({v / total:.0%})" for s, v in parts)
    if bt is not None:
        text += f"; block period {bt:g} s"
    return text


def summary_md(result: BenchResult, command: str, elapsed_s: float) -> str:
    points = by_point(result.federations)
    res = resource_table(result.samples)
    lines = [
        "# mecfed bench summary",
        "",
        f"Command: `{command}`  ",
        f"Wall time: {elapsed_s:.1f} s. End-to-end = Federation created_at -> updated_at at "
        "ESTABLISHED; steps = durations of the step spans under each federation's trace root. "
        "Cells: mean ± std (p95), seconds, over successful federations. Each provider's MEO "
        "keeps a warm pool of started app containers (twice its fair share of the consumers; "
        "`spare` in the resource table) and refills it between runs; a claim beyond the pool "
        "starts a container cold.",
        "",
        "## End-to-end and steps",
        "",
        "| point | feds | failed | e2e | " + " | ".join(STEPS) + " | paper total |",
        "|---|---|---|---|" + "---|" * len(STEPS) + "---|",
    ]
    for key, rows in sorted(points.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
        ok = [r for r in rows if r.ok]
        cells = [_fmt(stats([r.e2e_s for r in ok]))]
        cells += [_fmt(stats([r.steps[s] for r in ok if s in r.steps])) for s in STEPS]
        paper = ", ".join(f"{k} {v:.2f}" for k, v in paper_total(key[0], key[2]).items())
        lines.append(
            f"| {_label(key)} | {len(rows)} | {len(rows) - len(ok)} | "
            + " | ".join(cells)
            + f" | {paper or '-'} |"
        )
    lines += [
        "",
        "Paper step breakdown at N=2 (Clique, block 5 s): "
        + ", ".join(f"{s} {v:.2f}" for s, v in PAPER_STEPS_N2.items())
        + ".",
        "",
        "## Providers used",
        "",
        "| point | distinct winning providers | providers | wins per provider |",
        "|---|---|---|---|",
    ]
    for key, rows in sorted(points.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
        wins: dict[str, int] = defaultdict(int)
        for r in rows:
            if r.ok:
                wins[r.provider] += 1
        n_prov = split_roles(key[2]).count("provider")
        lines.append(
            f"| {_label(key)} | {len(wins)} | {n_prov} | "
            + ", ".join(f"{p}: {c}" for p, c in sorted(wins.items()))
            + " |"
        )
    lines += _resources_md(res)
    lines += _targets_md(points, res)
    failures = [r for r in result.federations if not r.ok]
    if failures or result.notes:
        lines += ["", "## Failures and notes (each row in federations.csv)", ""]
        lines += [
            f"- {_label(key)}: {count} x {state}: {error}"
            for (key, state, error), count in failure_kinds(failures).items()
        ]
        lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def failure_kinds(rows: Iterable[FederationRow]) -> dict[tuple[Key, str, str], int]:
    """Failures grouped by point and error, ids and addresses masked, so a
    systematic failure reads as one line with its count."""
    kinds: dict[tuple[Key, str, str], int] = defaultdict(int)
    for r in rows:
        error = re.sub(r"0x[0-9a-fA-F]+|fed-[0-9a-f]+", "…", r.error)
        kinds[((r.backend, r.block_time, r.n), r.state or "no federation", error)] += 1
    return dict(kinds)


def _resources_md(res: dict[tuple[Key, str], dict[str, float]]) -> list[str]:
    lines = [
        "",
        "## Resources (per instance, sampled every 1 s during runs)",
        "",
        "| point | component | vCPU mean | vCPU max | RSS mean MB | RSS max MB |",
        "|---|---|---|---|---|---|",
    ]
    for (key, comp), v in sorted(res.items(), key=lambda kv: (kv[0][0][0], kv[0][0][2], kv[0][1])):
        lines.append(
            f"| {_label(key)} | {comp} | {v['cpu_mean']:.3f} | {v['cpu_max']:.3f} | "
            f"{v['rss_mean']:.1f} | {v['rss_max']:.1f} |"
        )
    lines.append(
        "\nPaper chain node (Besu validator): 0.08 vCPU (Clique, flat) to 0.17 vCPU "
        "(QBFT, N=30); 306 MB (N=2) to 462 MB (N=30)."
    )
    return lines


def _targets_md(
    points: dict[Key, list[FederationRow]], res: dict[tuple[Key, str], dict[str, float]]
) -> list[str]:
    lines = [
        "",
        "## Targets (from the issue)",
        "",
        "| target | paper | ours | verdict |",
        "|---|---|---|---|",
    ]
    for t in TARGETS:
        matches = [key for key in points if key[0] == t.backend and key[2] == t.n]
        if not matches:
            lines.append(
                f"| {t.backend} N={t.n} ≤ {t.limit_s:g} s | {t.paper} | not measured | - |"
            )
            continue
        for key in sorted(matches, key=lambda k: -(k[1] or 0)):
            ok = [r.e2e_s for r in points[key] if r.ok]
            note = ""
            if key[1] is not None and key[1] != PAPER_BLOCK_TIME:
                note = f" (block {key[1]:g} s, paper's is {PAPER_BLOCK_TIME:g} s)"
            if not ok:
                lines.append(
                    f"| {t.backend} N={t.n} ≤ {t.limit_s:g} s{note} | {t.paper} | no success | "
                    "MISSED |"
                )
                continue
            mean = statistics.fmean(ok)
            verdict = (
                "met"
                if mean <= t.limit_s
                else f"MISSED by {mean - t.limit_s:.2f} s "
                f"({(mean - t.limit_s) / t.limit_s:.0%}): {_why(points[key], key[1])}"
            )
            lines.append(
                f"| {t.backend} N={t.n} ≤ {t.limit_s:g} s{note} | {t.paper} | {mean:.3f} s | "
                f"{verdict} |"
            )
    at_n = [key for key in points if key[2] == PROVIDERS_TARGET_N]
    for key in at_n:
        used = len({r.provider for r in points[key] if r.ok})
        verdict = "met" if used == 6 else f"MISSED: {used} of 6"
        lines.append(f"| {_label(key)}: all 6 providers used | 1 of 6 | {used} of 6 | {verdict} |")
    if not at_n:
        lines.append(
            f"| N={PROVIDERS_TARGET_N}: all 6 providers used | 1 of 6 | not measured | - |"
        )
    mef = [v["rss_max"] for (_, comp), v in res.items() if comp == "mef"]
    if mef:
        worst = max(mef)
        verdict = (
            "met" if worst <= MEF_RSS_TARGET_MB else f"MISSED by {worst - MEF_RSS_TARGET_MB:.1f} MB"
        )
        lines.append(f"| MEF RSS ≤ {MEF_RSS_TARGET_MB:g} MB | - | max {worst:.1f} MB | {verdict} |")
    return lines


# -- machine ----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _docker_version() -> str:
    try:
        import docker

        client = docker.from_env()
        try:
            return str(client.version().get("Version", "unknown"))
        finally:
            client.close()
    except Exception as exc:  # the report must not fail over a version string
        return f"unknown ({type(exc).__name__})"


def _anvil_version() -> str:
    try:
        from mecfed.chain.anvil import anvil_binary

        out = subprocess.run(
            [str(anvil_binary()), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError, ImportError) as exc:
        return f"unknown ({type(exc).__name__})"


def machine_md(command: str) -> str:
    mem = psutil.virtual_memory().total / 2**30
    return "\n".join(
        [
            "# Machine",
            "",
            f"- CPU: {_cpu_model()}",
            f"- Cores: {psutil.cpu_count(logical=False)} physical, {os.cpu_count()} logical",
            f"- Memory: {mem:.1f} GiB",
            f"- Kernel: {platform.system()} {platform.release()}",
            f"- Python: {platform.python_version()}",
            f"- Docker engine: {_docker_version()}",
            f"- anvil: {_anvil_version()}",
            "",
            "All MEC systems, the chain node and the apps share this one machine "
            "(the paper used one 2 vCPU / 2 GB VM per system and Besu validators).",
            "",
            f"Command: `{command}`",
            "",
        ]
    )
