"""Shared set-up of the consumer workflow tests: the workflow on fakes
(tests.mef.fakes), fast retries, polling helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mecfed.model import AppSpec, Federation, FederationRequest, FederationState, Requirements
from mecfed.storage import Database
from mef.federations import FederationStore
from mef.workflow import ConsumerSettings, ConsumerWorkflow
from mef.workflow.upkeep import Backoff
from tests.mef.fakes import FakeOrchestrator, FakeTransport, ScriptedProvider

S = FederationState
FAST = Backoff(first=0.01, most=0.05)


def settings(**kw) -> ConsumerSettings:
    base: dict = {"liveness_period_ms": 10, "retry": FAST, "terminate_wait": 1.0}
    base.update(kw)
    return ConsumerSettings(**base)


def make(
    providers=None,
    *,
    db: Database | None = None,
    meo: FakeOrchestrator | None = None,
    transport: FakeTransport | None = None,
    tracer=None,
    **kw,
):
    meo = meo or FakeOrchestrator("mec-00", "10.213.0.10")
    transport = transport or FakeTransport(providers or [ScriptedProvider("p1", 100)])
    workflow = ConsumerWorkflow(
        "mec-00",
        transport,
        meo,
        store=FederationStore(db),
        settings=settings(**kw),
        tracer=tracer,
    )
    return workflow, transport, meo


def request(k: int = 1, timeout_ms: int = 3000, **kw) -> FederationRequest:
    return FederationRequest(
        "svc",
        AppSpec("mecfed/echo:1"),
        Requirements(1000, offers_to_wait_for=k, offer_timeout_ms=timeout_ms),
        **kw,
    )


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Polls ``predicate`` (the fakes have no events to wait on)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling fakes without events
            await asyncio.sleep(0.005)


async def reach(workflow: ConsumerWorkflow, fid: str, state: FederationState) -> Federation:
    await until(lambda: workflow.store.get(fid).state == state)
    return workflow.store.get(fid)


async def established(workflow: ConsumerWorkflow, req: FederationRequest | None = None):
    fed = await workflow.request(req or request())
    fed = await workflow.wait(fed.federation_id)
    assert fed.state == S.ESTABLISHED, fed.error
    return fed


def states(fed: Federation) -> list[FederationState]:
    return [h.state for h in fed.history]
