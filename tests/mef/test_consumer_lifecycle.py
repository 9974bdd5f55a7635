"""The consumer workflow beyond one run: terminate in every state, releases
retried until the provider acknowledges, why no offer came, request_id
under concurrency. Fakes only (tests.mef.fakes); no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mecfed.errors import ResourceExhausted, Unavailable
from mecfed.model import Federation, Offer, ServiceNeed
from mecfed.storage import Database
from tests.mef.consumer_support import S, established, make, reach, request, states, until
from tests.mef.fakes import FakeTransport, ScriptedProvider

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


class Wedged(FakeTransport):
    def health(self) -> str | None:
        return "chain reset: no contract code at 0xabc"


async def test_a_transport_that_cannot_act_refuses_requests_and_starts_nothing():
    workflow, transport, meo = make(transport=Wedged([ScriptedProvider("p1", 100)]))
    with pytest.raises(Unavailable, match="cannot act now: chain reset"):
        await workflow.request(request())
    assert transport.solicited == [] and meo.reserved == set()
    assert workflow.store.list() == []
    await workflow.close()
