"""``mecfed demo``: a testbed of N MEC systems, every consumer requests one
federation at the same moment, a live progress display, a timeline, and a
machine-readable summary (``--json``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.live import Live
from rich.table import Table

from mecfed import security, tracing
from mecfed.collector import SpanCollector
from mecfed.config import SystemConfig
from mecfed.trace_view import find_traces, render_waterfall
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as meo_pb
from mecfed.v1 import orchestrator_pb2_grpc as meo_grpc

STEP_ORDER = ("offer_collection", "award", "deployment", "overlay", "traffic_check")
_STATE = {
    v.number: v.name.removeprefix("FEDERATION_STATE_").lower()
    for v in common_pb2.FederationState.DESCRIPTOR.values
}


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


@dataclass
class Outcome:
    consumer: str
    federation: federator_pb2.Federation | None = None
    error: str = ""
    history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.federation is not None
            and self.federation.state == common_pb2.FEDERATION_STATE_ESTABLISHED
        )

    def summary(self) -> dict[str, Any]:
        fed = self.federation
        if fed is None:
            return {
                "id": "",
                "consumer": self.consumer,
                "provider": "",
                "seconds": 0.0,
                "steps": {},
                "traffic": {"sent": 0, "received": 0, "loss": 1.0, "rtt_ms": 0.0},
                "error": self.error,
            }
        steps = {
            s.name: round((s.finished_at.ToNanoseconds() - s.started_at.ToNanoseconds()) / 1e9, 4)
            for s in fed.steps
        }
        seconds = (fed.updated_at.ToNanoseconds() - fed.created_at.ToNanoseconds()) / 1e9
        out: dict[str, Any] = {
            "id": fed.federation_id,
            "consumer": fed.consumer_id,
            "provider": fed.provider_id,
            "seconds": round(seconds, 4),
            "steps": steps,
            "traffic": {
                "sent": fed.traffic.sent,
                "received": fed.traffic.received,
                "loss": fed.traffic.loss if fed.traffic.sent else 1.0,
                "rtt_ms": round(fed.traffic.rtt_ms, 3),
            },
        }
        if fed.state == common_pb2.FEDERATION_STATE_FAILED:
            out["error"] = fed.error.detail
        return out


def offers_for(systems: int) -> int:
    """The paper waits for k = 1 offer below 10 systems, 2 from there on."""
    return 1 if systems < 10 else 2


async def ensure_local_app(config: SystemConfig, service: str, image: str) -> None:
    """The consumer's own service runs before it asks to extend it."""
    async with security.secure_channel(config.meo_listen, config.tls, config.system_id) as ch:
        stub = meo_grpc.MecOrchestratorStub(ch)
        try:
            await stub.GetApp(meo_pb.GetAppRequest(name=service), timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            await stub.CreateApp(
                meo_pb.CreateAppRequest(
                    name=service, spec=common_pb2.AppSpec(image=image, replicas=1)
                ),
                timeout=60,
            )


async def federate(
    config: SystemConfig,
    service: str,
    options: DemoOptions,
    start: asyncio.Event,
    outcome: Outcome,
    on_change: Any,
) -> None:
    """Requests one federation from the consumer's MEF (as its MEO would)
    and follows it to a terminal state."""
    k = options.offers_to_wait_for or offers_for(options.systems)
    async with security.secure_channel(config.mef_listen, config.tls, config.system_id) as ch:
        stub = federator_pb2_grpc.MecFederatorStub(ch)
        await ch.channel_ready()
        await start.wait()
        try:
            first = await stub.RequestFederation(
                federator_pb2.RequestFederationRequest(
                    service_name=service,
                    app=common_pb2.AppSpec(image=options.image, replicas=1),
                    requirements=common_pb2.Requirements(
                        max_price=options.max_price,
                        offers_to_wait_for=k,
                        offer_timeout_ms=options.offer_timeout_ms,
                    ),
                ),
                timeout=30,
            )
            async for fed in stub.WatchFederation(
                federator_pb2.WatchFederationRequest(federation_id=first.federation_id),
                timeout=300,
            ):
                outcome.federation = fed
                outcome.history.append((time.time(), _STATE.get(fed.state, "?")))
                on_change()
        except grpc.aio.AioRpcError as exc:
            outcome.error = f"{exc.code().name}: {exc.details()}"
            on_change()


def progress_table(outcomes: Sequence[Outcome], started: float) -> Table:
    table = Table(title=f"federations ({time.time() - started:5.1f} s)", expand=False)
    for col in ("consumer", "state", "provider", "price", "offers"):
        table.add_column(col)
    for o in outcomes:
        fed = o.federation
        state = o.error or (_STATE.get(fed.state, "?") if fed else "starting")
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


TRACE_FILE = Path("/var/lib/mecfed/traces/spans.jsonl")


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
    from meo.image import build_image

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

            tasks = [
                asyncio.create_task(federate(c, svc, options, start, o, refresh))
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
