"""Entry point of ``mecfed bench``: its options (declared in
``mecfed.cli.main.bench_arguments``) become :class:`BenchOptions`, the
runner sweeps, the report and plots are written. The progress display is
rich (the ``bench`` extra); it and the runner are imported when the bench
runs, not when this module is."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import SYSTEMS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from benchmarks.runner import BenchOptions, BenchResult, FederationRow


def options(args: argparse.Namespace) -> BenchOptions:
    from benchmarks.runner import BenchOptions

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    opts = BenchOptions(
        systems=list(SYSTEMS) if args.systems is None else args.systems,
        runs=args.runs,
        backends=args.backend,
        block_times=args.block_time,
        out=Path(args.out or f"benchmarks/results/{stamp}"),
        testbed=args.testbed,
        subnet=args.subnet,
        image=args.image,
        seed=args.seed,
        offer_timeout_ms=args.offer_timeout_ms,
        run_timeout=args.run_timeout,
        keep=args.keep,
    )
    if args.quick:
        opts.systems, opts.runs, opts.block_times = [2], 1, [1.0]
        opts.backends = ["chain", "direct"]
    if opts.runs < 1 or any(n < 2 for n in opts.systems) or any(b <= 0 for b in opts.block_times):
        raise ValueError("--runs must be ≥ 1, --systems ≥ 2 and --block-time > 0")
    return opts


class RichReporter:
    """A progress bar over all runs plus the last run's outcome (a
    :class:`benchmarks.runner.Reporter`)."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=total)
        self.label = ""

    def point(self, label: str, runs: int) -> None:
        self.label = label

    def status(self, text: str) -> None:
        self.progress.update(self.task, description=text)

    def run_done(self, rows: list[FederationRow]) -> None:
        ok = [r for r in rows if r.ok]
        mean = sum(r.e2e_s for r in ok) / len(ok) if ok else 0.0
        self.progress.console.print(
            f"{self.label} run {rows[0].run + 1 if rows else '?'}: {len(ok)}/{len(rows)} ok, "
            f"mean {mean:.3f} s, providers {sorted({r.provider for r in ok})}"
        )
        self.progress.advance(self.task)


async def _bench(opts: BenchOptions, console: Console) -> BenchResult:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from benchmarks.runner import points, run_bench
    from mecfed.cli.collector import SpanCollector

    total = len(points(opts)) * opts.runs
    # All interfaces: the testbed's processes reach it via the underlay gateway.
    async with SpanCollector("0.0.0.0", 0, jsonl_path=opts.out / "spans.jsonl") as collector:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            return await run_bench(opts, collector, RichReporter(progress, total))


def main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from rich.console import Console

    from benchmarks import plots, report
    from benchmarks.runner import points

    opts = options(args)
    command = "mecfed " + shlex.join(sys.argv[1:] if argv is None else argv)
    opts.out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    console.print(
        f"[bold]mecfed bench[/]: {len(points(opts))} points x {opts.runs} runs -> {opts.out}"
    )
    (opts.out / "machine.md").write_text(report.machine_md(command))
    started = time.monotonic()
    result = asyncio.run(_bench(opts, console))
    elapsed = time.monotonic() - started
    report.write_csvs(result, opts.out)
    summary = report.summary_md(result, command, elapsed)
    (opts.out / "summary.md").write_text(summary)
    plots.step_bars(result, opts.out)
    plots.resources(result, opts.out)
    failed = sum(not r.ok for r in result.federations)
    console.print(
        f"{len(result.federations)} federations, {failed} failed, {elapsed:.1f} s; "
        f"results in {opts.out}"
    )
    return 0 if result.federations and not failed else 1
