"""The consumer workflow alone: a fake transport, a fake MEO, a fake clock.
No network, no servers: each test runs in milliseconds."""

from __future__ import annotations

import pytest

from mecfed.errors import NotFound
from mecfed.model import AppSpec, FederationRequest, FederationState, Requirements
from mef.transport.base import Fallback
from mef.workflow import ConsumerSettings, ConsumerWorkflow
from tests.mef.fakes import FakeClock, FakeOrchestrator, FakeTransport, ScriptedProvider

STEPS = ["offer_collection", "award", "deployment", "overlay", "traffic_check"]


def make(providers, fallback=Fallback.NEXT_OFFER, **settings):
    clock = FakeClock()
    meo = FakeOrchestrator("mec-00", "10.213.0.10")
    transport = FakeTransport(providers, fallback)
    workflow = ConsumerWorkflow(
        "mec-00", transport, meo, settings=ConsumerSettings(**settings), clock=clock
    )
    return workflow, transport, meo, clock


def request(k: int = 1, max_price: int = 1000, **kw) -> FederationRequest:
    return FederationRequest(
        "svc", AppSpec("mecfed/echo:1"), Requirements(max_price, offers_to_wait_for=k), **kw
    )


async def run(workflow, req=None):
    fed = await workflow.request(req or request())
    return await workflow.wait(fed.federation_id)


async def test_cheapest_offer_wins_and_every_step_is_recorded():
    workflow, _transport, meo, clock = make(
        [ScriptedProvider("p1", 300), ScriptedProvider("p2", 100)]
    )
    fed = await run(workflow, request(k=2))
    assert fed.state == FederationState.ESTABLISHED, fed.error
    assert (fed.provider_id, fed.price) == ("p2", 100)
    assert [s.name for s in fed.steps] == STEPS
    assert all(s.started_at == clock.now for s in fed.steps)  # the injected clock
    assert fed.traffic is not None and fed.traffic.ok
    assert meo.checks[0].echo_port == 7 and meo.checks[0].count == 20
    assert fed.federation_id in meo.connected


async def test_offers_above_max_price_are_ignored():
    workflow, transport, meo, _ = make([ScriptedProvider("p1", 5000)])
    fed = await run(workflow, request(max_price=1000))
    assert fed.state == FederationState.FAILED
    assert fed.error is not None and "no offer" in fed.error.detail
    assert fed.error.title == "DeadlineExceeded" and fed.error.status == 504
    assert transport.deploys == []
    assert meo.reserved == set()  # reservation released
    assert transport.terminated == [fed.federation_id]  # the transport could settle escrow


async def test_failed_winner_falls_back_to_the_next_offer():
    workflow, transport, _meo, _ = make(
        [ScriptedProvider("p1", 100, fails=True), ScriptedProvider("p2", 200)]
    )
    fed = await run(workflow, request(k=2))
    assert fed.state == FederationState.ESTABLISHED
    assert transport.deploys == ["p1", "p2"]
    assert fed.provider_id == "p2"
    assert [s.name for s in fed.steps].count("award") == 2


async def test_market_fallback_asks_the_transport_for_the_next_winner():
    workflow, transport, _, _ = make(
        [ScriptedProvider("p1", 100, fails=True), ScriptedProvider("p2", 200)], Fallback.MARKET
    )
    fed = await run(workflow, request(k=1))
    assert fed.state == FederationState.ESTABLISHED
    assert transport.awards == ["p1", "p2"]


async def test_no_further_winner_fails_with_the_providers_reason():
    workflow, _transport, meo, _ = make([ScriptedProvider("p1", 100, fails=True)])
    fed = await run(workflow)
    assert fed.state == FederationState.FAILED
    assert fed.error is not None and "no room (scripted)" in fed.error.detail
    assert fed.error.title == "DeploymentFailed"
    assert meo.released == [fed.federation_id]


async def test_attempts_are_bounded():
    providers = [ScriptedProvider(f"p{i}", 100 + i, fails=True) for i in range(5)]
    workflow, transport, _, _ = make(providers, max_deploy_attempts=3)
    fed = await run(workflow, request(k=5))
    assert fed.state == FederationState.FAILED
    assert len(transport.deploys) == 3


async def test_traffic_loss_fails_and_rolls_back():
    workflow, transport, meo, _ = make([ScriptedProvider("p1", 100)])
    meo.lose_traffic = True
    fed = await run(workflow)
    assert fed.state == FederationState.FAILED
    assert fed.error is not None and "0% loss" in fed.error.detail
    assert fed.traffic is not None and fed.traffic.loss == pytest.approx(0.5)
    assert transport.terminated == [fed.federation_id]
    assert meo.released == [fed.federation_id]


async def test_unknown_local_app_is_refused_before_anything_is_sent():
    workflow, transport, _, _ = make([ScriptedProvider("p1", 100)])
    with pytest.raises(NotFound):
        await workflow.request(
            FederationRequest("nosuch", AppSpec("mecfed/echo:1"), Requirements(1000))
        )
    assert transport.solicited == []


async def test_request_id_is_idempotent():
    workflow, transport, _, _ = make([ScriptedProvider("p1", 100)])
    first = await workflow.request(request(request_id="order-42"))
    second = await workflow.request(request(request_id="order-42"))
    assert first.federation_id == second.federation_id
    await workflow.wait(first.federation_id)
    assert len(transport.solicited) == 1


async def test_terminate_releases_both_sides_once():
    workflow, transport, meo, _ = make([ScriptedProvider("p1", 100)])
    fed = await run(workflow)
    done = await workflow.terminate(fed.federation_id)
    assert done.state == FederationState.TERMINATED
    assert transport.terminated == [fed.federation_id]
    assert fed.federation_id in meo.released
    again = await workflow.terminate(fed.federation_id)  # idempotent
    assert again.state == FederationState.TERMINATED
    assert transport.terminated == [fed.federation_id]


async def test_terminate_while_running_cancels_and_settles():
    workflow, transport, meo, _ = make([ScriptedProvider("p1", 100)])
    fed = await workflow.request(request())
    done = await workflow.terminate(fed.federation_id)  # before the task ran far
    assert done.state == FederationState.TERMINATED
    assert transport.terminated == [fed.federation_id]
    assert meo.reserved == set()
