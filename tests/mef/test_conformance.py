"""The same federation scenarios against every Mff transport."""

from __future__ import annotations

import pytest

from mecfed.model import TrafficCheck
from mecfed.v1 import common_pb2, federator_pb2
from mef.workflow import ConsumerSettings
from tests.mef.conftest import NO_OFFERS, fixed_policy

ESTABLISHED = common_pb2.FEDERATION_STATE_ESTABLISHED
FAILED = common_pb2.FEDERATION_STATE_FAILED
TERMINATED = common_pb2.FEDERATION_STATE_TERMINATED


def request(k: int = 1, max_price: int = 1000, timeout_ms: int = 2000, replicas: int = 1):
    return federator_pb2.RequestFederationRequest(
        service_name="svc",
        app=common_pb2.AppSpec(image="mecfed/echo:1", replicas=replicas),
        requirements=common_pb2.Requirements(
            max_price=max_price, offers_to_wait_for=k, offer_timeout_ms=timeout_ms
        ),
    )


async def run_to_end(node, req) -> federator_pb2.Federation:
    async with node.channel() as ch:
        stub = node.federator(ch)
        fed = await stub.RequestFederation(req, timeout=10)
        updates = [
            update
            async for update in stub.WatchFederation(
                federator_pb2.WatchFederationRequest(federation_id=fed.federation_id), timeout=30
            )
        ]
        return updates[-1]


async def test_cheapest_of_k_offers_wins(federation_net):
    consumer, cheap, dear = await federation_net([NO_OFFERS, fixed_policy(100), fixed_policy(300)])
    fed = await run_to_end(consumer, request(k=2))
    assert fed.state == ESTABLISHED, fed.error.detail
    assert fed.provider_id == cheap.system_id
    assert fed.price == 100
    assert {o.provider_id for o in fed.offers} == {cheap.system_id, dear.system_id}
    assert [s.name for s in fed.steps] == [
        "offer_collection",
        "award",
        "deployment",
        "overlay",
        "traffic_check",
    ]
    assert fed.traffic.sent == 20 and fed.traffic.received == 20 and fed.traffic.loss == 0
    assert fed.federation_id in cheap.meo.deployed
    assert dear.meo.deployed == {}
    assert fed.federation_id in consumer.meo.connected
    assert fed.backend == consumer.config.backend


async def test_offers_above_max_price_are_not_taken(federation_net):
    consumer, pricey = await federation_net([NO_OFFERS, fixed_policy(5000)])
    fed = await run_to_end(consumer, request(max_price=1000, timeout_ms=500))
    assert fed.state == FAILED
    assert "no offer" in fed.error.detail
    assert pricey.meo.deployed == {}
    assert consumer.meo.reserved == set()  # reservation released


async def test_fewer_than_k_offers_still_federates(federation_net, transport_kind):
    consumer, only = await federation_net([NO_OFFERS, fixed_policy(100)])
    # k = 3 can never be met with one provider: the consumer takes what came
    # when bidding closes. Directly that is as soon as every peer answered;
    # on the chain it is the first block past the bidding deadline.
    fed = await run_to_end(consumer, request(k=3, timeout_ms=1500))
    assert fed.state == ESTABLISHED, fed.error.detail
    assert fed.provider_id == only.system_id
    assert fed.steps[0].name == "offer_collection"
    took = fed.steps[0].finished_at.ToNanoseconds() - fed.steps[0].started_at.ToNanoseconds()
    assert took < (1e9 if transport_kind == "direct" else 8e9)


async def test_failed_deployment_falls_back_to_next_offer(federation_net, transport_kind):
    # Direct: the consumer takes its next offer. Chain: the failed winner
    # declines on-chain, the contract reopens the auction and awards it anew.
    consumer, broken, fine = await federation_net([NO_OFFERS, fixed_policy(100), fixed_policy(200)])
    broken.meo.fail_deploy = True
    fed = await run_to_end(consumer, request(k=2))
    assert fed.state == ESTABLISHED, fed.error.detail
    assert fed.provider_id == fine.system_id
    assert broken.meo.deployed == {}
    # The broken provider freed the capacity it had committed.
    assert broken.mef.provider.ledger.used == 0


async def test_all_deployments_failing_reports_and_cleans_up(federation_net):
    consumer, broken = await federation_net([NO_OFFERS, fixed_policy(100)])
    broken.meo.fail_deploy = True
    fed = await run_to_end(consumer, request())
    assert fed.state == FAILED
    assert "image pull failed" in fed.error.detail
    assert consumer.meo.reserved == set()
    assert broken.mef.provider.ledger.used == 0


async def test_traffic_loss_fails_and_rolls_back_both_sides(federation_net):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    consumer.meo.lose_traffic = True
    fed = await run_to_end(consumer, request())
    assert fed.state == FAILED
    assert "0% loss" in fed.error.detail
    assert fed.traffic.loss == pytest.approx(0.5)
    assert provider.meo.deployed == {}
    assert fed.federation_id in provider.meo.released
    assert fed.federation_id in consumer.meo.released
    assert provider.mef.provider.ledger.used == 0


async def test_terminate_releases_both_sides(federation_net):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)])
    fed = await run_to_end(consumer, request())
    assert fed.state == ESTABLISHED
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        done = await stub.TerminateFederation(
            federator_pb2.TerminateFederationRequest(federation_id=fed.federation_id), timeout=10
        )
        assert done.state == TERMINATED
        # Idempotent: terminating a terminated federation returns it as it is.
        again = await stub.TerminateFederation(
            federator_pb2.TerminateFederationRequest(federation_id=fed.federation_id),
            timeout=10,
        )
        assert again.state == TERMINATED
    assert provider.meo.deployed == {}
    assert provider.mef.provider.ledger.used == 0
    assert fed.federation_id not in consumer.meo.connected


async def test_load_prices_a_busy_provider_up(federation_net):
    # The cheaper provider wins first; once it carries load its tariff rises
    # above the other's, so the next consumer goes elsewhere (the reference
    # implementation sent every federation to one provider).
    def tariff(watt_hours: int) -> dict:
        return {
            "tariff": {"region": "ES", "wattHoursPerReplica": watt_hours, "loadSensitivity": 4},
            "capacityReplicas": 2,
        }

    c1, c2, cheap, dear = await federation_net([NO_OFFERS, NO_OFFERS, tariff(100), tariff(120)])
    first = await run_to_end(c1, request(k=2, max_price=10**12))
    second = await run_to_end(c2, request(k=2, max_price=10**12))
    assert first.state == second.state == ESTABLISHED
    assert first.provider_id == cheap.system_id
    assert second.provider_id == dear.system_id
    assert second.price > first.price


async def test_unreachable_provider_is_skipped(federation_net):
    settings = ConsumerSettings(traffic=TrafficCheck(count=5))
    consumer, fast, slow = await federation_net(
        [NO_OFFERS, fixed_policy(200), fixed_policy(100)], settings=settings
    )
    await slow.mef.stop(grace=0)  # down: its offer never comes
    fed = await run_to_end(consumer, request(k=2, timeout_ms=700))
    assert fed.state == ESTABLISHED, fed.error.detail
    assert fed.provider_id == fast.system_id
    assert fed.traffic.sent == 5


async def test_idempotent_request_id(federation_net):
    consumer, _ = await federation_net([NO_OFFERS, fixed_policy(100)])
    req = request()
    req.request_id = "order-42"
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        first = await stub.RequestFederation(req, timeout=10)
        second = await stub.RequestFederation(req, timeout=10)
    assert first.federation_id == second.federation_id


async def test_provider_never_commits_beyond_capacity(federation_net):
    # Two consumers at once, one provider with room for one replica: one
    # federation is established, the other fails cleanly (on the chain the
    # provider does not even bid twice, since a bid can be awarded unasked).
    c1, c2, provider = await federation_net([NO_OFFERS, NO_OFFERS, fixed_policy(100, capacity=1)])
    import asyncio

    feds = await asyncio.gather(
        run_to_end(c1, request(timeout_ms=1500)), run_to_end(c2, request(timeout_ms=1500))
    )
    assert sorted(f.state for f in feds) == [ESTABLISHED, FAILED]
    assert provider.mef.provider.ledger.used == 1
    assert len(provider.meo.deployed) == 1


async def test_a_losing_bid_holds_no_capacity(federation_net):
    # k = 1 and two providers with room for one replica each: whoever
    # loses the first auction (on the chain its bid may even be refused
    # because the first closed the auction) must still serve the second.
    consumer, a, b = await federation_net(
        [NO_OFFERS, fixed_policy(100, capacity=1), fixed_policy(100, capacity=1)]
    )
    first = await run_to_end(consumer, request(k=1))
    assert first.state == ESTABLISHED, first.error.detail
    second = await run_to_end(consumer, request(k=1))
    assert second.state == ESTABLISHED, second.error.detail
    assert {first.provider_id, second.provider_id} == {a.system_id, b.system_id}
