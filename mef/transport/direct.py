"""The direct Mff transport: peer-to-peer gRPC between pre-registered MEFs
(the paper's "SOA" baseline), mutual TLS with one certificate per system.

Consumer side: DirectTransport fans RequestOffer out to every registered
peer and streams the answers back; InstallApp + WatchAppInstance carry the
deployment. Provider side: PeerServicer turns Mff calls into calls on the
transport-independent ProviderHandler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import grpc

from mecfed import security
from mecfed import validation as v
from mecfed.config import TlsPaths
from mecfed.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DeploymentFailed,
    InvalidArgument,
    MecfedError,
    NotFound,
    ResourceExhausted,
    Unavailable,
    from_rpc_error,
    grpc_status_of,
)
from mecfed.grpcutil import map_errors
from mecfed.v1 import common_pb2, peer_pb2, peer_pb2_grpc
from mef.domain import (
    AppSpec,
    DeploymentOrder,
    DeploymentResult,
    Offer,
    OverlayEndpoint,
    Requirements,
    ServiceNeed,
    TunnelCandidate,
    from_ts,
    ts,
)
from mef.peers import PeerBook
from mef.transport.base import ProviderHandler

log = logging.getLogger(__name__)

_TERMINAL = (
    common_pb2.INSTANCE_STATE_READY,
    common_pb2.INSTANCE_STATE_FAILED,
    common_pb2.INSTANCE_STATE_TERMINATED,
)


class DirectTransport:
    """Consumer side of the direct transport."""

    name = "direct"

    def __init__(self, system_id: str, tls: TlsPaths, peers: PeerBook) -> None:
        self.system_id = system_id
        self._tls = tls
        self._peers = peers
        self._stubs: dict[str, peer_pb2_grpc.FederationPeerStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def _stub(self, peer_id: str) -> peer_pb2_grpc.FederationPeerStub:
        stub = self._stubs.get(peer_id)
        if stub is None:
            peer = self._peers.get(peer_id)
            channel = security.secure_channel(peer.endpoint, self._tls, peer.system_id)
            self._channels.append(channel)
            stub = self._stubs[peer_id] = peer_pb2_grpc.FederationPeerStub(channel)
        return stub

    async def start(self, provider: ProviderHandler) -> None:
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

    async def award(self, need: ServiceNeed, offer: Offer) -> None:
        """Nothing to send: InstallApp accepts the offer."""

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
            async for details in watch:
                if details.state in _TERMINAL:
                    break
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
        try:
            await self._stub(provider_id).RemoveApp(
                peer_pb2.AppInstanceRequest(app_instance_id=app_instance_id), timeout=60
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"RemoveApp at {provider_id}") from None


@dataclass
class _Instance:
    """Provider-side record of an InstallApp, for GetAppInstanceDetails/Watch."""

    app_instance_id: str
    federation_id: str
    consumer_id: str
    state: int = common_pb2.INSTANCE_STATE_PENDING
    endpoint: OverlayEndpoint | None = None
    error: common_pb2.ProblemDetails | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def to_proto(self) -> peer_pb2.AppInstanceDetails:
        msg = peer_pb2.AppInstanceDetails(
            app_instance_id=self.app_instance_id,
            federation_id=self.federation_id,
            state=self.state,
        )
        if self.endpoint is not None:
            msg.provider_endpoint.CopyFrom(self.endpoint.to_proto())
        if self.error is not None:
            msg.error.CopyFrom(self.error)
        return msg

    def set(self, state: int) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()


class PeerServicer(peer_pb2_grpc.FederationPeerServicer):
    """Provider side of the direct transport (Mff FederationPeer service)."""

    MAX_INSTANCES = 10_000

    def __init__(self, provider: ProviderHandler) -> None:
        # Set once the server knows its port.
        self.system_info = common_pb2.SystemInfo()
        self._provider = provider
        self._instances: dict[str, _Instance] = {}
        self._by_federation: dict[tuple[str, str], str] = {}

    async def close(self) -> None:
        for inst in self._instances.values():
            if inst.task is not None:
                inst.task.cancel()

    @staticmethod
    def _caller(context: grpc.aio.ServicerContext) -> str:
        peer = security.peer_identity(context)
        if peer is None:  # the authorizer interceptor normally stops these
            raise MecfedError("caller identity missing")
        return peer

    def _owned(self, app_instance_id: str, caller: str) -> _Instance:
        v.require_id(app_instance_id, "app_instance_id")
        inst = self._instances.get(app_instance_id)
        if inst is None or inst.consumer_id != caller:
            raise NotFound(f"app instance {app_instance_id!r} not found")
        return inst

    @map_errors
    async def GetFederationDetails(self, request, context):
        return self.system_info

    @map_errors
    async def RequestOffer(self, request, context):
        caller = self._caller(context)
        v.require_id(request.federation_id, "federation_id")
        app = AppSpec.from_proto(request.app).validate()
        v.require_price(request.max_price, "max_price")
        need = ServiceNeed(request.federation_id, caller, app, Requirements(request.max_price))
        offer = await self._provider.quote(need)
        return peer_pb2.OfferResponse(
            offer_id=offer.ref,
            provider_id=offer.provider_id,
            price=offer.price,
            valid_until=ts(offer.valid_until),
        )

    @map_errors
    async def InstallApp(self, request, context):
        caller = self._caller(context)
        v.require_id(request.offer_id, "offer_id")
        v.require_id(request.federation_id, "federation_id")
        if not request.HasField("consumer_endpoint"):
            raise InvalidArgument("consumer_endpoint is required")
        endpoint = OverlayEndpoint.from_proto(request.consumer_endpoint).validate(
            "consumer_endpoint"
        )
        if not 1 <= len(request.candidates) <= 16:
            raise InvalidArgument("candidates must hold 1..16 (vni, udp_port) pairs")
        candidates = tuple(TunnelCandidate.from_proto(c) for c in request.candidates)
        for c in candidates:
            v.require_range(c.vni, "candidates.vni", 1, 16_777_215)
            v.require_range(c.udp_port, "candidates.udp_port", 1024, 65535)
        key = (caller, request.federation_id)
        if key in self._by_federation:
            raise AlreadyExists(f"federation {request.federation_id} is already installed")
        if len(self._instances) >= self.MAX_INSTANCES:
            raise ResourceExhausted("too many app instances")
        # The app priced in the offer is authoritative: the provider deploys
        # what it quoted for. accept() refuses bad offers here, synchronously.
        app = await self._provider.accept(request.offer_id, caller, request.federation_id)
        order = DeploymentOrder(request.federation_id, caller, app, endpoint, candidates)
        inst = _Instance(f"inst-{secrets.token_hex(8)}", request.federation_id, caller)
        self._instances[inst.app_instance_id] = inst
        self._by_federation[key] = inst.app_instance_id
        inst.task = asyncio.create_task(self._finish(inst, self._provider.deploy(order)))
        return inst.to_proto()

    async def _finish(self, inst: _Instance, deploying: Awaitable[DeploymentResult]) -> None:
        try:
            result = await deploying
        except Exception as exc:
            code, msg = grpc_status_of(exc)
            inst.error = common_pb2.ProblemDetails(
                title=code.name, status=getattr(exc, "http_status", 500), detail=msg
            )
            inst.set(common_pb2.INSTANCE_STATE_FAILED)
            return
        inst.endpoint = result.provider_endpoint
        inst.set(common_pb2.INSTANCE_STATE_READY)

    @map_errors
    async def GetAppInstanceDetails(self, request, context):
        return self._owned(request.app_instance_id, self._caller(context)).to_proto()

    @map_errors
    async def WatchAppInstance(self, request, context):
        inst = self._owned(request.app_instance_id, self._caller(context))
        while True:
            changed = inst.changed
            yield inst.to_proto()
            if inst.state in _TERMINAL:
                return
            await changed.wait()

    @map_errors
    async def RemoveApp(self, request, context):
        caller = self._caller(context)
        inst = self._owned(request.app_instance_id, caller)
        if inst.state == common_pb2.INSTANCE_STATE_TERMINATED:
            return inst.to_proto()
        if inst.task is not None and not inst.task.done():
            # Let a deployment in flight finish (or fail) before removing it,
            # so nothing it is still creating is left behind.
            with contextlib.suppress(Exception):
                await asyncio.shield(inst.task)
        inst.set(common_pb2.INSTANCE_STATE_TERMINATING)
        try:
            await self._provider.release(inst.federation_id, caller)
        except MecfedError:
            raise
        except Exception as exc:
            raise Unavailable(f"release failed: {exc}") from exc
        inst.set(common_pb2.INSTANCE_STATE_TERMINATED)
        self._by_federation.pop((caller, inst.federation_id), None)
        return inst.to_proto()
