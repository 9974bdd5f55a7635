"""The consumer workflow restarted on its database file: each state a
crashed MEF left is settled as documented (mef.workflow.consumer), and the
MEO is reconciled. Fakes only; a real sqlite file."""

from __future__ import annotations

import asyncio

import pytest

from mecfed.model import AppSpec, Federation, FederationState, Requirements
from mecfed.storage import Database
from mef.federations import FederationStore
from tests.mef.consumer_support import S, established, make, reach, request, until
from tests.mef.fakes import FakeOrchestrator


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
