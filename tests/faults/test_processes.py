"""kill -9 of each MEF and MEO during the workflow, and terminate in each
state, on both backends. Documented outcomes (mef/workflow, README "Faults"):

- consumer MEF killed while in flight: after its restart the federation is
  FAILED ("federator restarted during <STATE>"), everything it had made is
  released on both sides and its escrow recovered; killed once ESTABLISHED:
  still ESTABLISHED after the restart (the liveness watch resumes).
- provider MEF or MEO killed during deployment: the consumer notices within
  its deployment bound and falls back to the other provider (ESTABLISHED)
  or fails; the dead provider cleans up when it returns.
- consumer MEO killed before the traffic check: FAILED, released.
- TerminateFederation in any state: TERMINATED, nothing left anywhere, and
  the provider's capacity is given back; with the provider down, the
  federation stays TERMINATING until the provider returns and acknowledges.

Every test ends with nothing left behind (containers, links, MEO records,
unsettled records) and a working bed.
"""

from __future__ import annotations

import asyncio

import pytest

from mecfed.v1 import federator_pb2
from tests.faults.bed import FINAL, LIVE, FaultBed, S, state_name

pytestmark = pytest.mark.asyncio(loop_scope="module")

IN_FLIGHT = {
    "collecting": S.FEDERATION_STATE_COLLECTING_OFFERS,
    "deploying": S.FEDERATION_STATE_DEPLOYING,
    "verifying": S.FEDERATION_STATE_VERIFYING,
}


def detail(fed: federator_pb2.Federation) -> str:
    return f"{state_name(fed.state)}: {fed.error.detail}"


async def request_slowly(bed: FaultBed) -> str:
    """Waits for more offers than there are providers, so that offer
    collection lasts its whole window (3 s) and the state can be caught."""
    return await bed.request(offers_to_wait_for=3)


@pytest.mark.parametrize("when", list(IN_FLIGHT))
async def test_consumer_mef_killed_in_flight(bed: FaultBed, when: str) -> None:
    fid = await request_slowly(bed)
    seen = await bed.wait_for(fid, {IN_FLIGHT[when]})
    bed.kill(bed.consumer.system_id, "mef")
    await bed.revive()
    fed = await bed.settle(fid)
    if seen.state in LIVE or fed.state in LIVE:
        # It got through before the kill landed: then it must still hold.
        assert fed.state in LIVE, detail(fed)
    else:
        assert fed.state == S.FEDERATION_STATE_FAILED, detail(fed)
        assert "restarted" in fed.error.detail, detail(fed)
    await bed.terminate(fid)
    await bed.assert_clean()
    await bed.assert_healthy_federation()


async def test_consumer_mef_killed_when_established_keeps_it(bed: FaultBed) -> None:
    fid = await bed.request()
    assert (await bed.settle(fid)).state == S.FEDERATION_STATE_ESTABLISHED
    bed.kill(bed.consumer.system_id, "mef")
    await bed.revive()
    fed = await bed.get(fid)
    assert fed.state == S.FEDERATION_STATE_ESTABLISHED, detail(fed)
    assert fed.provider_endpoint.app_ips
    done = await bed.terminate(fid)
    assert done.state == S.FEDERATION_STATE_TERMINATED, detail(done)
    await bed.assert_clean()


@pytest.mark.parametrize("component", ["mef", "meo"])
async def test_provider_killed_during_deployment(bed: FaultBed, component: str) -> None:
    fid = await bed.request()
    seen = await bed.wait_for(fid, {S.FEDERATION_STATE_DEPLOYING})
    if seen.state != S.FEDERATION_STATE_DEPLOYING:
        pytest.fail(f"never saw DEPLOYING: {detail(seen)}")
    winner = seen.provider_id
    bed.kill(winner, component)
    fed = await bed.settle(fid, timeout=180)
    if fed.state in LIVE:
        assert fed.provider_id != winner, "a dead provider cannot have deployed"
    else:
        assert fed.state == S.FEDERATION_STATE_FAILED, detail(fed)
        assert fed.error.detail, "a failure must say why"
    await bed.revive()  # the dead provider returns and cleans up
    await bed.terminate(fid)
    await bed.assert_clean()
    await bed.assert_healthy_federation()


async def test_consumer_meo_killed_before_traffic_check(bed: FaultBed) -> None:
    fid = await bed.request()
    seen = await bed.wait_for(fid, {S.FEDERATION_STATE_DEPLOYING})
    bed.kill(bed.consumer.system_id, "meo")
    fed = await bed.settle(fid, timeout=180)
    if seen.state == S.FEDERATION_STATE_DEPLOYING:
        assert fed.state == S.FEDERATION_STATE_FAILED, detail(fed)
    await bed.revive()
    await bed.terminate(fid)
    await bed.assert_clean()
    await bed.assert_healthy_federation()


TERMINATE_AT = {
    "collecting": S.FEDERATION_STATE_COLLECTING_OFFERS,
    "awarded": S.FEDERATION_STATE_AWARDED,
    "deploying": S.FEDERATION_STATE_DEPLOYING,
    "connecting": S.FEDERATION_STATE_CONNECTING,
    "verifying": S.FEDERATION_STATE_VERIFYING,
    "established": S.FEDERATION_STATE_ESTABLISHED,
}


@pytest.mark.parametrize("when", list(TERMINATE_AT))
async def test_terminate_in_any_state_leaves_nothing(bed: FaultBed, when: str) -> None:
    fid = await (request_slowly(bed) if when == "collecting" else bed.request())
    await bed.wait_for(fid, {TERMINATE_AT[when]})
    done = await bed.terminate(fid)
    assert done.state == S.FEDERATION_STATE_TERMINATED, detail(done)
    # Terminating again is harmless and says the same.
    again = await bed.terminate(fid)
    assert again.state == S.FEDERATION_STATE_TERMINATED
    await bed.assert_clean()


async def test_terminate_with_the_provider_down_completes_when_it_returns(
    bed: FaultBed,
) -> None:
    fid = await bed.request()
    fed = await bed.settle(fid)
    assert fed.state == S.FEDERATION_STATE_ESTABLISHED, detail(fed)
    bed.kill(fed.provider_id, "mef")
    async with bed.mfm() as mfm:
        answer = await mfm.TerminateFederation(
            federator_pb2.TerminateFederationRequest(federation_id=fid), timeout=60
        )
    assert answer.state in {S.FEDERATION_STATE_TERMINATING, S.FEDERATION_STATE_TERMINATED}
    await bed.revive()
    done = await bed.wait_for(fid, FINAL, timeout=120)
    assert done.state == S.FEDERATION_STATE_TERMINATED, detail(done)
    await bed.assert_clean(timeout=60)


async def test_same_request_id_at_once_makes_one_federation(bed: FaultBed) -> None:
    req = bed.federation_request()
    req.request_id = f"req-{bed.backend}-once"
    async with bed.mfm() as mfm:
        answers = await asyncio.gather(*(mfm.RequestFederation(req, timeout=30) for _ in range(3)))
    assert len({a.federation_id for a in answers}) == 1
    fid = answers[0].federation_id
    await bed.settle(fid)
    async with bed.mfm() as mfm:
        listed = await mfm.ListFederations(federator_pb2.ListFederationsRequest(), timeout=30)
    assert [f.federation_id for f in listed.federations if f.state not in FINAL] == [fid]
    await bed.terminate(fid)
    await bed.assert_clean()


async def test_concurrent_load_with_tight_capacity(bed: FaultBed) -> None:
    # Two providers with room for two replicas each; six requests at once.
    fids = await asyncio.gather(*(bed.request() for _ in range(6)))
    feds = await asyncio.gather(*(bed.settle(f, timeout=180) for f in fids))
    live = [f for f in feds if f.state in LIVE]
    assert 1 <= len(live) <= 4, [detail(f) for f in feds]
    by_provider: dict[str, int] = {}
    for f in live:
        by_provider[f.provider_id] = by_provider.get(f.provider_id, 0) + 1
    assert all(n <= 2 for n in by_provider.values()), by_provider
    for f in feds:
        if f.state not in LIVE:
            assert f.state == S.FEDERATION_STATE_FAILED and f.error.detail, detail(f)
    await asyncio.gather(*(bed.terminate(f) for f in fids))
    await bed.assert_clean()
    await bed.assert_healthy_federation()
