"""Pricing: only binding commitments are load. Unaccepted quotes hold
nothing, expire fast, and cannot move another consumer's price; accepting a
quote is checked against capacity again."""

from __future__ import annotations

import pytest

from mecfed.errors import FailedPrecondition, ResourceExhausted
from mecfed.model import AppSpec, OfferPolicy, Requirements, ServiceNeed, TariffPricing
from mef.workflow import ProviderWorkflow
from mef.workflow.provider import MAX_QUOTES_PER_CONSUMER, QUOTE_TTL_MS
from tests.mef.fakes import FakeClock, ProviderMeo


def make(capacity: int = 4, validity_ms: int = 60_000):
    clock = FakeClock()
    policy = OfferPolicy(TariffPricing("DE", load_sensitivity=2.0), capacity, validity_ms)
    return ProviderWorkflow("prov", ProviderMeo(), policy, clock=clock), clock


def need(consumer: str, fid: str = "fed-1", replicas: int = 1) -> ServiceNeed:
    return ServiceNeed(fid, consumer, AppSpec("mecfed/echo:1", replicas), Requirements(10**12))


async def test_unaccepted_quotes_from_one_peer_do_not_move_anothers_price():
    provider, _ = make()
    before = (await provider.quote(need("honest", "h-0"))).price
    for i in range(3):
        await provider.quote(need("greedy", f"g-{i}", replicas=1))
    after = (await provider.quote(need("honest", "h-1"))).price
    assert after == before
    assert provider.load() == 0.0


async def test_binding_bids_and_commitments_are_load():
    provider, _ = make()
    base = (await provider.quote(need("a", "a-0"))).price
    await provider.quote(need("b", "b-0"), binding=True)  # a chain bid holds capacity
    bid_priced = (await provider.quote(need("a", "a-1"))).price
    assert bid_priced > base and provider.load() == 0.25
    offer = await provider.quote(need("c", "c-0"))
    await provider.accept(str(offer.ref), "c", "c-0")  # committed
    assert provider.load() == 0.5
    assert (await provider.quote(need("a", "a-2"))).price > bid_priced


async def test_non_binding_quotes_expire_fast_binding_ones_as_the_policy_says():
    provider, clock = make(validity_ms=3_600_000)
    quick = await provider.quote(need("a"))
    bid = await provider.quote(need("b"), binding=True)
    assert quick.valid_until - clock.now == QUOTE_TTL_MS / 1000
    assert bid.valid_until - clock.now == 3600
    clock.advance(QUOTE_TTL_MS / 1000 + 1)
    with pytest.raises(FailedPrecondition, match="expired"):
        await provider.accept(str(quick.ref), "a", "fed-1")
    await provider.accept(str(bid.ref), "b", "fed-1")


async def test_accepting_a_quote_beyond_capacity_is_refused():
    provider, _ = make(capacity=1)
    first = await provider.quote(need("a"))
    second = await provider.quote(need("b"))  # a price only: both could be asked
    await provider.accept(str(first.ref), "a", "fed-1")
    with pytest.raises(ResourceExhausted, match="can no longer be honoured"):
        await provider.accept(str(second.ref), "b", "fed-1")
    assert provider.ledger.used == 1


async def test_a_quote_cannot_be_accepted_into_capacity_a_bid_holds():
    provider, _ = make(capacity=2)
    quote = await provider.quote(need("a", replicas=2))
    await provider.quote(need("b", replicas=1), binding=True)
    with pytest.raises(ResourceExhausted):
        await provider.accept(str(quote.ref), "a", "fed-1")


async def test_quotes_one_consumer_may_hold_are_bounded():
    provider, clock = make()
    for i in range(MAX_QUOTES_PER_CONSUMER):
        await provider.quote(need("greedy", f"g-{i}"))
    with pytest.raises(ResourceExhausted, match="offers outstanding"):
        await provider.quote(need("greedy", "g-x"))
    await provider.quote(need("other"))  # nobody else is affected
    clock.advance(QUOTE_TTL_MS / 1000 + 1)
    await provider.quote(need("greedy", "g-y"))  # expired ones no longer count
