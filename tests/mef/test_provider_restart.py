"""A provider MEF restarted (a real MEF server, direct backend, on the same
state directory) keeps its offer policy and capacity ledger, and its
reconcile releases at the MEO what it no longer owns."""

from __future__ import annotations

import grpc
import pytest

from mecfed.config import PeerConfig
from mecfed.model import AppSpec, Role, ServiceStatus
from mecfed.v1 import common_pb2, federator_pb2, peer_pb2
from mef import server as mef_server
from tests.mef.conftest import NO_OFFERS, fixed_policy
from tests.mef.fakes import FakeOrchestrator
from tests.mef.test_hostile import app, install, peer_stub


@pytest.fixture
def transport_kind() -> str:
    return "direct"


class RestartableMeo(FakeOrchestrator):
    """The fake MEO, reporting its deployments in the provider role."""

    async def list_services(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(fid, Role.PROVIDER, consumer_id="mec-00") for fid in sorted(self.deployed)
        ]


async def restart(node, *peers) -> None:
    """Stops the MEF and starts it again on the same state directory (the
    MEO, a fake, lives on)."""
    await node.mef.stop(grace=0)
    node.mef = await mef_server.start(node.config, orchestrator=node.meo)
    for peer in peers:
        node.mef.peers.add(PeerConfig(peer.system_id, f"127.0.0.1:{peer.mef.port}"))


async def test_a_restarted_provider_keeps_its_cap_and_policy(federation_net):
    consumer, provider = await federation_net([NO_OFFERS, fixed_policy(100, capacity=8)])
    provider.meo = RestartableMeo(provider.system_id, provider.config.underlay_ip)
    await restart(provider, consumer)
    async with provider.channel() as ch:  # the operator lowers the cap to 2
        policy = federator_pb2.OfferPolicy(capacity_replicas=2, offer_validity_ms=60_000)
        policy.fixed.price = 100
        await provider.federator(ch).SetOfferPolicy(
            federator_pb2.SetOfferPolicyRequest(policy=policy)
        )
    ch, stub = peer_stub(consumer, provider)
    async with ch:
        for i in range(2):
            offer = await stub.RequestOffer(
                peer_pb2.RequestOfferRequest(federation_id=f"fed-{i}", app=app(), max_price=1000)
            )
            installed = await stub.InstallApp(
                install(offer_id=offer.offer_id, federation_id=f"fed-{i}")
            )
            request = peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id)
            final = [d async for d in stub.WatchAppInstance(request, timeout=5)][-1]
            assert final.state == common_pb2.INSTANCE_STATE_READY
    provider.meo.deployed["fed-orphan"] = AppSpec("mecfed/echo:1", 1)  # no record of it
    await restart(provider, consumer)
    assert "fed-orphan" in provider.meo.released
    assert provider.mef.provider.policy.capacity_replicas == 2
    assert provider.mef.provider.ledger.used == 2
    ch, stub = peer_stub(consumer, provider)
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:  # full: 2 of 2 after the restart
            await stub.RequestOffer(
                peer_pb2.RequestOfferRequest(federation_id="fed-9", app=app(), max_price=1000)
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        removed = await stub.RemoveApp(peer_pb2.AppInstanceRequest(federation_id="fed-0"))
        assert removed.state == common_pb2.INSTANCE_STATE_TERMINATED
    assert provider.mef.provider.ledger.used == 1
