"""The provider workflow and the deployments registry alone: a fake MEO and a
fake clock, no network."""

from __future__ import annotations

import asyncio

import pytest

from mecfed.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from mecfed.model import (
    AppSpec,
    FixedPricing,
    Installation,
    InstanceState,
    OfferPolicy,
    OverlayEndpoint,
    Requirements,
    ServiceNeed,
    TunnelCandidate,
)
from mef.deployments import Deployments
from mef.transport.base import Admission
from mef.transport.direct import TlsGate
from mef.workflow import ProviderWorkflow
from tests.mef.fakes import FakeClock, FakeOrchestrator


def make(capacity: int = 4, validity_ms: int = 60_000, price: int = 100):
    clock = FakeClock()
    meo = FakeOrchestrator("prov", "10.213.0.20")
    policy = OfferPolicy(FixedPricing(price), capacity, validity_ms)
    return ProviderWorkflow("prov", meo, policy, clock=clock), meo, clock


def need(consumer: str = "cons", fid: str = "fed-1", replicas: int = 1, max_price: int = 1000):
    return ServiceNeed(fid, consumer, AppSpec("mecfed/echo:1", replicas), Requirements(max_price))


def installation(fid: str = "fed-1", offer_id: str = "x") -> Installation:
    return Installation(
        offer_id,
        fid,
        OverlayEndpoint("10.213.0.10", "172.30.1.0/24", ("172.30.1.1",)),
        (TunnelCandidate(5000, 4789),),
    )


async def test_quote_accept_deploy_release():
    provider, _meo, _ = make()
    offer = await provider.quote(need())
    app = await provider.accept(str(offer.ref), "cons", "fed-1")
    assert app.replicas == 1 and provider.ledger.used == 1
    await provider.release("fed-1", "cons")
    assert provider.ledger.used == 0


async def test_no_offers_for_own_services_or_above_max_price():
    provider, _, _ = make(price=2000)
    with pytest.raises(FailedPrecondition, match="own services"):
        await provider.quote(need(consumer="prov"))
    with pytest.raises(FailedPrecondition, match="above max_price"):
        await provider.quote(need(max_price=1000))


async def test_binding_quotes_hold_capacity():
    provider, _, _ = make(capacity=2)
    await provider.quote(need(fid="a", replicas=2), binding=True)
    with pytest.raises(ResourceExhausted):
        await provider.quote(need(fid="b"), binding=True)
    # A non-binding quote is only a price: it may still be asked for.
    await provider.quote(need(fid="c"))


async def test_offers_expire_on_the_injected_clock():
    provider, _, clock = make(validity_ms=1000)
    offer = await provider.quote(need())
    clock.advance(2)
    with pytest.raises(FailedPrecondition, match="expired"):
        await provider.accept(str(offer.ref), "cons", "fed-1")


async def test_an_offer_is_for_its_consumer_and_federation_only():
    provider, _, _ = make()
    offer = await provider.quote(need())
    with pytest.raises(PermissionDenied):
        await provider.accept(str(offer.ref), "someone-else", "fed-1")
    with pytest.raises(FailedPrecondition, match="federation"):
        await provider.accept(str(offer.ref), "cons", "fed-2")


async def test_deployments_registry_runs_an_order_to_ready_and_removes_it():
    provider, meo, _ = make()
    deployments = Deployments(provider, TlsGate())
    offer = await provider.quote(need())
    dep = await deployments.install(
        installation(offer_id=str(offer.ref)), Admission("cons", str(offer.ref), "cons")
    )
    states = [d.state async for d in dep.changes()]
    assert states[-1] == InstanceState.READY
    assert "fed-1" in meo.deployed
    with pytest.raises(NotFound):  # only its caller sees it
        deployments.get(dep.app_instance_id, "intruder")
    await deployments.remove(dep.app_instance_id, "cons")
    assert dep.state == InstanceState.TERMINATED
    assert meo.deployed == {} and provider.ledger.used == 0
    again = await deployments.remove(dep.app_instance_id, "cons")  # idempotent
    assert again.state == InstanceState.TERMINATED


async def test_a_fast_failure_is_reported_to_watchers():
    provider, meo, _ = make()
    meo.fail_deploy = True
    deployments = Deployments(provider, TlsGate())
    offer = await provider.quote(need())
    dep = await deployments.install(
        installation(offer_id=str(offer.ref)), Admission("cons", str(offer.ref), "cons")
    )
    await asyncio.sleep(0.01)  # the MEO refused within milliseconds
    final = [d async for d in dep.changes()][-1]
    assert final.state == InstanceState.FAILED
    assert final.error is not None and "image pull failed" in final.error.detail
    assert provider.ledger.used == 0


async def test_same_federation_id_from_two_consumers_does_not_collide():
    provider, _, _ = make()
    deployments = Deployments(provider, TlsGate())
    a = await provider.quote(need(consumer="a"))
    await deployments.install(installation(offer_id=str(a.ref)), Admission("a", str(a.ref), "a"))
    with pytest.raises(AlreadyExists):
        await deployments.install(
            installation(offer_id=str(a.ref)), Admission("a", str(a.ref), "a")
        )
    b = await provider.quote(need(consumer="b"))
    found = await deployments.install(
        installation(offer_id=str(b.ref)), Admission("b", str(b.ref), "b")
    )
    assert found.consumer_id == "b"
