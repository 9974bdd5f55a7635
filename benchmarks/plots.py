"""PNG plots in the paper's style: stacked step bars per N (Fig. 5) and
per-component CPU / memory vs N (Fig. 6), with the paper's numbers drawn
beside ours."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt

from benchmarks import STEPS
from benchmarks.reference import (
    PAPER_CHAIN_CPU,
    PAPER_CHAIN_MEM_MB,
    PAPER_STEPS_N2,
    paper_total,
)
from benchmarks.report import by_point, resource_table, step_means
from benchmarks.runner import BenchResult

COLORS = dict(zip(STEPS, ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f"), strict=True))


def step_bars(result: BenchResult, out: Path) -> list[Path]:
    """One figure per (backend, block time): our step means stacked per N,
    the paper's total(s) as hatched bars beside them."""
    points = by_point(result.federations)
    written = []
    for backend, bt in sorted({(k[0], k[1]) for k in points}, key=lambda x: (x[0], x[1] or 0)):
        ns = sorted(k[2] for k in points if k[0] == backend and k[1] == bt)
        fig, ax = plt.subplots(figsize=(3.4 + 1.4 * len(ns), 4.5))
        for i, n in enumerate(ns):
            means = step_means(points[(backend, bt, n)])
            bottom = 0.0
            for s in STEPS:
                v = means.get(s, 0.0)
                label = s if i == 0 else None
                ax.bar(i - 0.2, v, 0.35, bottom=bottom, color=COLORS[s], label=label)
                bottom += v
            paper = paper_total(backend, n)
            for j, (name, v) in enumerate(paper.items()):
                x = i + 0.2 + 0.18 * j - 0.09 * (len(paper) - 1)
                width = 0.35 / len(paper)
                if backend == "chain" and n == 2 and name == "Clique":
                    # The paper breaks down only this bar (Fig. 5, N=2, Clique).
                    bottom = 0.0
                    for s in STEPS:
                        ax.bar(x, PAPER_STEPS_N2[s], width, bottom=bottom, color="white",
                               edgecolor=COLORS[s], hatch="//")  # fmt: skip
                        bottom += PAPER_STEPS_N2[s]
                    ax.bar(x, 0, width, color="white", edgecolor="grey", hatch="//",
                           label="paper Clique" if i == 0 else None)  # fmt: skip
                    continue
                ax.bar(x, v, width, color="white", edgecolor="grey", hatch="//" if j == 0 else "xx",
                       label=f"paper {name}" if i == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(ns)), [f"N={n}" for n in ns])
        ax.set_ylabel("seconds")
        title = f"{backend}" + (f", block {bt:g} s" if bt is not None else "")
        ax.set_title(f"Federation time by step\n({title}; hatched: paper)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # off the bars
        fig.tight_layout()
        path = out / (f"steps_{backend}" + (f"_{bt:g}s" if bt is not None else "") + ".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def resources(result: BenchResult, out: Path) -> Path:
    """Mean vCPU and max RSS of one instance of each component vs N."""
    res = resource_table(result.samples)
    fig, (cpu_ax, mem_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    series: dict[tuple[str, float | None, str], list[tuple[int, float, float]]] = {}
    for ((backend, bt, n), comp), v in res.items():
        series.setdefault((backend, bt, comp), []).append((n, v["cpu_mean"], v["rss_max"]))
    for (backend, bt, comp), pts in sorted(series.items(), key=lambda kv: str(kv[0])):
        pts.sort()
        label = f"{comp} ({backend}" + (f" {bt:g}s" if bt is not None else "") + ")"
        style = "-o" if backend == "chain" else "--s"
        cpu_ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, ms=4)
        mem_ax.plot([p[0] for p in pts], [p[2] for p in pts], style, label=label, ms=4)
    for name, paper in PAPER_CHAIN_CPU.items():
        color = "black" if name == "QBFT" else "grey"
        cpu_ax.plot(
            list(paper), list(paper.values()), ":x", color=color, label=f"paper Besu ({name})"
        )
    mem = PAPER_CHAIN_MEM_MB
    mem_ax.plot(list(mem), list(mem.values()), ":x", color="black", label="paper Besu node")
    cpu_ax.set(xlabel="N (MEC systems)", ylabel="vCPU (mean per instance)", title="CPU")
    mem_ax.set(xlabel="N (MEC systems)", ylabel="RSS MB (max per instance)", title="Memory")
    for ax in (cpu_ax, mem_ax):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "resources.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
