"""The chain node stopped, killed and restarted (keeping its state), and
reset (a fresh chain at the same address). Documented outcomes:

- stop/kill + restart: the MEFs reconnect, replay what they missed, fill any
  nonce gap the node's lost pool left, and carry on; an established
  federation stays established, one in flight settles one way or the other
  with a reason; every escrow ends withdrawn (the contract holds nothing once
  every federation is terminated).
- reset: the MEFs refuse to act on the new chain; readiness says NOT_SERVING
  with the reason and requests fail instead of locking money on a chain
  nobody agreed to.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from web3 import AsyncWeb3, WebSocketProvider

from mecfed.rpc import security
from mecfed.testbed.chain import restart_node, stop_node
from tests.faults.bed import LIVE, FaultBed, S, state_name
from tests.faults.conftest import open_bed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, Docker)"),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chain_bed() -> AsyncIterator[FaultBed]:
    bed, testbed = await open_bed("chain")
    try:
        yield bed
    finally:
        await testbed.down()


async def contract_balance(bed: FaultBed) -> int:
    state = bed.testbed.load_state()
    assert state is not None
    w3 = await AsyncWeb3(WebSocketProvider(state.chain["ws_url"]))
    try:
        return await w3.eth.get_balance(state.chain["contract"])
    finally:
        await w3.provider.disconnect()


async def assert_no_escrow(bed: FaultBed, timeout: float = 60) -> None:
    """Every wei the contract took is paid out or refunded (bounded wait:
    the MEFs withdraw in the background)."""
    deadline = time.monotonic() + timeout
    balance = await contract_balance(bed)
    while balance and time.monotonic() < deadline:
        await asyncio.sleep(1)
        balance = await contract_balance(bed)
    assert balance == 0, f"{balance} wei still held by the contract"


async def readiness(bed: FaultBed) -> int:
    c = bed.consumer
    async with security.secure_channel(c.mef_listen, c.tls, c.system_id) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    return answer.status


async def request_or_refusal(bed: FaultBed) -> str | None:
    """A request while the node is down: refused as UNAVAILABLE once the
    MEF noticed (nothing started), or accepted (then it must settle)."""
    try:
        return await bed.request()
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
        assert "cannot act" in exc.details()
        return None


async def test_node_killed_and_restarted_keeps_everything(chain_bed: FaultBed) -> None:
    bed = chain_bed
    first = await bed.request()
    fed = await bed.settle(first)
    assert fed.state == S.FEDERATION_STATE_ESTABLISHED, fed.error.detail
    await stop_node(bed.testbed, kill=True)
    during = await request_or_refusal(bed)  # while the node is gone
    await asyncio.sleep(2)
    await restart_node(bed.testbed)
    if during is not None:
        settled = await bed.settle(during, timeout=180)
        if settled.state not in LIVE:
            assert settled.state == S.FEDERATION_STATE_FAILED and settled.error.detail
    assert (await bed.get(first)).state in LIVE
    await bed.terminate(first)
    if during is not None:
        await bed.terminate(during)
    await bed.assert_clean()
    await assert_no_escrow(bed)
    await bed.assert_healthy_federation()


async def test_node_stopped_during_negotiation(chain_bed: FaultBed) -> None:
    bed = chain_bed
    fid = await bed.request(offers_to_wait_for=3)
    await bed.wait_for(fid, {S.FEDERATION_STATE_COLLECTING_OFFERS})
    await stop_node(bed.testbed)
    await asyncio.sleep(1.5)
    await restart_node(bed.testbed)
    fed = await bed.settle(fid, timeout=180)
    assert fed.state in LIVE | {S.FEDERATION_STATE_FAILED}, state_name(fed.state)
    if fed.state == S.FEDERATION_STATE_FAILED:
        assert fed.error.detail
    await bed.terminate(fid)
    await bed.assert_clean()
    await assert_no_escrow(bed)
    await bed.assert_healthy_federation()


async def test_reset_chain_is_refused(chain_bed: FaultBed) -> None:
    # Last in this module: the bed cannot be used afterwards.
    bed = chain_bed
    await restart_node(bed.testbed, reset=True)
    deadline = time.monotonic() + 30
    status = await readiness(bed)
    while status == health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        status = await readiness(bed)
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    async with bed.mfm() as mfm:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            fed = await mfm.RequestFederation(bed.federation_request(), timeout=30)
            # Accepted before the MEF noticed: it must then fail, not lock money.
            raise AssertionError(f"accepted on a reset chain: {fed.federation_id}")
    assert err.value.code() in {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
    }, err.value.details()
    assert "reset" in err.value.details()
