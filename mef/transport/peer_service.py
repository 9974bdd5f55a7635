"""The provider's Mff gRPC service (FederationPeer), shared by both
transports: the direct backend admits orders by TLS identity and offer id,
the chain backend by the consumer's chain signature and the auction result.
Incoming calls become calls on the transport-independent ProviderHandler."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from mecfed import security
from mecfed import validation as v
from mecfed.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MecfedError,
    NotFound,
    ResourceExhausted,
    Unavailable,
    grpc_status_of,
)
from mecfed.grpcutil import map_errors
from mecfed.v1 import common_pb2, peer_pb2, peer_pb2_grpc
from mef.domain import (
    AppSpec,
    DeploymentOrder,
    DeploymentResult,
    OverlayEndpoint,
    Requirements,
    ServiceNeed,
    TunnelCandidate,
    ts,
)
from mef.transport.base import ProviderHandler

_TERMINAL = (
    common_pb2.INSTANCE_STATE_READY,
    common_pb2.INSTANCE_STATE_FAILED,
    common_pb2.INSTANCE_STATE_TERMINATED,
)


@dataclass
class _Instance:
    """Provider-side record of an InstallApp, for GetAppInstanceDetails/Watch."""

    app_instance_id: str
    federation_id: str
    # Who the workflow deploys for (system id, or chain address on the chain).
    consumer_id: str
    # The TLS identity that placed the order: only it may watch or remove.
    caller: str
    state: int = common_pb2.INSTANCE_STATE_PENDING
    endpoint: OverlayEndpoint | None = None
    error: common_pb2.ProblemDetails | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    offer_ref: str = ""
    notice: bytes = b""

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
        if self.notice:
            msg.deployment_notice = self.notice
        return msg

    def set(self, state: int) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()


class OrderGate(Protocol):
    """How a transport admits deployment orders arriving over Mff gRPC."""

    #: Whether RequestOffer is served (direct) or offers go elsewhere (chain).
    direct_offers: bool

    async def admit(self, request: peer_pb2.InstallAppRequest, caller: str) -> tuple[str, str]:
        """Returns (consumer_id, offer_ref) for the order or raises."""
        ...

    async def notice(self, offer_ref: str, endpoint: OverlayEndpoint) -> bytes:
        """Signed deployment notice handed back with READY (b"" if none)."""
        ...


class TlsGate:
    """Direct backend: the caller's certificate is the consumer's identity and
    the offer id names the offer it accepts."""

    direct_offers = True

    async def admit(self, request: peer_pb2.InstallAppRequest, caller: str) -> tuple[str, str]:
        return caller, request.offer_id

    async def notice(self, offer_ref: str, endpoint: OverlayEndpoint) -> bytes:
        return b""


class PeerServicer(peer_pb2_grpc.FederationPeerServicer):
    """The provider's Mff gRPC face (FederationPeer service). Transport
    specifics (who the consumer is, deployment notices) come from its gate."""

    MAX_INSTANCES = 10_000

    def __init__(self, provider: ProviderHandler, gate: OrderGate | None = None) -> None:
        # Set once the server knows its port.
        self.system_info = common_pb2.SystemInfo()
        self.gate: OrderGate = gate or TlsGate()
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
        if inst is None or inst.caller != caller:
            raise NotFound(f"app instance {app_instance_id!r} not found")
        return inst

    @map_errors
    async def GetFederationDetails(self, request, context):
        return self.system_info

    @map_errors
    async def RequestOffer(self, request, context):
        if not self.gate.direct_offers:
            raise FailedPrecondition("this federator takes offers on the chain, not over Mff")
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
        if not request.offer_id or len(request.offer_id) > 128:
            raise InvalidArgument("offer_id is required (at most 128 characters)")
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
        consumer_id, offer_ref = await self.gate.admit(request, caller)
        # The app priced in the offer is authoritative: the provider deploys
        # what it quoted for. accept() refuses bad offers here, synchronously.
        app = await self._provider.accept(offer_ref, consumer_id, request.federation_id)
        order = DeploymentOrder(request.federation_id, consumer_id, app, endpoint, candidates)
        inst = _Instance(
            f"inst-{secrets.token_hex(8)}",
            request.federation_id,
            consumer_id,
            caller,
            offer_ref=offer_ref,
        )
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
        try:
            inst.notice = await self.gate.notice(inst.offer_ref, result.provider_endpoint)
        except Exception as exc:  # deployed, but the consumer cannot verify it
            inst.error = common_pb2.ProblemDetails(
                title="INTERNAL", status=500, detail=f"deployment notice failed: {exc}"
            )
            inst.set(common_pb2.INSTANCE_STATE_FAILED)
            return
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
            await self._provider.release(inst.federation_id, inst.consumer_id)
        except MecfedError:
            raise
        except Exception as exc:
            raise Unavailable(f"release failed: {exc}") from exc
        inst.set(common_pb2.INSTANCE_STATE_TERMINATED)
        self._by_federation.pop((caller, inst.federation_id), None)
        return inst.to_proto()
