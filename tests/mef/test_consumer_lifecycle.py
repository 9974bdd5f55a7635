"""The consumer workflow's lifecycle beyond one run: terminate in every
state, releases retried until the provider acknowledges, request_id under
concurrency, restart recovery from a database file, runtime liveness.
Fakes only (tests.mef.fakes); no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mecfed.errors import ResourceExhausted
from mecfed.model import (
    AppSpec,
    Federation,
    FederationRequest,
    FederationState,
    Offer,
    Requirements,
    ServiceNeed,
)
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


# --- terminate in every state ------------------------------------------------------


class Silent(FakeTransport):
    """A market where offers take their time."""

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        self.solicited.append(need)
        await asyncio.sleep(3600)
        yield Offer("p1", 1, "never", 2e9)


async def test_terminate_during_offer_collection():
    workflow, transport, meo = make(transport=Silent([]))
    fed = await workflow.request(request(timeout_ms=60_000))
    await reach(workflow, fed.federation_id, S.COLLECTING_OFFERS)
    done = await workflow.terminate(fed.federation_id)
    assert done.state == S.TERMINATED
    assert transport.deploys == []
    assert transport.terminated == [fed.federation_id]  # the transport settles what it holds
    assert meo.reserved == set()
    assert states(done)[-2:] == [S.TERMINATING, S.TERMINATED]
    await workflow.close()


@pytest.mark.parametrize("where", ["transport", "meo"])
async def test_terminate_while_deploying_or_verifying_releases_the_provider(where):
    workflow, transport, meo = make()
    hold = asyncio.Event()
    if where == "transport":
        transport.hold = hold
        state = S.DEPLOYING
    else:
        meo.hold = hold
        state = S.VERIFYING
    fed = await workflow.request(request())
    await reach(workflow, fed.federation_id, state)
    done = await workflow.terminate(fed.federation_id)
    assert done.state == S.TERMINATED
    assert (fed.federation_id, "p1") in transport.terminate_calls
    assert fed.federation_id in meo.released
    assert meo.connected == set() and meo.reserved == set()
    hold.set()  # nothing the cancelled run left may come back to life
    await asyncio.sleep(0.05)
    assert workflow.store.get(fed.federation_id).state == S.TERMINATED
    await workflow.close()


@pytest.mark.parametrize("live", [S.ESTABLISHED, S.DEGRADED])
async def test_terminate_a_live_federation_stops_liveness(live):
    workflow, transport, meo = make()
    fed = await established(workflow)
    if live == S.DEGRADED:
        meo.lose_traffic = True
        await reach(workflow, fed.federation_id, S.DEGRADED)
    done = await workflow.terminate(fed.federation_id)
    assert done.state == S.TERMINATED
    assert not workflow.liveness.watching(fed.federation_id)
    assert transport.terminated == [fed.federation_id]
    await workflow.close()


async def test_terminate_is_idempotent_and_concurrent_calls_share_one_release():
    workflow, transport, _meo = make()
    fed = await established(workflow)
    first, second = await asyncio.gather(
        workflow.terminate(fed.federation_id), workflow.terminate(fed.federation_id)
    )
    assert first.state == second.state == S.TERMINATED
    again = await workflow.terminate(fed.federation_id)
    assert again == workflow.store.get(fed.federation_id)
    assert transport.terminated == [fed.federation_id]
    assert states(again).count(S.TERMINATED) == 1
    await workflow.close()


async def test_terminate_a_failed_federation_releases_leftovers_and_keeps_its_error():
    workflow, transport, meo = make([ScriptedProvider("p1", 100, fails=True)])
    fed = await workflow.request(request())
    failed = await workflow.wait(fed.federation_id)
    assert failed.state == S.FAILED
    done = await workflow.terminate(fed.federation_id)
    assert done.state == S.TERMINATED
    assert done.error == failed.error  # why it failed stays readable
    assert transport.terminated == [fed.federation_id] * 2
    assert meo.released.count(fed.federation_id) == 2
    await workflow.close()


async def test_unreachable_provider_is_released_once_it_is_back(tmp_path):
    path = tmp_path / "mef.db"
    workflow, transport, meo = make(db=Database(path), terminate_wait=0.05)
    fed = await established(workflow)
    transport.unreachable = True
    answer = await workflow.terminate(fed.federation_id)
    assert answer.state == S.TERMINATING  # answered promptly, still retrying
    await until(lambda: len(transport.terminate_calls) >= 3)
    assert workflow.store.get(fed.federation_id).state == S.TERMINATING
    # The MEF restarts meanwhile: the termination goes on from the record.
    await workflow.close()
    workflow.store.db.close()
    again, _, _ = make(db=Database(path), meo=meo, transport=transport)
    await again.recover()
    assert again.store.get(fed.federation_id).state == S.TERMINATING
    transport.unreachable = False
    done = await reach(again, fed.federation_id, S.TERMINATED)
    assert transport.terminated == [fed.federation_id]
    assert fed.federation_id in meo.released
    assert states(done)[-2:] == [S.TERMINATING, S.TERMINATED]
    await again.close()


# --- releases owed after failures ----------------------------------------------------


async def test_failure_with_the_provider_down_keeps_retrying_its_release():
    workflow, transport, meo = make()
    meo.lose_traffic = True
    transport.unreachable = True
    fed = await workflow.request(request())
    failed = await workflow.wait(fed.federation_id)
    assert failed.state == S.FAILED
    assert [p.provider_id for p in workflow.releases.pending(fed.federation_id)] == ["p1"]
    transport.unreachable = False
    await until(lambda: not workflow.releases.pending())
    assert transport.terminated == [fed.federation_id]
    await workflow.close()


async def test_provider_dying_during_deployment_falls_back_and_is_released():
    transport = FakeTransport([ScriptedProvider("p1", 100, dies=True), ScriptedProvider("p2", 200)])
    workflow, _, _ = make(transport=transport)
    fed = await established(workflow, request(k=2))
    assert fed.provider_id == "p2"
    await until(lambda: not workflow.releases.pending())
    assert transport.terminate_calls == [(fed.federation_id, "p1")]
    await workflow.close()


async def test_dead_provider_that_stays_down_is_released_when_it_returns():
    transport = FakeTransport([ScriptedProvider("p1", 100, dies=True), ScriptedProvider("p2", 200)])
    transport.unreachable = True
    workflow, _, _ = make(transport=transport)
    fed = await workflow.request(request(k=2))
    await until(lambda: transport.deploys == ["p1", "p2"])
    fed = await workflow.wait(fed.federation_id)
    assert fed.state == S.ESTABLISHED and fed.provider_id == "p2"
    assert [p.provider_id for p in workflow.releases.pending()] == ["p1"]
    transport.unreachable = False
    await until(lambda: not workflow.releases.pending())
    assert (fed.federation_id, "p1") in transport.terminate_calls
    await workflow.close()


async def test_a_refused_deployment_is_released_before_the_next_offer():
    # p1 answers with the consumer's own underlay address: refused, but it
    # did deploy something, which must not be left running.
    class Recording(FakeTransport):
        async def terminate(self, federation: Federation) -> None:
            self.deploys_at_release = list(self.deploys)
            await super().terminate(federation)

    transport = Recording(
        [ScriptedProvider("p1", 100, endpoint_ip="10.213.0.10"), ScriptedProvider("p2", 200)]
    )
    workflow, _, _ = make(transport=transport)
    fed = await established(workflow, request(k=2))
    assert fed.provider_id == "p2" and fed.app_instance_id == "p2/inst"
    assert transport.terminate_calls == [(fed.federation_id, "p1")]
    assert transport.deploys_at_release == ["p1"]  # released before p2 was asked
    await workflow.close()


# --- no offer: say why ---------------------------------------------------------------


class Declining(FakeTransport):
    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        if False:  # pragma: no cover - an async generator that yields nothing
            yield
        raise ResourceExhausted("providers declined: p1: no capacity left")


async def test_no_offer_names_the_transports_reason():
    workflow, _, _ = make(transport=Declining([]))
    fed = await workflow.wait((await workflow.request(request())).federation_id)
    assert fed.state == S.FAILED and fed.error is not None
    assert fed.error.title == "DeadlineExceeded"
    assert "ResourceExhausted: providers declined: p1: no capacity left" in fed.error.detail
    await workflow.close()


async def test_no_offer_says_none_arrived_or_too_dear():
    workflow, _, _ = make(transport=FakeTransport([]))
    fed = await workflow.wait((await workflow.request(request(timeout_ms=50))).federation_id)
    assert fed.error is not None and fed.error.detail.endswith("none arrived")
    workflow, _, _ = make([ScriptedProvider("p1", 5000)])
    fed = await workflow.wait((await workflow.request(request())).federation_id)
    assert fed.error is not None and "1 offer(s) above max_price" in fed.error.detail


# --- request_id under concurrency ----------------------------------------------------


async def test_one_request_id_sent_three_times_at_once_makes_one_federation(tmp_path):
    workflow, transport, meo = make(db=Database(tmp_path / "mef.db"))
    meo.require_delay = 0.02  # the check-then-create window of a real MEO call
    feds = await asyncio.gather(
        *(workflow.request(request(request_id="order-42")) for _ in range(3))
    )
    assert len({f.federation_id for f in feds}) == 1
    assert len(workflow.store) == 1
    await workflow.wait(feds[0].federation_id)
    assert len(transport.solicited) == 1
    await workflow.close()


# --- restart -------------------------------------------------------------------------


def left_behind(path, state: FederationState) -> Federation:
    """The record a crashed MEF left in ``state``."""
    store = FederationStore(Database(path))
    fed = Federation(
        "fed-left",
        "svc",
        AppSpec("mecfed/echo:1"),
        Requirements(1000),
        "mec-00",
        "fake",
        provider_id="p1" if state >= S.AWARDED else "",
        app_instance_id="p1/inst" if state >= S.CONNECTING else "",
    )
    store.add(fed, "order-left")
    fed = store.put(fed.evolve(state=state))
    store.db.close()
    return fed


IN_FLIGHT = [S.REQUESTED, S.COLLECTING_OFFERS, S.AWARDED, S.DEPLOYING, S.CONNECTING, S.VERIFYING]


@pytest.mark.parametrize("state", IN_FLIGHT)
async def test_restart_rolls_back_what_was_in_flight(tmp_path, state):
    left = left_behind(tmp_path / "mef.db", state)
    workflow, transport, meo = make(db=Database(tmp_path / "mef.db"))
    meo.reserved.add(left.federation_id)
    await workflow.recover()
    fed = workflow.store.get(left.federation_id)
    assert fed.state == S.FAILED
    assert fed.error is not None and fed.error.title == "Aborted"
    assert fed.error.detail == f"federator restarted during {state.name}"
    assert fed.history[-1].reason == fed.error.detail
    assert left.federation_id in meo.released and meo.reserved == set()
    await until(lambda: not workflow.releases.pending())
    assert transport.terminate_calls == [(left.federation_id, left.provider_id)]
    # The request id still names it: a retried request gets the same answer.
    assert (await workflow.request(request(request_id="order-left"))).state == S.FAILED
    await workflow.close()


async def test_restart_during_a_real_deployment(tmp_path):
    path = tmp_path / "mef.db"
    workflow, transport, meo = make(db=Database(path))
    transport.hold = asyncio.Event()
    fed = await workflow.request(request())
    await reach(workflow, fed.federation_id, S.DEPLOYING)
    await workflow.close()  # killed: nothing is rolled back by the dying process
    workflow.store.db.close()
    transport.hold = None
    again, _, _ = make(db=Database(path), meo=meo, transport=transport)
    await again.recover()
    assert again.store.get(fed.federation_id).state == S.FAILED
    await until(lambda: not again.releases.pending())
    assert (fed.federation_id, "p1") in transport.terminate_calls
    assert meo.reserved == set() and meo.connected == set()
    await again.close()


async def test_restart_resumes_liveness_and_reconciles_the_meo(tmp_path):
    path = tmp_path / "mef.db"
    workflow, transport, meo = make(db=Database(path), liveness_period_ms=0)
    live = await established(workflow)
    failed_meo = FakeOrchestrator("mec-00", "10.213.0.10", lose_traffic=True)
    failing, _, _ = make(db=workflow.store.db, meo=failed_meo, liveness_period_ms=0)
    failed = await failing.wait((await failing.request(request())).federation_id)
    assert failed.state == S.FAILED
    await workflow.close()
    workflow.store.db.close()
    # The MEO still holds: the live one, the failed one, and one we never knew.
    meo.reserved |= {failed.federation_id, "fed-orphan"}
    again, _, _ = make(db=Database(path), meo=meo, transport=transport)
    await again.recover()
    assert again.recovered
    assert "fed-orphan" in meo.released and failed.federation_id in meo.released
    assert live.federation_id not in meo.released
    assert again.liveness.watching(live.federation_id)
    await until(lambda: live.federation_id in meo.watches)
    await again.close()


# --- runtime liveness ---------------------------------------------------------------


async def test_liveness_degrades_and_recovers_with_reasons_and_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    workflow, _, meo = make(tracer=provider.get_tracer("test"))
    fed = await established(workflow)
    fid = fed.federation_id
    await until(lambda: workflow.store.get(fid).liveness is not None)
    meo.lose_traffic = True
    degraded = await reach(workflow, fid, S.DEGRADED)
    assert "10/20 echoes answered (50% loss)" in degraded.history[-1].reason
    assert degraded.liveness is not None and degraded.liveness.loss == 0.5
    meo.lose_traffic = False
    back = await reach(workflow, fid, S.ESTABLISHED)
    assert states(back)[-3:] == [S.ESTABLISHED, S.DEGRADED, S.ESTABLISHED]
    assert back.history[-1].reason.startswith("traffic passes")
    assert back.history[-2].at <= back.history[-1].at
    await workflow.close()
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "federation")
    liveness = [s for s in spans if s.name == "liveness"]
    # One span per transition, in the federation's trace.
    assert [s.attributes["state"] for s in liveness] == ["DEGRADED", "ESTABLISHED"]
    assert {s.context.trace_id for s in liveness} == {root.context.trace_id}
    assert liveness[0].attributes["loss"] == 0.5


async def test_a_broken_liveness_stream_degrades_then_reconnects():
    workflow, _, meo = make()
    fed = await established(workflow)
    meo.break_watch = True
    degraded = await reach(workflow, fed.federation_id, S.DEGRADED)
    assert "liveness stream failed" in degraded.history[-1].reason
    meo.break_watch = False
    await reach(workflow, fed.federation_id, S.ESTABLISHED)
    assert meo.watches.count(fed.federation_id) >= 2
    await workflow.close()


async def test_liveness_off():
    workflow, transport, meo = make(liveness_period_ms=0)
    fed = await established(workflow)
    await asyncio.sleep(0.05)
    assert meo.watches == [] and workflow.store.get(fed.federation_id).liveness is None
    assert transport.established_calls == [fed.federation_id]
    await workflow.close()


async def test_an_older_meo_without_list_or_watch_still_serves():
    from mef.meo_client import NotSupported

    class OldMeo(FakeOrchestrator):
        async def list_services(self):
            raise NotSupported("local MEO ListServices is not implemented (older MEO)")

        async def watch_traffic(self, federation_id, check, period_ms):
            self.watches.append(federation_id)
            raise NotSupported("local MEO WatchTraffic is not implemented (older MEO)")
            yield

    workflow, _, meo = make(meo=OldMeo("mec-00", "10.213.0.10"))
    await asyncio.wait_for(workflow.recover(), 2)
    assert workflow.recovered
    fed = await established(workflow)
    await until(lambda: fed.federation_id in meo.watches)
    await until(lambda: not workflow.liveness.watching(fed.federation_id))
    assert workflow.store.get(fed.federation_id).state == S.ESTABLISHED  # nothing claimed
    await workflow.close()


async def test_every_transition_is_a_span_event_in_the_federations_trace():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    workflow, _, _ = make(tracer=provider.get_tracer("test"), liveness_period_ms=0)
    fed = await established(workflow)
    await workflow.terminate(fed.federation_id)
    await workflow.close()
    spans = exporter.get_finished_spans()
    trace_ids = {s.context.trace_id for s in spans}
    assert len(trace_ids) == 1  # the run, its steps and the termination
    events = [e.attributes["state"] for s in spans for e in s.events if e.name == "state"]
    assert events[0] == "COLLECTING_OFFERS" and "ESTABLISHED" in events
    terminate = next(s for s in spans if s.name == "terminate")
    assert terminate.parent is not None


async def test_a_timed_out_deployment_is_released_before_the_next_offer():
    from mecfed.errors import DeadlineExceeded

    class Slow(FakeTransport):
        async def deploy(self, offer, order, timeout):
            if offer.provider_id == "p1":
                self.deploys.append("p1")
                raise DeadlineExceeded("p1 did not finish deploying in time")
            return await super().deploy(offer, order, timeout)

        async def terminate(self, federation: Federation) -> None:
            self.deploys_at_release = list(self.deploys)
            await super().terminate(federation)

    transport = Slow([ScriptedProvider("p1", 100), ScriptedProvider("p2", 200)])
    workflow, _, _ = make(transport=transport)
    fed = await established(workflow, request(k=2))
    assert fed.provider_id == "p2"
    assert transport.terminate_calls == [(fed.federation_id, "p1")]
    assert transport.deploys_at_release == ["p1"]
    await workflow.close()
