"""``mecfed demo``: a testbed of N MEC systems, every consumer requests one
federation at the same moment, a live progress display, a timeline, and a
machine-readable summary (``--json``). Needs the ``ui`` extra (rich)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from mecfed import tracing
from mecfed.cli.collector import SpanCollector
from mecfed.cli.federate import (
    STATE_NAMES,
    STEP_ORDER,
    Outcome,
    RequestOptions,
    ensure_local_app,
    federate,
    offers_for,
)
from mecfed.cli.trace_view import TRACE_FILE, find_traces, render_waterfall
from mecfed.config import SystemConfig


@dataclass
class DemoOptions:
    backend: str = "direct"
    systems: int = 2
    vim: str = "docker"
    image: str = "mecfed/echo:1"
    max_price: int = 10**9
    offer_timeout_ms: int = 3000
    offers_to_wait_for: int | None = None  # paper: 1 for N < 10, else 2
    json: bool = False
    keep: bool = False
    block_time: float = 1.0
    testbed_name: str = "mecfed"
    subnet: str = "10.213.0.0/16"
    otlp_endpoint: str | None = None
    tracing: bool = True

    def request(self) -> RequestOptions:
        return RequestOptions(
            image=self.image,
            max_price=self.max_price,
            offers_to_wait_for=self.offers_to_wait_for or offers_for(self.systems),
            offer_timeout_ms=self.offer_timeout_ms,
        )


def progress_table(outcomes: Sequence[Outcome], started: float) -> Table:
    table = Table(title=f"federations ({time.time() - started:5.1f} s)", expand=False)
    for col in ("consumer", "state", "provider", "price", "offers"):
        table.add_column(col)
    for o in outcomes:
        fed = o.federation
        state = o.error or (STATE_NAMES.get(fed.state, "?") if fed else "starting")
        style = "green" if o.ok else ("red" if o.error or "failed" in state else "")
        table.add_row(
            o.consumer,
            f"[{style}]{state}[/]" if style else state,
            fed.provider_id if fed else "",
            str(fed.price) if fed and fed.price else "",
            str(len(fed.offers)) if fed else "",
        )
    return table


def print_timeline(console: Console, outcomes: Sequence[Outcome]) -> None:
    for o in outcomes:
        s = o.summary()
        mark = "[green]OK[/]" if o.ok else "[red]FAILED[/]"
        console.print(
            f"\n{mark} {s['id'] or '-'}  {o.consumer} -> {s['provider'] or '-'}  "
            f"{s['seconds']:.3f} s"
        )
        t0 = 0.0
        for name in STEP_ORDER:
            if name in s["steps"]:
                dur = s["steps"][name]
                bar = "#" * max(1, int(dur * 40 / max(s["seconds"], 1e-3)))
                console.print(f"  {name:<17} {t0:7.3f} +{dur:7.3f} s  {bar}")
                t0 += dur
        tr = s["traffic"]
        if tr["sent"]:
            console.print(
                f"  traffic: {tr['received']}/{tr['sent']} echoes, "
                f"loss {tr['loss']:.0%}, rtt {tr['rtt_ms']:.3f} ms"
            )
        if s.get("error"):
            console.print(f"  [red]error:[/] {s['error']}")


async def run_demo(options: DemoOptions) -> dict[str, Any]:
    """With an OTLP endpoint (``--otlp-endpoint`` or OTEL_EXPORTER_OTLP_ENDPOINT)
    every process exports its spans there (e.g. Jaeger); otherwise the demo
    collects them itself into TRACE_FILE for ``mecfed trace``."""
    endpoint = tracing.resolve_endpoint(options.otlp_endpoint)
    if endpoint or not options.tracing:
        return await _run_demo(options, endpoint or "", None)
    await asyncio.to_thread(_fresh_trace_file)
    # All interfaces: the testbed's processes reach it via the underlay gateway.
    async with SpanCollector("0.0.0.0", 0, jsonl_path=TRACE_FILE) as collector:
        return await _run_demo(options, f"http://127.0.0.1:{collector.port}", collector)


def _fresh_trace_file() -> None:
    TRACE_FILE.parent.mkdir(parents=True, exist_ok=True)
    TRACE_FILE.unlink(missing_ok=True)


async def _run_demo(
    options: DemoOptions, otlp_endpoint: str, collector: SpanCollector | None
) -> dict[str, Any]:
    from mecfed.testbed import Testbed
    from meo.image import build_image  # the app image is the MEO's

    console = Console(stderr=options.json)
    console.print(
        f"[bold]mecfed demo[/]: {options.systems} MEC systems, "
        f"{options.backend} backend, {options.vim} VIM"
    )
    if options.vim == "docker":
        await asyncio.to_thread(build_image, options.image)
    testbed = Testbed(name=options.testbed_name, subnet=options.subnet)
    result: dict[str, Any] = {
        "backend": options.backend,
        "systems": options.systems,
        "ok": False,
        "federations": [],
    }
    try:
        with console.status("bringing up the testbed"):
            state = await testbed.up(
                options.systems,
                backend=options.backend,
                vim=options.vim,
                image=options.image,
                block_time=options.block_time,
                otlp_endpoint=otlp_endpoint,
            )
        consumers = [s for s in state.systems if s.role == "consumer"]
        providers = [s for s in state.systems if s.role == "provider"]
        console.print(
            f"testbed up: {len(consumers)} consumers "
            f"({', '.join(s.system_id for s in consumers)}), {len(providers)} providers "
            f"({', '.join(s.system_id for s in providers)})"
        )
        configs = [SystemConfig.load(s.config_path) for s in consumers]
        services = [f"svc-{c.system_id}" for c in configs]
        with console.status("starting each consumer's local service"):
            await asyncio.gather(
                *(
                    ensure_local_app(c, svc, options.image)
                    for c, svc in zip(configs, services, strict=True)
                )
            )
        outcomes = [Outcome(c.system_id) for c in configs]
        start = asyncio.Event()
        started = time.time()
        with Live(
            progress_table(outcomes, started),
            console=console,
            refresh_per_second=8,
            transient=False,
        ) as live:

            def refresh() -> None:
                live.update(progress_table(outcomes, started))

            request = options.request()
            tasks = [
                asyncio.create_task(federate(c, svc, request, start, o, refresh))
                for c, svc, o in zip(configs, services, outcomes, strict=True)
            ]
            await asyncio.sleep(0)
            started = time.time()
            start.set()  # every consumer requests at the same moment
            await asyncio.gather(*tasks)
            refresh()
        print_timeline(console, outcomes)
        result["federations"] = [o.summary() for o in outcomes]
        result["ok"] = bool(outcomes) and all(o.ok for o in outcomes)
        console.print(
            f"\n{'[green]all federations established' if result['ok'] else '[red]some failed'}"
            f"[/] in {time.time() - started:.3f} s wall time"
        )
    finally:
        if not options.keep:
            with console.status("tearing down the testbed"):
                await testbed.down()  # servers flush their spans on the way out
    if collector is not None and result["federations"] and not options.json:
        first = result["federations"][0]["id"]
        ids = find_traces(collector.spans, "federation_id", first)
        if ids:
            console.print(f"\n[bold]trace of {first}[/] ({len(collector.spans)} spans collected)")
            console.print(render_waterfall(collector.spans, ids[-1]), markup=False, soft_wrap=True)
            console.print(f"any federation: mecfed trace FEDERATION_ID (spans in {TRACE_FILE})")
    return result


def main(options: DemoOptions) -> int:
    result = asyncio.run(run_demo(options))
    if options.json:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["ok"] else 1
