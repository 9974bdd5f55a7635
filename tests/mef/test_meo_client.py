"""GrpcOrchestrator against an MEO that lacks the issue-10 calls (an older
release): ListServices and WatchTraffic say NotSupported, so reconcile and
liveness are skipped instead of keeping the MEF from ever serving."""

from __future__ import annotations

import grpc
import pytest

from mecfed.model import TrafficCheck
from mecfed.rpc import start_server
from mef.meo_client import GrpcOrchestrator, NotSupported


@pytest.fixture
async def old_meo():
    # A server with no MecOrchestrator at all: every call is UNIMPLEMENTED.
    rpc = await start_server("127.0.0.1:0", None, [], access=lambda method, caller: True)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{rpc.port}")
    try:
        yield GrpcOrchestrator(channel, timeout=5)
    finally:
        await channel.close()
        await rpc.stop(0)


async def test_list_services_not_supported(old_meo):
    with pytest.raises(NotSupported, match="ListServices is not implemented"):
        await old_meo.list_services()


async def test_watch_traffic_not_supported(old_meo):
    with pytest.raises(NotSupported, match="WatchTraffic is not implemented"):
        async for _ in old_meo.watch_traffic("fed-1", TrafficCheck(), 100):
            pass
