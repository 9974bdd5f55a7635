"""Drives the benchmark: one testbed per (backend, block time, N) point,
R runs on it, every consumer requesting at the same moment (as ``mecfed
demo`` does), traces and resource samples per run."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc

from benchmarks import SYSTEMS
from benchmarks.sampler import ResourceSampler, Sample, Target, container_targets
from benchmarks.traces import step_seconds, wait_for_roots
from mecfed.cli.collector import SpanCollector
from mecfed.cli.federate import Outcome, RequestOptions, ensure_local_app, federate, offers_for
from mecfed.config import SystemConfig
from mecfed.rpc.security import secure_channel
from mecfed.testbed.plan import split_roles
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc

if TYPE_CHECKING:
    from mecfed.testbed import Testbed, TestbedState

log = logging.getLogger(__name__)

# States a federation can leave only by termination (or failure).
_LIVE_STATES = [
    common_pb2.FEDERATION_STATE_REQUESTED,
    common_pb2.FEDERATION_STATE_COLLECTING_OFFERS,
    common_pb2.FEDERATION_STATE_AWARDED,
    common_pb2.FEDERATION_STATE_DEPLOYING,
    common_pb2.FEDERATION_STATE_CONNECTING,
    common_pb2.FEDERATION_STATE_VERIFYING,
    common_pb2.FEDERATION_STATE_ESTABLISHED,
]


@dataclass
class BenchOptions:
    systems: list[int] = field(default_factory=lambda: list(SYSTEMS))
    runs: int = 20
    backends: list[str] = field(default_factory=lambda: ["chain", "direct"])
    block_times: list[float] = field(default_factory=lambda: [5.0])
    out: Path = Path("benchmarks/results")
    testbed: str = "mfbench"
    subnet: str = "10.215.0.0/16"
    image: str = "mecfed/echo:1"
    seed: int = 0
    offer_timeout_ms: int = 3000
    run_timeout: float = 300.0  # one run, all consumers; bounds a hung run
    trace_timeout: float = 15.0  # waiting for a run's root spans
    keep: bool = False  # leave the last testbed up


@dataclass
class FederationRow:
    backend: str
    block_time: float | None
    n: int
    k: int
    run: int
    consumer: str
    federation_id: str = ""
    provider: str = ""
    price: int = 0
    offers: int = 0
    ok: bool = False
    state: str = ""
    error: str = ""
    e2e_s: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # from the traces
    steps_from_trace: bool = False
    sent: int = 0
    received: int = 0
    loss: float = 1.0
    rtt_ms: float = 0.0
    terminated: bool = False  # terminated and capacity freed before the next run


@dataclass
class SampleRow:
    backend: str
    block_time: float | None
    n: int
    run: int
    sample: Sample


@dataclass
class BenchResult:
    federations: list[FederationRow] = field(default_factory=list)
    samples: list[SampleRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Reporter(Protocol):
    """What the runner tells the progress display."""

    def point(self, label: str, runs: int) -> None: ...
    def status(self, text: str) -> None: ...
    def run_done(self, rows: list[FederationRow]) -> None: ...


class SilentReporter:
    """The default :class:`Reporter`: tells nobody."""

    def point(self, label: str, runs: int) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def run_done(self, rows: list[FederationRow]) -> None:
        pass


def points(opts: BenchOptions) -> list[tuple[str, float | None, int]]:
    """(backend, block time, N); the block time only matters for the chain."""
    out: list[tuple[str, float | None, int]] = []
    for backend in opts.backends:
        for bt in opts.block_times if backend == "chain" else [None]:
            out.extend((backend, bt, n) for n in opts.systems)
    return out


async def run_bench(
    opts: BenchOptions, collector: SpanCollector, reporter: Reporter | None = None
) -> BenchResult:
    from mecfed.testbed import Testbed
    from meo.image import build_image  # the app image is the MEO's

    reporter = reporter or SilentReporter()
    result = BenchResult()
    reporter.status("building the app image")
    await asyncio.to_thread(build_image, opts.image)
    testbed = Testbed(name=opts.testbed, subnet=opts.subnet)
    try:
        for backend, bt, n in points(opts):
            label = f"{backend}" + (f" {bt:g}s" if bt else "") + f" N={n}"
            reporter.point(label, opts.runs)
            reporter.status(f"{label}: bringing up the testbed")
            try:
                state = await _bring_up(testbed, opts, backend, bt, n, collector.port)
            except Exception as exc:
                # Counted, not dropped: every run of the point fails with the cause.
                error = f"bring-up failed: {exc}"
                _point_failed(result, reporter, range(opts.runs), backend, bt, n, error)
                continue
            try:
                await _run_point(
                    opts, testbed.name, state, backend, bt, n, collector, result, reporter
                )
            except Exception as exc:
                # E.g. a consumer's MEO refused its local service: the runs
                # not measured are counted as failed; the sweep goes on.
                log.exception("point %s failed", label)
                done = {
                    r.run
                    for r in result.federations
                    if (r.backend, r.block_time, r.n) == (backend, bt, n)
                }
                missing = [r for r in range(opts.runs) if r not in done]
                error = f"{type(exc).__name__}: {exc}"
                _point_failed(result, reporter, missing, backend, bt, n, error)
    finally:
        if not opts.keep:
            reporter.status("tearing down the testbed")
            await testbed.down()
    return result


async def _bring_up(
    testbed: Testbed, opts: BenchOptions, backend: str, bt: float | None, n: int, port: int
) -> TestbedState:
    """Same parameters keep what runs; new ones rebuild (Testbed.up). One
    retry: a bring-up that fails is torn down by the next ``up``."""
    for attempt in (1, 2):
        try:
            return await testbed.up(
                n,
                backend=backend,
                vim="docker",
                image=opts.image,
                block_time=bt if bt is not None else 1.0,
                otlp_endpoint=f"http://127.0.0.1:{port}",
                seed=opts.seed,
            )
        except Exception:
            if attempt == 2:
                raise
            log.warning("bring-up of %s N=%d failed; retrying once", backend, n, exc_info=True)
    raise AssertionError("unreachable")


def _point_failed(
    result: BenchResult,
    reporter: Reporter,
    runs: Iterable[int],
    backend: str,
    bt: float | None,
    n: int,
    error: str,
) -> None:
    consumers = split_roles(n).count("consumer")
    result.notes.append(f"{backend} N={n}: {error}")
    for run in runs:
        rows = [
            FederationRow(backend, bt, n, offers_for(n), run, f"consumer-{i + 1}", error=error)
            for i in range(consumers)
        ]
        result.federations += rows
        reporter.run_done(rows)


async def _run_point(
    opts: BenchOptions,
    testbed: str,
    state: TestbedState,
    backend: str,
    bt: float | None,
    n: int,
    collector: SpanCollector,
    result: BenchResult,
    reporter: Reporter,
) -> None:
    consumers = state.consumers
    configs = [SystemConfig.load(s.config_path) for s in consumers]
    services = [f"svc-{c.system_id}" for c in configs]
    k = offers_for(n)
    request = RequestOptions(
        image=opts.image, offers_to_wait_for=k, offer_timeout_ms=opts.offer_timeout_ms
    )
    reporter.status(f"{backend} N={n}: starting the consumers' local services")
    # The consumers' own services stay across runs; only federations change.
    pairs = zip(configs, services, strict=True)
    await asyncio.gather(*(ensure_local_app(c, s, opts.image) for c, s in pairs))
    baseline = _app_count(await asyncio.to_thread(container_targets, testbed))
    spares = state.params.get("warm_pool", 0) * len(state.providers)
    fixed = _fixed_targets(state)
    # Requests arrive at random points of the block cycle, as in real use:
    # back-to-back runs would otherwise all start just after the block that
    # mined the previous run's termination, i.e. at the worst phase.
    phase = random.Random(opts.seed)
    for run in range(opts.runs):
        if bt:
            await asyncio.sleep(phase.uniform(0, bt))
        reporter.status(f"{backend} N={n}: run {run + 1}/{opts.runs}")
        outcomes = [Outcome(c.system_id) for c in configs]
        sampler = ResourceSampler(fixed, testbed, max_seconds=opts.run_timeout + 30)
        sampler.start()
        try:
            await _one_run(configs, services, request, outcomes, opts.run_timeout)
        finally:
            samples = await asyncio.to_thread(sampler.stop)
        result.samples += [SampleRow(backend, bt, n, run, s) for s in samples]
        rows = [_row(o, backend, bt, n, k, run) for o in outcomes]
        ids = {r.federation_id for r in rows if r.federation_id}
        roots = await wait_for_roots(collector, ids, opts.trace_timeout)
        for r in rows:
            root = roots.get(r.federation_id)
            if root is not None:
                r.steps = step_seconds(collector.spans, root)
                r.steps_from_trace = bool(r.steps)
        # Everything is in spans.jsonl already; memory stays flat over long sweeps.
        collector.spans.clear()
        reporter.status(f"{backend} N={n}: run {run + 1}: terminating federations")
        freed, note = await _terminate(configs, outcomes, testbed, baseline, spares)
        for r in rows:
            r.terminated = freed
        if not freed:
            result.notes.append(f"{backend} N={n} run {run}: {note}")
        result.federations += rows
        reporter.run_done(rows)


def _fixed_targets(state: TestbedState) -> list[Target]:
    out = [Target(comp, s.system_id, pid) for s in state.systems for comp, pid in s.pids.items()]
    chain_pid = (state.chain or {}).get("pid")
    if chain_pid:
        out.append(Target("chain", "anvil", int(chain_pid)))
    return out


async def _one_run(
    configs: list[SystemConfig],
    services: list[str],
    request: RequestOptions,
    outcomes: list[Outcome],
    timeout: float,
) -> None:
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(federate(c, s, request, start, o, lambda: None))
        for c, s, o in zip(configs, services, outcomes, strict=True)
    ]
    await asyncio.sleep(0)
    start.set()  # every consumer requests at the same moment
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for o, t in zip(outcomes, tasks, strict=True):
        if t in pending and not o.error:
            o.error = f"run timed out after {timeout:g} s"
        elif t in done and t.exception() is not None and not o.error:
            o.error = f"{type(t.exception()).__name__}: {t.exception()}"


def _row(o: Outcome, backend: str, bt: float | None, n: int, k: int, run: int) -> FederationRow:
    row = FederationRow(backend, bt, n, k, run, o.consumer, error=o.error)
    fed = o.federation
    if fed is None:
        return row
    s = o.summary()
    row.federation_id = fed.federation_id
    row.provider = fed.provider_id
    row.price = fed.price
    row.offers = len(fed.offers)
    row.ok = o.ok and not o.error
    row.state = common_pb2.FederationState.Name(fed.state).removeprefix("FEDERATION_STATE_")
    row.error = o.error or s.get("error", "")
    if not row.ok and not row.error:
        row.error = f"ended in state {row.state}"
    row.e2e_s = s["seconds"]
    tr = s["traffic"]
    row.sent, row.received, row.loss, row.rtt_ms = (
        tr["sent"],
        tr["received"],
        tr["loss"],
        tr["rtt_ms"],
    )
    return row


def _app_count(targets: list[Target]) -> int:
    return sum(1 for t in targets if t.component == "app")


async def _terminate(
    configs: list[SystemConfig],
    outcomes: list[Outcome],
    testbed: str,
    baseline: int,
    spares: int,
) -> tuple[bool, str]:
    """Terminates every federation of the run (over Mfm, as the consumer's
    MEO would) and checks that it took: no live federation left at any
    consumer, and the providers' app containers are gone again. Then waits
    for the providers' warm pools to be full again, so that every run starts
    from the same state (as a provider idle between bursts would be)."""
    # All at once: on the chain each termination waits for its transaction,
    # and one block can carry all of them.
    results = await asyncio.gather(
        *(_terminate_one(cfg, o) for cfg, o in zip(configs, outcomes, strict=True)),
        return_exceptions=True,
    )
    problems: list[str] = []
    for cfg, res in zip(configs, results, strict=True):
        if isinstance(res, grpc.aio.AioRpcError):  # e.g. the consumer's MEF is gone
            problems.append(f"{cfg.system_id}: {res.code().name} {res.details()}")
        elif isinstance(res, BaseException):
            raise res
        else:
            problems += res
    # Provider-side containers are removed by the rollback; allow it a moment.
    deadline = time.monotonic() + 20
    found = await asyncio.to_thread(container_targets, testbed)
    while _app_count(found) > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await asyncio.to_thread(container_targets, testbed)
    if _app_count(found) > baseline:
        problems.append(f"{_app_count(found) - baseline} federated app containers left")
    deadline = time.monotonic() + 120
    while len(found) - _app_count(found) < spares and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await asyncio.to_thread(container_targets, testbed)
    if (idle := len(found) - _app_count(found)) < spares:
        problems.append(f"warm pools hold {idle} of {spares} spares")
    return not problems, "; ".join(problems)


async def _terminate_one(cfg: SystemConfig, o: Outcome) -> list[str]:
    problems: list[str] = []
    async with secure_channel(cfg.mef_listen, cfg.tls, cfg.system_id) as ch:
        stub = federator_pb2_grpc.MecFederatorStub(ch)
        if o.federation is not None:
            fid = o.federation.federation_id
            try:
                await stub.TerminateFederation(
                    federator_pb2.TerminateFederationRequest(federation_id=fid), timeout=60
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # already ended
                    problems.append(f"terminate {fid}: {exc.code().name} {exc.details()}")
        live = await stub.ListFederations(
            federator_pb2.ListFederationsRequest(states=_LIVE_STATES), timeout=30
        )
        if live.federations:
            problems.append(f"{cfg.system_id}: {len(live.federations)} federations still live")
    return problems
