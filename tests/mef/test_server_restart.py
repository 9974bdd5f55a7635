"""Real MEF servers (gRPC, mutual TLS, loopback, port 0) restarted on their
database file: what a client saw survives, what was in flight is settled,
readiness waits for the reconcile. The MEO is the recording fake."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mecfed.config import PeerConfig
from mecfed.errors import Unavailable
from mecfed.model import ServiceStatus, TrafficCheck
from mecfed.v1 import common_pb2, federator_pb2
from mef import server as mef_server
from mef.workflow import ConsumerSettings
from mef.workflow.upkeep import Backoff
from tests.mef.conftest import NO_OFFERS, fixed_policy
from tests.mef.test_conformance import request, run_to_end

ESTABLISHED = common_pb2.FEDERATION_STATE_ESTABLISHED
FAILED = common_pb2.FEDERATION_STATE_FAILED
TERMINATED = common_pb2.FEDERATION_STATE_TERMINATED
DEGRADED = common_pb2.FEDERATION_STATE_DEGRADED

SETTINGS = ConsumerSettings(
    traffic=TrafficCheck(count=5), liveness_period_ms=20, retry=Backoff(0.01, 0.05)
)


async def restart(node, settings=SETTINGS):
    await node.mef.stop(grace=0)
    node.mef = await mef_server.start(node.config, orchestrator=node.meo, settings=settings)
    return node


@pytest.mark.parametrize("transport_kind", ["direct"])
async def test_established_federation_survives_a_restart_and_terminates(federation_net):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)], settings=SETTINGS)
    fed = await run_to_end(consumer, request())
    assert fed.state == ESTABLISHED
    await restart(consumer)
    # Peers are registered at run time in this suite; a restarted MEF gets
    # its peer list again (the testbed writes it into the config).
    consumer.mef.peers.add(PeerConfig(provider.system_id, f"127.0.0.1:{provider.mef.port}"))
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        listed = await stub.ListFederations(federator_pb2.ListFederationsRequest(), timeout=5)
        assert [f.federation_id for f in listed.federations] == [fed.federation_id]
        got = listed.federations[0]
        assert got.state == ESTABLISHED and got.app_instance_id == fed.app_instance_id
        assert [h.state for h in got.history][-1] == ESTABLISHED
        # Liveness resumed: the MEO is asked for traffic again.
        await asyncio.wait_for(_until(lambda: fed.federation_id in consumer.meo.watches), 5)
        consumer.meo.lose_traffic = True
        updates = stub.WatchFederation(
            federator_pb2.WatchFederationRequest(
                federation_id=fed.federation_id, follow_after_terminal=True
            ),
            timeout=20,
        )
        seen = []
        async for update in updates:
            seen.append(update.state)
            if update.state == DEGRADED:
                consumer.meo.lose_traffic = False
                done = await stub.TerminateFederation(
                    federator_pb2.TerminateFederationRequest(federation_id=fed.federation_id),
                    timeout=10,
                )
                assert done.state == TERMINATED
        # The stream ended by itself, with the final state.
        assert seen[-1] == TERMINATED and DEGRADED in seen
        assert [h.state for h in update.history][-3:] == [
            DEGRADED,
            common_pb2.FEDERATION_STATE_TERMINATING,
            TERMINATED,
        ]
    assert provider.meo.deployed == {}
    assert provider.mef.provider.ledger.used == 0


async def _until(predicate) -> None:
    while not predicate():  # noqa: ASYNC110 - polling a fake
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("transport_kind", ["direct"])
async def test_readiness_waits_for_the_reconcile(federation_net):
    (consumer,) = await federation_net([NO_OFFERS], settings=SETTINGS)
    calls = []
    meo = consumer.meo
    real = meo.list_services

    async def flaky() -> list[ServiceStatus]:
        calls.append(1)
        if len(calls) < 3:
            raise Unavailable("local MEO ListServices: not up yet (scripted)")
        return await real()

    meo.list_services = flaky  # type: ignore[method-assign]
    meo.reserved.add("fed-orphan")
    await restart(consumer)
    assert len(calls) >= 3 and "fed-orphan" in meo.released  # both sides reconcile
    assert consumer.mef.consumer.recovered
    async with consumer.channel() as ch:
        health = health_pb2_grpc.HealthStub(ch)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("transport_kind", ["direct"])
async def test_terminate_unknown_federation_after_restart_is_not_found(federation_net):
    (consumer,) = await federation_net([NO_OFFERS], settings=SETTINGS)
    await restart(consumer)
    async with consumer.channel() as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await consumer.federator(ch).TerminateFederation(
                federator_pb2.TerminateFederationRequest(federation_id="fed-none"), timeout=5
            )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("transport_kind", ["direct"])
async def test_terminate_while_the_provider_is_down_completes_when_it_returns(federation_net):
    import dataclasses

    settings = dataclasses.replace(SETTINGS, terminate_wait=0.2)
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100)], settings=settings)
    fed = await run_to_end(consumer, request())
    assert fed.state == ESTABLISHED
    port = provider.mef.port
    await provider.mef.stop(grace=0)  # down
    async with consumer.channel() as ch:
        stub = consumer.federator(ch)
        answer = await stub.TerminateFederation(
            federator_pb2.TerminateFederationRequest(federation_id=fed.federation_id), timeout=10
        )
        assert answer.state == common_pb2.FEDERATION_STATE_TERMINATING
        # Back on the same address (it forgot the instance: NOT_FOUND counts
        # as released).
        config = dataclasses.replace(provider.config, mef_listen=f"127.0.0.1:{port}")
        provider.mef = await mef_server.start(config, orchestrator=provider.meo)
        provider.mef.peers.add(PeerConfig(consumer.system_id, f"127.0.0.1:{consumer.mef.port}"))
        updates = stub.WatchFederation(
            federator_pb2.WatchFederationRequest(federation_id=fed.federation_id), timeout=30
        )
        states = [u.state async for u in updates]
    assert states[-1] == TERMINATED
    assert fed.federation_id in consumer.meo.released
