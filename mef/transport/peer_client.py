"""The consumer's Mff client: calls another federator's FederationPeer
service. Shared by the direct transport and the chain transport's fast path
(the deployment hand-off), so both speak Mff the same way."""

from __future__ import annotations

import asyncio
import contextlib
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

# Seconds a provider may stay unheard from during a deployment before the
# consumer gives up on it (see :class:`_Follower`).
DEFAULT_SILENCE = 10.0


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
                peer.endpoint,
                self._tls,
                peer.system_id,
                interceptors=self._interceptors,
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
        self,
        peer: PeerContact,
        installation: Installation,
        timeout: float,
        silence: float = DEFAULT_SILENCE,
    ) -> AppInstanceDetails:
        """InstallApp, then follows the instance to its deployment result.
        Raises DeploymentFailed with the provider's reason if it failed,
        DeadlineExceeded if it took longer than ``timeout``, Unavailable if
        the provider could not be heard from for ``silence`` seconds (it
        died, or its link did: the consumer moves on and releases it later).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            installed = wire.details_from_proto(
                await self.stub(peer).InstallApp(
                    wire.installation_to_proto(installation), timeout=timeout
                )
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"InstallApp at {peer.system_id}") from None
        details = await _Follower(self.stub(peer), peer, installed, deadline, silence).run()
        if details.state != InstanceState.READY:
            raise DeploymentFailed(f"{peer.system_id} could not deploy: {failure_reason(details)}")
        return details

    async def remove(
        self,
        peer: PeerContact,
        app_instance_id: str = "",
        timeout: float = 60,
        *,
        federation_id: str = "",
    ) -> None:
        """RemoveApp by instance id or, when that is unknown (a crash or a
        terminate during DEPLOYING lost the InstallApp answer), by the
        caller's federation id. NotFound means the provider holds nothing."""
        try:
            await self.stub(peer).RemoveApp(
                peer_pb2.AppInstanceRequest(
                    app_instance_id=app_instance_id, federation_id=federation_id
                ),
                timeout=timeout,
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"RemoveApp at {peer.system_id}") from None


def failure_reason(details: AppInstanceDetails) -> str:
    """The provider's ProblemDetails as words, never a bare enum value."""
    if details.error is not None and (details.error.detail or details.error.title):
        if details.error.title and details.error.detail:
            return f"{details.error.detail} ({details.error.title})"
        return details.error.detail or details.error.title
    return f"the provider reported {details.state.name} without a reason"


# Codes after which the instance may still be followed: the provider or the
# path to it failed, not the request.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


class _Follower:
    """Follows one app instance to READY or FAILED however the provider
    behaves: the WatchAppInstance stream is re-opened whenever it ends
    without a final state or breaks, and while nothing is heard the instance
    is probed with GetAppInstanceDetails, so a provider that went silent
    (killed, or its link down with the stream hanging) is noticed within
    ``silence`` seconds."""

    def __init__(
        self,
        stub: peer_pb2_grpc.FederationPeerStub,
        peer: PeerContact,
        details: AppInstanceDetails,
        deadline: float,
        silence: float,
    ) -> None:
        self._stub = stub
        self._peer = peer
        self._request = peer_pb2.AppInstanceRequest(app_instance_id=details.app_instance_id)
        self._details = details
        self._deadline = deadline
        self._silence = max(0.3, silence)
        self._loop = asyncio.get_running_loop()
        self._heard = self._loop.time()

    def _seen(self, msg: peer_pb2.AppInstanceDetails) -> None:
        self._details = wire.details_from_proto(msg)
        self._heard = self._loop.time()

    async def run(self) -> AppInstanceDetails:
        if self._details.state.terminal:
            return self._details
        watcher = asyncio.create_task(self._watch())
        probe_every = self._silence / 3
        try:
            while not watcher.done():
                await asyncio.wait({watcher}, timeout=probe_every)
                if watcher.done() or self._details.state.terminal:
                    break
                now = self._loop.time()
                if now >= self._deadline:
                    raise DeadlineExceeded(
                        f"{self._peer.system_id} did not finish deploying "
                        f"{self._details.app_instance_id} in time"
                    )
                if now - self._heard >= probe_every:
                    await self._probe(min(probe_every, max(0.05, self._deadline - now)))
                if self._loop.time() - self._heard > self._silence:
                    raise Unavailable(
                        f"{self._peer.system_id} went silent for more than {self._silence:.0f} s "
                        f"while deploying {self._details.app_instance_id} "
                        f"({self._details.state.name})"
                    )
            if watcher.done():
                watcher.result()  # its error, if it gave up
            if not self._details.state.terminal:
                raise DeadlineExceeded(
                    f"{self._peer.system_id} did not finish deploying "
                    f"{self._details.app_instance_id} in time"
                )
            return self._details
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher

    async def _watch(self) -> None:
        while not self._details.state.terminal:
            remaining = self._deadline - self._loop.time()
            if remaining <= 0:
                return
            try:
                # Read to the end: the provider closes the stream after a
                # final state (a stream read to its end also ends its span).
                async for msg in self._stub.WatchAppInstance(self._request, timeout=remaining):
                    self._seen(msg)
            except grpc.RpcError as exc:
                if exc.code() not in _TRANSIENT:
                    raise error_from_rpc(
                        exc, f"WatchAppInstance at {self._peer.system_id}"
                    ) from None
                log.debug("%s: watch broke: %s", self._peer.system_id, exc.code())
            if self._details.state.terminal:
                return
            # Ended early or broke: ask for the instance as it is now, then
            # watch again shortly (not in a hot loop).
            await self._probe(max(0.05, min(self._silence / 3, self._deadline - self._loop.time())))
            if not self._details.state.terminal:
                await asyncio.sleep(0.2)

    async def _probe(self, timeout: float) -> None:
        try:
            self._seen(await self._stub.GetAppInstanceDetails(self._request, timeout=timeout))
        except grpc.RpcError as exc:
            if exc.code() not in _TRANSIENT:
                raise error_from_rpc(
                    exc, f"GetAppInstanceDetails at {self._peer.system_id}"
                ) from None


__all__ = ["DEFAULT_SILENCE", "PeerClient", "PeerContact", "Quote", "failure_reason"]
