"""Real processes on a real testbed: the consumer's MEF is killed with
SIGKILL while a federation is established, comes back on its database file,
still knows the federation, and terminating it releases the provider. Needs
root (network namespaces)."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import pytest

from mecfed.cli.federate import ensure_local_app
from mecfed.config import SystemConfig
from mecfed.rpc import security
from mecfed.testbed import Testbed
from mecfed.testbed import netns as tb_netns
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as meo_pb
from mecfed.v1 import orchestrator_pb2_grpc as meo_grpc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)"),
]

NAME = "mfcs"
LIVE = {common_pb2.FEDERATION_STATE_ESTABLISHED, common_pb2.FEDERATION_STATE_DEGRADED}


def federator(config: SystemConfig):
    channel = security.secure_channel(config.mef_listen, config.tls, config.system_id)
    return channel, federator_pb2_grpc.MecFederatorStub(channel)


async def meo_holds(config: SystemConfig, federation_id: str, consumer_id: str = "") -> bool:
    channel = security.secure_channel(config.meo_listen, config.tls, config.system_id)
    async with channel:
        try:
            await meo_grpc.MecOrchestratorStub(channel).GetServiceStatus(
                meo_pb.GetServiceStatusRequest(
                    federation_id=federation_id, consumer_id=consumer_id
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
    return True


async def test_consumer_mef_killed_while_established_keeps_its_federation():
    testbed = Testbed(name=NAME, subnet="10.223.0.0/16", base_port=52351)
    try:
        state = await testbed.up(2, vim="netns")
        consumer, provider = (SystemConfig.load(s.config_path) for s in state.systems)
        await ensure_local_app(consumer, "echo", "mecfed/echo:1")
        channel, stub = federator(consumer)
        async with channel:
            fed = await stub.RequestFederation(
                federator_pb2.RequestFederationRequest(
                    service_name="echo",
                    app=common_pb2.AppSpec(image="mecfed/echo:1", replicas=1),
                    requirements=common_pb2.Requirements(max_price=10**12),
                    request_id="restart-1",
                ),
                timeout=30,
            )
            updates = [
                u
                async for u in stub.WatchFederation(
                    federator_pb2.WatchFederationRequest(federation_id=fed.federation_id),
                    timeout=120,
                )
            ]
            assert updates[-1].state in LIVE, updates[-1].error.detail
        os.kill(state.systems[0].pids["mef"], signal.SIGKILL)
        await asyncio.sleep(0.5)
        state = await testbed.up(2, vim="netns")  # restarts the dead MEF only
        channel, stub = federator(consumer)
        async with channel:
            got = await stub.GetFederation(
                federator_pb2.GetFederationRequest(federation_id=fed.federation_id), timeout=10
            )
            assert got.state in LIVE
            again = await stub.RequestFederation(
                federator_pb2.RequestFederationRequest(
                    service_name="echo",
                    app=common_pb2.AppSpec(image="mecfed/echo:1", replicas=1),
                    requirements=common_pb2.Requirements(max_price=10**12),
                    request_id="restart-1",
                ),
                timeout=30,
            )
            assert again.federation_id == fed.federation_id
            done = await stub.TerminateFederation(
                federator_pb2.TerminateFederationRequest(federation_id=fed.federation_id),
                timeout=30,
            )
            assert done.state == common_pb2.FEDERATION_STATE_TERMINATED
        assert not await meo_holds(consumer, fed.federation_id)
        assert not await meo_holds(provider, fed.federation_id, consumer.system_id)
    finally:
        await testbed.down()
    assert await asyncio.to_thread(tb_netns.testbed_links, NAME) == []
