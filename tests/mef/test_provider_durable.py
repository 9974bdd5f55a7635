"""The provider survives a restart: offer policy, capacity ledger, binding
bids and deployment records are durable, and reconcile makes the MEO agree
(orphans released, vanished deployments dropped, deployments in flight
rolled back). A "restart" is a new ProviderWorkflow and Deployments on a new
Database connection to the same file; the MEO (a fake) outlives it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from mecfed.errors import ResourceExhausted, Unavailable
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
from mecfed.storage import Database
from mef.deployments import RESTARTED, Deployments
from mef.transport.base import Admission
from mef.transport.direct import TlsGate
from mef.workflow import ProviderWorkflow
from tests.mef.fakes import FakeClock, ProviderMeo


def need(consumer: str, fid: str, replicas: int = 1) -> ServiceNeed:
    return ServiceNeed(fid, consumer, AppSpec("mecfed/echo:1", replicas), Requirements(10**6))


def installation(fid: str, offer_id: str) -> Installation:
    return Installation(
        offer_id,
        fid,
        OverlayEndpoint("10.213.0.10", "172.30.1.0/24", ("172.30.1.1",)),
        (TunnelCandidate(5000, 4789),),
    )


class Process:
    """One provider MEF process: its database connection, workflow and
    deployments registry."""

    def __init__(self, path: Path, meo: ProviderMeo, capacity: int = 2) -> None:
        self.db = Database(path)
        self.meo = meo
        self.provider = ProviderWorkflow(
            "prov", meo, OfferPolicy(FixedPricing(100), capacity), clock=FakeClock(), db=self.db
        )
        self.deployments = Deployments(self.provider, TlsGate(), db=self.db)

    async def federate(self, consumer: str, fid: str, wait: bool = True):
        offer = await self.provider.quote(need(consumer, fid))
        dep = await self.deployments.install(
            installation(fid, str(offer.ref)), Admission(consumer, str(offer.ref), consumer)
        )
        if wait:
            await dep.settled()
        return dep

    def kill(self) -> list[asyncio.Task]:
        """Dies without a word: nothing more reaches its database."""
        tasks = [d._task for d in self.deployments._by_id.values() if d._task]
        self.db.close()
        return [t for t in tasks if not t.done()]


async def bury(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "mef.db"


async def test_capacity_ledger_and_policy_survive_a_restart(path):
    meo = ProviderMeo()
    first = Process(path, meo, capacity=8)
    first.provider.set_policy(OfferPolicy(FixedPricing(100), 2))  # SetOfferPolicy
    for i in range(2):
        dep = await first.federate(f"c{i}", "fed-1")
        assert dep.state == InstanceState.READY
    first.kill()
    second = Process(path, meo, capacity=8)  # the configured policy says 8
    assert second.provider.policy.capacity_replicas == 2
    assert second.provider.ledger.used == 2
    assert (await second.provider.reconcile(second.deployments)).kept == (
        ("c0", "fed-1"),
        ("c1", "fed-1"),
    )
    # Today's defect: five federations against a cap of two after a restart.
    for i in range(2, 5):
        with pytest.raises(ResourceExhausted):
            await second.federate(f"c{i}", "fed-1")
    ready = second.deployments.find("c0", "fed-1")
    assert ready is not None and ready.state == InstanceState.READY
    assert ready.endpoint is not None and ready.endpoint.vni == 5000
    await second.deployments.remove(ready.app_instance_id, "c0")  # still removable
    assert second.provider.ledger.used == 1 and ("c0", "fed-1") not in meo.services


async def test_binding_bids_still_hold_capacity_after_a_restart(path):
    meo = ProviderMeo()
    first = Process(path, meo, capacity=2)
    bid = await first.provider.quote(need("0xabc", "fed-1", replicas=2), binding=True)
    first.kill()
    second = Process(path, meo, capacity=2)
    with pytest.raises(ResourceExhausted):
        await second.provider.quote(need("0xdef", "fed-2"), binding=True)
    await second.provider.accept(str(bid.ref), "0xabc", "fed-1")  # the award still counts
    assert second.provider.ledger.used == 2


async def test_reconcile_releases_orphans_and_drops_what_the_meo_lost(path):
    meo = ProviderMeo()
    first = Process(path, meo, capacity=4)
    await first.federate("a", "fed-1")
    await first.federate("b", "fed-1")
    first.kill()
    del meo.services[("a", "fed-1")]  # the MEO lost it (its own reconcile, a crash)
    meo.services[("z", "fed-9")] = AppSpec("mecfed/echo:1", 1)  # nobody here knows it
    second = Process(path, meo, capacity=4)
    done = await second.provider.reconcile(second.deployments)
    assert done.kept == (("b", "fed-1"),)
    assert done.dropped == (("a", "fed-1"),)
    assert done.orphans_released == (("z", "fed-9"),)
    assert ("z", "fed-9") in meo.released and set(meo.services) == {("b", "fed-1")}
    assert second.provider.ledger.used == 1
    lost = second.deployments.get(next(iter(second.deployments._by_id)), "a")
    assert lost.state == InstanceState.TERMINATED and lost.error is not None
    # Its consumer may install that federation again.
    assert (await second.federate("a", "fed-1")).state == InstanceState.READY


async def test_a_deployment_in_flight_at_the_restart_is_rolled_back(path):
    meo = ProviderMeo(hold=asyncio.Event())
    first = Process(path, meo)
    dep = await first.federate("a", "fed-1", wait=False)
    await asyncio.sleep(0.01)
    assert meo.started == [("a", "fed-1")]
    orphans = first.kill()
    meo.services[("a", "fed-1")] = AppSpec("mecfed/echo:1", 1)  # it got that far
    second = Process(path, meo)
    again = second.deployments.get(dep.app_instance_id, "a")
    assert again.state == InstanceState.PENDING
    watch = asyncio.create_task(anext_terminal(again))
    done = await second.provider.reconcile(second.deployments)
    assert done.rolled_back == (("a", "fed-1"),)
    final = await watch
    assert final.state == InstanceState.FAILED and final.error is not None
    assert final.error.detail == RESTARTED
    assert meo.services == {} and ("a", "fed-1") in meo.released
    assert second.provider.ledger.used == 0 and second.provider.committed() == {}
    await bury(orphans)


async def anext_terminal(dep):
    return [d async for d in dep.changes()][-1]


async def test_an_accepted_offer_without_a_deployment_is_released(path):
    meo = ProviderMeo()
    first = Process(path, meo)
    offer = await first.provider.quote(need("a", "fed-1"))
    await first.provider.accept(str(offer.ref), "a", "fed-1")  # died before the record
    first.kill()
    second = Process(path, meo)
    assert second.provider.ledger.used == 1
    done = await second.provider.reconcile(second.deployments)
    assert done.rolled_back == (("a", "fed-1"),)
    assert second.provider.ledger.used == 0


async def test_reconcile_can_be_repeated_when_the_meo_is_down(path):
    meo = ProviderMeo(hold=asyncio.Event())
    first = Process(path, meo)
    await first.federate("a", "fed-1", wait=False)
    await asyncio.sleep(0.01)
    orphans = first.kill()
    meo.unavailable = True
    second = Process(path, meo)
    with pytest.raises(Unavailable):
        await second.provider.reconcile(second.deployments)
    meo.unavailable = False
    done = await second.provider.reconcile(second.deployments)
    assert done.rolled_back == (("a", "fed-1"),)
    assert second.provider.ledger.used == 0
    third = Process(path, meo)  # and it stays settled
    assert third.provider.ledger.used == 0
    assert (await third.provider.reconcile(third.deployments)).rolled_back == ()
    await bury(orphans)


async def test_a_graceful_stop_rolls_back_and_records_it(path):
    meo = ProviderMeo(hold=asyncio.Event())
    first = Process(path, meo)
    dep = await first.federate("a", "fed-1", wait=False)
    await asyncio.sleep(0.01)
    await first.deployments.close()
    assert dep.state == InstanceState.FAILED and meo.cancelled == [("a", "fed-1")]
    assert ("a", "fed-1") in meo.released and first.provider.ledger.used == 0
    first.db.close()
    second = Process(path, meo)
    assert second.deployments.get(dep.app_instance_id, "a").state == InstanceState.FAILED
    assert second.provider.ledger.used == 0
