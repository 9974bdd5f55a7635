"""GrpcOrchestrator against an MEO that lacks the issue-10 calls (an older
release): ListServices and WatchTraffic say NotSupported, so reconcile and
liveness are skipped instead of keeping the MEF from ever serving."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from mecfed.errors import MecfedError
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


async def test_call_waits_briefly_for_a_restarted_meo():
    """A call made while the channel is still in its reconnect backoff after
    an MEO restart goes through once the MEO is back (it used to fail at once
    with "Connection refused")."""
    first = await start_server("127.0.0.1:0", None, [], access=lambda method, caller: True)
    port = first.port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    orch = GrpcOrchestrator(channel, timeout=5, connect_grace=5)
    try:
        with pytest.raises(NotSupported):
            await orch.list_services()  # connected once
        await first.stop(0)
        # The channel notices and backs off; restart the MEO a moment later.
        with pytest.raises(MecfedError):
            await GrpcOrchestrator(channel, timeout=1, connect_grace=0).list_services()

        async def restart():
            await asyncio.sleep(0.5)
            return await start_server(
                f"127.0.0.1:{port}", None, [], access=lambda method, caller: True
            )

        again = asyncio.ensure_future(restart())
        try:
            with pytest.raises(NotSupported):  # reached the server, not UNAVAILABLE
                await orch.list_services()
        finally:
            await (await again).stop(0)
    finally:
        await channel.close()


async def test_call_to_an_meo_that_stays_away_fails_within_the_grace():
    probe = await start_server("127.0.0.1:0", None, [], access=lambda method, caller: True)
    port = probe.port
    await probe.stop(0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    orch = GrpcOrchestrator(channel, timeout=60, connect_grace=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(MecfedError, match="local MEO GetApp"):
            await orch.require_app("app")
        assert time.monotonic() - started < 10, "must not hold the call for its whole timeout"
    finally:
        await channel.close()
