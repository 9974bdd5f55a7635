"""The direct transport's consumer side against a scripted provider: a real
gRPC server with mutual TLS on loopback (port 0) whose FederationPeer
answers as each test says. Covers what a real provider does wrong: a watch
stream that ends before the final state, a provider that dies or goes
silent during the deployment, RemoveApp for an instance it no longer has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mecfed.config import PeerConfig
from mecfed.errors import DeploymentFailed, NotFound, ResourceExhausted, Unavailable
from mecfed.model import (
    AppSpec,
    DeploymentOrder,
    Federation,
    Offer,
    OverlayEndpoint,
    Requirements,
    ServiceNeed,
    TunnelCandidate,
)
from mecfed.rpc import server_credentials, start_server
from mecfed.testbed.pki import Pki
from mecfed.v1 import common_pb2, peer_pb2
from mef.peers import PeerBook
from mef.transport.direct import DirectTransport
from mef.transport.peer_client import PeerClient
from mef.transport.peer_service import SERVICE

PENDING = common_pb2.INSTANCE_STATE_PENDING
READY = common_pb2.INSTANCE_STATE_READY
FAILED = common_pb2.INSTANCE_STATE_FAILED
CONSUMER_END = OverlayEndpoint("10.213.0.10", "172.30.1.0/24")
CANDIDATES = (TunnelCandidate(5000, 4789),)


def details(state, **kw) -> peer_pb2.AppInstanceDetails:
    msg = peer_pb2.AppInstanceDetails(app_instance_id="inst-1", federation_id="fed-1", state=state)
    if state == READY:
        msg.provider_endpoint.CopyFrom(
            common_pb2.OverlayEndpoint(
                underlay_ip="10.213.0.11",
                subnet="172.30.1.0/24",
                app_ips=["172.30.1.129"],
                vni=5000,
                udp_port=4789,
            )
        )
    for name, value in kw.items():
        if name == "error":
            msg.error.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


class ScriptedPeer:
    """FederationPeer with scripted answers."""

    def __init__(self) -> None:
        self.watch: list[peer_pb2.AppInstanceDetails] = [details(PENDING)]
        self.watch_hangs = False
        self.gets: list[peer_pb2.AppInstanceDetails] = []
        self.get_hangs = False
        self.removed: list[peer_pb2.AppInstanceRequest] = []
        self.remove_error: Exception | None = None
        self.offer_error: Exception | None = None

    async def RequestOffer(self, request, context):
        if self.offer_error is not None:
            raise self.offer_error
        return peer_pb2.OfferResponse(offer_id="o-1", provider_id="mec-01", price=10)

    async def InstallApp(self, request, context):
        return details(PENDING)

    async def WatchAppInstance(
        self, request, context
    ) -> AsyncIterator[peer_pb2.AppInstanceDetails]:
        for msg in self.watch:
            yield msg
        if self.watch_hangs:
            await asyncio.sleep(3600)

    async def GetAppInstanceDetails(self, request, context):
        if self.get_hangs:
            await asyncio.sleep(3600)
        return self.gets.pop(0) if len(self.gets) > 1 else self.gets[0]

    async def RemoveApp(self, request, context):
        self.removed.append(request)
        if self.remove_error is not None:
            raise self.remove_error
        return details(common_pb2.INSTANCE_STATE_TERMINATED)


@pytest.fixture
async def net(tmp_path: Path):
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    peer = ScriptedPeer()
    rpc = await start_server(
        "127.0.0.1:0",
        server_credentials(pki.issue("mec-01", ips=["127.0.0.1"])),
        [(SERVICE, peer)],
        access=lambda method, caller: caller == "mec-00",
    )
    book = PeerBook("mec-00", [PeerConfig("mec-01", f"127.0.0.1:{rpc.port}")])
    transport = DirectTransport(
        book, PeerClient(pki.issue("mec-00", ips=["127.0.0.1"])), provider_silence=0.6
    )
    try:
        yield peer, transport, rpc
    finally:
        await transport.close()
        await rpc.stop(0)


def order() -> DeploymentOrder:
    return DeploymentOrder("fed-1", "mec-00", AppSpec("mecfed/echo:1"), CONSUMER_END, CANDIDATES)


OFFER = Offer("mec-01", 10, "o-1", 2e9)


def problem(detail: str) -> common_pb2.ProblemDetails:
    return common_pb2.ProblemDetails(title="DeploymentFailed", status=409, detail=detail)


async def test_stream_ending_after_pending_still_reports_the_providers_reason(net):
    # The provider's MEO refused within milliseconds and the watch ended
    # after PENDING: the consumer used to say "could not deploy: 1".
    peer, transport, _ = net
    peer.gets = [details(FAILED, error=problem("image mecfed/echo:1 not found"))]
    with pytest.raises(DeploymentFailed) as err:
        await transport.deploy(OFFER, order(), timeout=10)
    assert "image mecfed/echo:1 not found" in err.value.message
    assert ": 1" not in err.value.message


async def test_a_failure_without_a_reason_is_named_in_words(net):
    peer, transport, _ = net
    peer.watch = [details(PENDING), details(FAILED)]
    with pytest.raises(DeploymentFailed, match="reported FAILED without a reason"):
        await transport.deploy(OFFER, order(), timeout=10)


async def test_early_end_is_followed_until_ready(net):
    peer, transport, _ = net
    peer.gets = [details(PENDING), details(PENDING), details(READY)]
    peer.watch = [details(PENDING)]  # every watch ends early

    async def ready_later() -> None:
        await asyncio.sleep(0.5)
        peer.watch = [details(READY)]

    later = asyncio.create_task(ready_later())
    result = await transport.deploy(OFFER, order(), timeout=10)
    await later
    assert result.app_instance_id == "inst-1"
    assert result.provider_endpoint.vni == 5000


async def test_provider_that_dies_during_deployment_is_noticed_within_the_bound(net):
    peer, transport, rpc = net
    peer.watch_hangs = True
    peer.gets = [details(PENDING)]
    deploying = asyncio.create_task(transport.deploy(OFFER, order(), timeout=60))
    await asyncio.sleep(0.2)
    await rpc.stop(0)  # killed
    with pytest.raises(Unavailable, match="went silent"):
        await asyncio.wait_for(deploying, 10)  # bound: 0.6 s silence, not the 60 s timeout


async def test_provider_that_hangs_is_noticed_within_the_bound(net):
    peer, transport, _ = net
    peer.watch_hangs = True
    peer.get_hangs = True
    peer.gets = [details(PENDING)]
    with pytest.raises(Unavailable, match="went silent"):
        await asyncio.wait_for(transport.deploy(OFFER, order(), timeout=60), 10)


async def test_a_slow_but_answering_provider_is_waited_for(net):
    peer, transport, _ = net
    peer.watch_hangs = True  # nothing new on the stream for longer than the silence bound
    peer.gets = [details(PENDING)]

    async def ready_later() -> None:
        await asyncio.sleep(1.5)
        peer.gets = [details(READY)]

    later = asyncio.create_task(ready_later())
    result = await asyncio.wait_for(transport.deploy(OFFER, order(), timeout=60), 10)
    await later
    assert result.app_instance_id == "inst-1"


def federation(**kw) -> Federation:
    return Federation(
        "fed-1", "svc", AppSpec("mecfed/echo:1"), Requirements(100), "mec-00", "direct", **kw
    )


async def test_terminate_by_federation_id_when_the_instance_id_is_unknown(net):
    peer, transport, _ = net
    await transport.terminate(federation(provider_id="mec-01"))
    assert [(r.app_instance_id, r.federation_id) for r in peer.removed] == [("", "fed-1")]
    await transport.terminate(federation(provider_id="mec-01", app_instance_id="inst-1"))
    assert (peer.removed[-1].app_instance_id, peer.removed[-1].federation_id) == (
        "inst-1",
        "fed-1",
    )
    await transport.terminate(federation())  # never awarded: nothing to ask
    assert len(peer.removed) == 2


async def test_terminate_takes_not_found_as_released(net):
    peer, transport, _ = net
    peer.remove_error = NotFound("federation fed-1 not found")
    await transport.terminate(federation(provider_id="mec-01"))


async def test_terminate_raises_unavailable_while_the_provider_is_down(net):
    _peer, transport, rpc = net
    await rpc.stop(0)
    with pytest.raises(Unavailable):
        await transport.terminate(federation(provider_id="mec-01", app_instance_id="inst-1"))
    with pytest.raises(Unavailable, match="not a registered peer"):
        await transport.terminate(federation(provider_id="mec-77"))


async def test_no_offer_names_capacity(net):
    peer, transport, _ = net
    peer.offer_error = ResourceExhausted("no capacity left for 1 replica")
    need = ServiceNeed("fed-1", "mec-00", AppSpec("mecfed/echo:1"), Requirements(100))
    with pytest.raises(ResourceExhausted, match=r"mec-01: .*no capacity left"):
        async for _ in transport.solicit_offers(need):
            pass
