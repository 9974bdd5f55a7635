"""The direct Mff transport: peer-to-peer gRPC between pre-registered MEFs
(the paper's "SOA" baseline), mutual TLS with one certificate per system.

Consumer side: DirectTransport fans RequestOffer out to every registered
peer and streams the answers back; InstallApp + WatchAppInstance carry the
deployment. Provider side: mef.transport.peer_service.PeerServicer with its
TLS gate (the caller's certificate names the consumer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from mecfed import security
from mecfed.config import TlsPaths
from mecfed.errors import (
    DeadlineExceeded,
    DeploymentFailed,
    from_rpc_error,
)
from mecfed.v1 import common_pb2, peer_pb2, peer_pb2_grpc
from mef.domain import (
    DeploymentOrder,
    DeploymentResult,
    Offer,
    OverlayEndpoint,
    ServiceNeed,
    from_ts,
)
from mef.peers import PeerBook
from mef.transport.base import ProviderHandler

log = logging.getLogger(__name__)


class DirectTransport:
    """Consumer side of the direct transport."""

    name = "direct"
    offer_grace = 0.0

    def __init__(
        self,
        system_id: str,
        tls: TlsPaths,
        peers: PeerBook,
        interceptors: Sequence[Any] = (),
    ) -> None:
        self.system_id = system_id
        self._tls = tls
        self._peers = peers
        self._interceptors = list(interceptors)  # e.g. trace propagation
        self._stubs: dict[str, peer_pb2_grpc.FederationPeerStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def _stub(self, peer_id: str) -> peer_pb2_grpc.FederationPeerStub:
        stub = self._stubs.get(peer_id)
        if stub is None:
            peer = self._peers.get(peer_id)
            channel = security.secure_channel(
                peer.endpoint, self._tls, peer.system_id, interceptors=self._interceptors
            )
            self._channels.append(channel)
            stub = self._stubs[peer_id] = peer_pb2_grpc.FederationPeerStub(channel)
        return stub

    async def start(self, provider: ProviderHandler, mff_endpoint: str) -> None:
        # Incoming calls arrive through PeerServicer on the MEF's server.
        for peer in self._peers:
            self._stub(peer.system_id)  # open channels early: TLS set-up off the critical path

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        timeout = need.requirements.offer_timeout_ms / 1000
        request = peer_pb2.RequestOfferRequest(
            federation_id=need.federation_id,
            app=need.app.to_proto(),
            max_price=need.requirements.max_price,
        )

        async def ask(peer_id: str) -> Offer | None:
            try:
                resp = await self._stub(peer_id).RequestOffer(request, timeout=timeout)
            except grpc.RpcError as exc:
                # A peer that declines, is down or too slow is skipped.
                log.debug("%s: no offer from %s: %s", need.federation_id, peer_id, exc.code())
                return None
            if resp.provider_id != peer_id:
                log.warning("%s answered as %r; ignored", peer_id, resp.provider_id)
                return None
            return Offer(
                provider_id=peer_id,
                price=resp.price,
                ref=resp.offer_id,
                valid_until=from_ts(resp.valid_until),
            )

        tasks = [asyncio.create_task(ask(p.system_id)) for p in self._peers]
        try:
            for next_done in asyncio.as_completed(tasks):
                offer = await next_done
                if offer is not None:
                    yield offer
        finally:
            for task in tasks:
                task.cancel()

    async def award(self, need: ServiceNeed, offer: Offer) -> Offer:
        """Nothing to send: InstallApp accepts the offer."""
        return offer

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        stub = self._stub(offer.provider_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            details = await stub.InstallApp(
                peer_pb2.InstallAppRequest(
                    offer_id=offer.ref,
                    federation_id=order.federation_id,
                    consumer_endpoint=order.consumer_endpoint.to_proto(),
                    candidates=[c.to_proto() for c in order.candidates],
                ),
                timeout=timeout,
            )
            watch = stub.WatchAppInstance(
                peer_pb2.AppInstanceRequest(app_instance_id=details.app_instance_id),
                timeout=max(0.1, deadline - loop.time()),
            )
            # Read to the end: the provider closes the stream after a terminal
            # state, and a stream read to its end also ends its trace span.
            async for details in watch:  # noqa: B007
                pass
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(
                    f"{offer.provider_id} did not finish deploying within {timeout:.0f} s"
                ) from None
            raise from_rpc_error(exc, f"deployment at {offer.provider_id}") from None
        if details.state != common_pb2.INSTANCE_STATE_READY:
            raise DeploymentFailed(
                f"{offer.provider_id} could not deploy: {details.error.detail or details.state}"
            )
        return DeploymentResult(
            details.app_instance_id, OverlayEndpoint.from_proto(details.provider_endpoint)
        )

    async def terminate(self, federation_id: str, provider_id: str, app_instance_id: str) -> None:
        if not (provider_id and app_instance_id):
            return  # nothing was installed anywhere
        try:
            await self._stub(provider_id).RemoveApp(
                peer_pb2.AppInstanceRequest(app_instance_id=app_instance_id), timeout=60
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"RemoveApp at {provider_id}") from None
