"""Leaks on terminate: a removal (RemoveApp, or the provider's release from
the chain) may arrive at any point of a deployment; whatever the timing,
nothing is left at the MEO, the capacity is free, and watchers see a final
state."""

from __future__ import annotations

import asyncio

import pytest

from mecfed.errors import NotFound, Unavailable
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
from mef.deployments import REMOVED, Deployment, Deployments
from mef.transport.base import Admission
from mef.transport.direct import TlsGate
from mef.workflow import ProviderWorkflow
from tests.mef.fakes import FakeClock, ProviderMeo


class SlowGate(TlsGate):
    """A gate whose deployment notice takes a while (as a chain confirmation)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def deployed(self, deployment: Deployment) -> bytes:
        await self.release.wait()
        return b"notice"


def make(meo: ProviderMeo | None = None, gate: TlsGate | None = None):
    meo = meo or ProviderMeo()
    provider = ProviderWorkflow("prov", meo, OfferPolicy(FixedPricing(100), 2), clock=FakeClock())
    return provider, Deployments(provider, gate or TlsGate()), meo


async def install(provider, deployments, consumer: str = "cons", fid: str = "fed-1"):
    need = ServiceNeed(fid, consumer, AppSpec("mecfed/echo:1", 1), Requirements(1000))
    offer = await provider.quote(need)
    inst = Installation(
        str(offer.ref),
        fid,
        OverlayEndpoint("10.213.0.10", "172.30.1.0/24", ("172.30.1.1",)),
        (TunnelCandidate(5000, 4789),),
    )
    return await deployments.install(inst, Admission(consumer, str(offer.ref), consumer))


def nothing_left(provider, meo) -> None:
    assert meo.services == {}
    assert provider.ledger.used == 0 and provider.committed() == {}


async def final_of(dep: Deployment):
    return [d async for d in dep.changes()][-1]


@pytest.mark.parametrize("ticks", range(8))
async def test_remove_at_any_point_leaves_nothing(ticks):
    provider, deployments, meo = make()
    dep = await install(provider, deployments)
    watch = asyncio.create_task(final_of(dep))
    for _ in range(ticks):
        await asyncio.sleep(0)
    removed = await deployments.remove(dep.app_instance_id, "cons")
    assert removed.state == InstanceState.TERMINATED
    # A watch ends at the first terminal state: READY if it got that far.
    assert (await watch).state in (InstanceState.READY, InstanceState.TERMINATED)
    await dep.settled()
    nothing_left(provider, meo)
    assert ("cons", "fed-1") in meo.released


async def test_remove_while_the_meo_deploys_cancels_it():
    provider, deployments, meo = make(ProviderMeo(hold=asyncio.Event()))
    dep = await install(provider, deployments)
    await asyncio.sleep(0.01)
    assert meo.started == [("cons", "fed-1")]
    removed = await deployments.remove(dep.app_instance_id, "cons")
    assert meo.cancelled == [("cons", "fed-1")]
    assert removed.state == InstanceState.TERMINATED
    assert removed.error is not None and removed.error.detail == REMOVED
    assert meo.hold is not None
    meo.hold.set()  # the MEO's call would have finished now: nothing comes back
    await asyncio.sleep(0.01)
    nothing_left(provider, meo)
    # The consumer may order the same federation again.
    assert (await install(provider, deployments)).state == InstanceState.PENDING


async def test_remove_while_the_notice_is_made_releases_after_it():
    gate = SlowGate()
    provider, deployments, meo = make(gate=gate)
    dep = await install(provider, deployments)
    await asyncio.sleep(0.01)
    assert set(meo.services) == {("cons", "fed-1")}  # deployed, notice pending
    removal = asyncio.create_task(deployments.remove(dep.app_instance_id, "cons"))
    await asyncio.sleep(0.01)
    gate.release.set()
    assert (await removal).state == InstanceState.TERMINATED
    nothing_left(provider, meo)


async def test_concurrent_removals_share_one_outcome():
    provider, deployments, meo = make(ProviderMeo(hold=asyncio.Event()))
    dep = await install(provider, deployments)
    await asyncio.sleep(0)
    results = await asyncio.gather(
        *(deployments.remove(dep.app_instance_id, "cons") for _ in range(3)),
        deployments.remove_by_federation("fed-1", "cons"),
    )
    assert {r.state for r in results} == {InstanceState.TERMINATED}
    nothing_left(provider, meo)


async def test_a_release_from_the_chain_during_deployment_fails_it_cleanly():
    provider, deployments, meo = make(ProviderMeo(hold=asyncio.Event()))
    dep = await install(provider, deployments)
    await asyncio.sleep(0.01)
    await provider.release("fed-1", "cons")  # the contract says cancelled
    final = await final_of(dep)
    assert final.state == InstanceState.FAILED
    assert final.error is not None and "released while deploying" in final.error.detail
    nothing_left(provider, meo)


async def test_a_removal_the_meo_cannot_take_keeps_the_capacity_and_can_be_retried():
    provider, deployments, meo = make()
    dep = await install(provider, deployments)
    await dep.settled()
    meo.unavailable = True
    with pytest.raises(Unavailable):
        await deployments.remove(dep.app_instance_id, "cons")
    assert dep.state == InstanceState.TERMINATING
    assert provider.ledger.used == 1  # still deployed: not free for others
    meo.unavailable = False
    assert (await deployments.remove(dep.app_instance_id, "cons")).state == (
        InstanceState.TERMINATED
    )
    nothing_left(provider, meo)


async def test_release_is_idempotent_in_every_state():
    provider, deployments, meo = make(ProviderMeo(hold=asyncio.Event()))
    await provider.release("fed-0", "cons")  # unknown
    need = ServiceNeed("fed-q", "cons", AppSpec("mecfed/echo:1", 2), Requirements(1000))
    await provider.quote(need, binding=True)  # a bid holding everything
    await provider.release("fed-q", "cons")
    assert provider.load() == 0.0
    offer = await provider.quote(need)
    await provider.accept(str(offer.ref), "cons", "fed-q")  # accepted, never deployed
    await provider.release("fed-q", "cons")
    await provider.release("fed-q", "cons")
    assert provider.ledger.used == 0
    dep = await install(provider, deployments)  # deploying
    await asyncio.sleep(0.01)
    await asyncio.gather(provider.release("fed-1", "cons"), provider.release("fed-1", "cons"))
    await dep.settled()
    nothing_left(provider, meo)


async def test_remove_by_federation_finds_only_the_callers_own():
    provider, deployments, meo = make()
    mine = await install(provider, deployments, consumer="a")
    theirs = await install(provider, deployments, consumer="b")  # the same federation id
    await mine.settled()
    await theirs.settled()
    assert {o.consumer_id for o in meo.orders} == {"a", "b"}
    with pytest.raises(NotFound):
        await deployments.remove_by_federation("fed-1", "intruder")
    with pytest.raises(NotFound):
        await deployments.remove_by_federation("fed-2", "a")
    removed = await deployments.remove_by_federation("fed-1", "a")
    assert removed is mine and removed.state == InstanceState.TERMINATED
    assert theirs.state == InstanceState.READY and set(meo.services) == {("b", "fed-1")}
    assert meo.released == [("a", "fed-1")]
    again = await deployments.remove_by_federation("fed-1", "a")  # idempotent
    assert again.state == InstanceState.TERMINATED
