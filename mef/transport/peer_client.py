"""The consumer's Mff client: calls another federator's FederationPeer
service. Shared by the direct transport and the chain transport's fast path
(the deployment hand-off), so both speak Mff the same way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from mecfed.config import TlsPaths
from mecfed.errors import DeadlineExceeded, DeploymentFailed, Unavailable
from mecfed.model import AppInstanceDetails, Installation, InstanceState, OfferRequest
from mecfed.rpc.security import secure_channel
from mecfed.rpc.status import error_from_rpc
from mecfed.v1 import peer_pb2, peer_pb2_grpc
from mecfed.wire import peer as wire
from mecfed.wire.common import from_ts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerContact:
    """Where a federator's Mff server is and the system id its certificate
    must name."""

    endpoint: str  # host:port
    system_id: str


@dataclass(frozen=True)
class Quote:
    offer_id: str
    provider_id: str
    price: int
    valid_until: float


class PeerClient:
    """mTLS channels to peers, opened once and reused."""

    def __init__(self, tls: TlsPaths, interceptors: Sequence[Any] = ()) -> None:
        self._tls = tls
        self._interceptors = list(interceptors)
        self._stubs: dict[PeerContact, peer_pb2_grpc.FederationPeerStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def stub(self, peer: PeerContact) -> peer_pb2_grpc.FederationPeerStub:
        stub = self._stubs.get(peer)
        if stub is None:
            channel = secure_channel(
                peer.endpoint, self._tls, peer.system_id, interceptors=self._interceptors
            )
            self._channels.append(channel)
            stub = self._stubs[peer] = peer_pb2_grpc.FederationPeerStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    async def request_offer(
        self, peer: PeerContact, request: OfferRequest, timeout: float
    ) -> Quote:
        try:
            resp = await self.stub(peer).RequestOffer(
                wire.offer_request_to_proto(request), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"RequestOffer at {peer.system_id}") from None
        return Quote(resp.offer_id, resp.provider_id, resp.price, from_ts(resp.valid_until))

    async def install(
        self, peer: PeerContact, installation: Installation, timeout: float
    ) -> AppInstanceDetails:
        """InstallApp, then follows the instance to its deployment result.
        Raises DeploymentFailed with the provider's reason if it failed,
        DeadlineExceeded if it took longer than ``timeout``."""
        stub = self.stub(peer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            installed = wire.details_from_proto(
                await stub.InstallApp(wire.installation_to_proto(installation), timeout=timeout)
            )
            details = await self._follow(stub, installed, max(0.1, deadline - loop.time()))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(
                    f"{peer.system_id} did not finish deploying within {timeout:.0f} s"
                ) from None
            raise error_from_rpc(exc, f"deployment at {peer.system_id}") from None
        if details.state != InstanceState.READY:
            reason = details.error.detail if details.error else details.state.name.lower()
            raise DeploymentFailed(f"{peer.system_id} could not deploy: {reason}")
        return details

    async def _follow(
        self,
        stub: peer_pb2_grpc.FederationPeerStub,
        details: AppInstanceDetails,
        timeout: float,
    ) -> AppInstanceDetails:
        request = peer_pb2.AppInstanceRequest(app_instance_id=details.app_instance_id)
        if not details.state.terminal:
            # Read to the end: the provider closes the stream after a terminal
            # state (a stream read to its end also ends its trace span).
            async for msg in stub.WatchAppInstance(request, timeout=timeout):
                details = wire.details_from_proto(msg)
        if not details.state.terminal:
            # The stream ended early (e.g. the provider restarted): ask once.
            details = wire.details_from_proto(
                await stub.GetAppInstanceDetails(request, timeout=timeout)
            )
        if not details.state.terminal:
            raise Unavailable(
                f"the provider stopped reporting app instance {details.app_instance_id} "
                f"while it was {details.state.name}"
            )
        return details

    async def remove(self, peer: PeerContact, app_instance_id: str, timeout: float = 60) -> None:
        try:
            await self.stub(peer).RemoveApp(
                peer_pb2.AppInstanceRequest(app_instance_id=app_instance_id), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"RemoveApp at {peer.system_id}") from None


__all__ = ["PeerClient", "PeerContact", "Quote"]
