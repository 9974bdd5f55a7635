"""The provider's Mff server (FederationPeer) over real gRPC with mutual
TLS on loopback: watch streams end with the final state even when the MEO
refuses at once, RemoveApp by federation id, and federations keyed by
(consumer, id)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mecfed.errors import DeploymentFailed
from mecfed.model import (
    AppSpec,
    FixedPricing,
    Installation,
    OfferPolicy,
    OfferRequest,
    OverlayEndpoint,
    TunnelCandidate,
)
from mecfed.rpc import secure_channel, server_credentials, start_server
from mecfed.testbed.pki import Pki
from mecfed.v1 import common_pb2, peer_pb2, peer_pb2_grpc
from mef.deployments import Deployments
from mef.transport.direct import TlsGate
from mef.transport.peer_client import PeerClient, PeerContact
from mef.transport.peer_service import SERVICE, PeerServicer
from mef.workflow import ProviderWorkflow
from tests.mef.fakes import ProviderMeo

CONSUMERS = ("cons", "other")


@dataclass
class Provider:
    port: int
    pki: Pki
    meo: ProviderMeo
    provider: ProviderWorkflow
    deployments: Deployments

    def stub(self, caller: str) -> tuple[grpc.aio.Channel, peer_pb2_grpc.FederationPeerStub]:
        ch = secure_channel(f"127.0.0.1:{self.port}", self.pki.paths(caller), "prov")
        return ch, peer_pb2_grpc.FederationPeerStub(ch)

    def client(self, caller: str) -> tuple[PeerClient, PeerContact]:
        return PeerClient(self.pki.paths(caller)), PeerContact(f"127.0.0.1:{self.port}", "prov")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Provider]:
    pki = Pki(tmp_path / "pki")
    for sid in ("prov", *CONSUMERS):
        pki.issue(sid, ips=["127.0.0.1"])
    meo = ProviderMeo()
    provider = ProviderWorkflow("prov", meo, OfferPolicy(FixedPricing(100), 64))
    gate = TlsGate()
    deployments = Deployments(provider, gate)
    servicer = PeerServicer(provider, deployments, gate, common_pb2.SystemInfo(), "10.213.0.20")
    server = await start_server(
        "127.0.0.1:0",
        server_credentials(pki.paths("prov")),
        [(SERVICE, servicer)],
        access=lambda method, peer: peer in CONSUMERS,
    )
    try:
        yield Provider(server.port, pki, meo, provider, deployments)
    finally:
        await deployments.close()
        await server.stop(0)


APP = common_pb2.AppSpec(image="mecfed/echo:1", replicas=1)


def install_request(offer_id: str, fid: str = "fed-1") -> peer_pb2.InstallAppRequest:
    return peer_pb2.InstallAppRequest(
        offer_id=offer_id,
        federation_id=fid,
        consumer_endpoint=common_pb2.OverlayEndpoint(
            underlay_ip="10.213.0.10", subnet="172.30.1.0/24", app_ips=["172.30.1.1"]
        ),
        candidates=[common_pb2.TunnelCandidate(vni=5000, udp_port=4789)],
    )


async def offer(stub, fid: str = "fed-1") -> str:
    resp = await stub.RequestOffer(
        peer_pb2.RequestOfferRequest(federation_id=fid, app=APP, max_price=1000), timeout=5
    )
    return resp.offer_id


async def test_a_fast_refusal_ends_every_watch_with_failed_and_the_reason(served):
    served.meo.fail = True  # the MEO refuses within microseconds
    ch, stub = served.stub("cons")
    async with ch:
        for i in range(25):
            fid = f"fed-{i}"
            installed = await stub.InstallApp(install_request(await offer(stub, fid), fid))
            request = peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id)
            seen = [d async for d in stub.WatchAppInstance(request, timeout=5)]
            assert seen, "the stream ended without any state"
            final = seen[-1]
            assert final.state == common_pb2.INSTANCE_STATE_FAILED, seen
            assert "image pull failed" in final.error.detail
    assert served.provider.ledger.used == 0


async def test_the_consumer_hears_the_reason_not_a_number(served):
    served.meo.fail = True
    client, contact = served.client("cons")
    try:
        for i in range(10):
            fid = f"fed-{i}"
            quote = await client.request_offer(
                contact, OfferRequest(fid, AppSpec("mecfed/echo:1", 1), 1000), 5
            )
            installation = Installation(
                quote.offer_id,
                fid,
                OverlayEndpoint("10.213.0.10", "172.30.1.0/24", ("172.30.1.1",)),
                (TunnelCandidate(5000, 4789),),
            )
            with pytest.raises(DeploymentFailed, match="image pull failed"):
                await client.install(contact, installation, 5)
    finally:
        await client.close()


async def test_remove_app_by_federation_id_only_for_the_callers_own(served):
    import asyncio

    served.meo.hold = asyncio.Event()  # still deploying when removed
    ch, stub = served.stub("cons")
    ch2, intruder = served.stub("other")
    async with ch, ch2:
        mine = await stub.InstallApp(install_request(await offer(stub)))
        theirs = await intruder.InstallApp(install_request(await offer(intruder)))  # same id
        assert mine.app_instance_id != theirs.app_instance_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await intruder.RemoveApp(peer_pb2.AppInstanceRequest(federation_id="fed-2"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RemoveApp(peer_pb2.AppInstanceRequest())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "federation_id" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RemoveApp(peer_pb2.AppInstanceRequest(federation_id="bad id"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        removed = await stub.RemoveApp(peer_pb2.AppInstanceRequest(federation_id="fed-1"))
        assert removed.app_instance_id == mine.app_instance_id
        assert removed.state == common_pb2.INSTANCE_STATE_TERMINATED
        assert removed.error.detail  # why it ended before READY
        assert served.meo.cancelled == [("cons", "fed-1")]
        assert served.meo.released == [("cons", "fed-1")]
        # The other consumer's federation of the same id is untouched.
        still = await intruder.GetAppInstanceDetails(
            peer_pb2.AppInstanceRequest(app_instance_id=theirs.app_instance_id)
        )
        assert still.state == common_pb2.INSTANCE_STATE_PENDING
        served.meo.hold.set()
        final = [
            d
            async for d in intruder.WatchAppInstance(
                peer_pb2.AppInstanceRequest(app_instance_id=theirs.app_instance_id), timeout=5
            )
        ][-1]
        assert final.state == common_pb2.INSTANCE_STATE_READY
    assert set(served.meo.services) == {("other", "fed-1")}
    assert served.provider.ledger.used == 1
    assert {o.consumer_id for o in served.meo.orders} == {"cons", "other"}


async def test_a_stopping_provider_ends_watches_with_the_final_state(served):
    import asyncio

    served.meo.hold = asyncio.Event()
    ch, stub = served.stub("cons")
    async with ch:
        installed = await stub.InstallApp(install_request(await offer(stub)))
        request = peer_pb2.AppInstanceRequest(app_instance_id=installed.app_instance_id)
        watch = stub.WatchAppInstance(request, timeout=5)
        first = await watch.read()
        assert first.state == common_pb2.INSTANCE_STATE_PENDING
        await served.deployments.close()  # MefServer.stop does this before the server stops
        rest = []
        while (msg := await watch.read()) is not grpc.aio.EOF:
            rest.append(msg)
    assert rest and rest[-1].state == common_pb2.INSTANCE_STATE_FAILED
    assert "stopped during the deployment" in rest[-1].error.detail
    assert served.meo.cancelled == [("cons", "fed-1")]
    assert served.meo.released == [("cons", "fed-1")] and served.provider.ledger.used == 0
