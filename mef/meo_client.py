"""The MEF's view of its own MEO: domain calls over the Mfm orchestrator API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from mecfed.model import (
    DeploymentOrder,
    OverlayEndpoint,
    OverlayReservation,
    TrafficCheck,
    TrafficReport,
)
from mecfed.rpc.status import error_from_rpc
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.v1 import orchestrator_pb2_grpc as pb_grpc
from mecfed.wire import orchestrator as wire
from mecfed.wire.common import endpoint_to_proto, traffic_from_proto

T = TypeVar("T")


class Orchestrator(Protocol):
    """What the workflow needs from the local MEO."""

    async def require_app(self, name: str) -> None: ...

    async def reserve_overlay(self, federation_id: str, candidates: int) -> OverlayReservation: ...

    async def deploy_federated(self, order: DeploymentOrder) -> OverlayEndpoint: ...

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint: ...

    async def verify_traffic(self, federation_id: str, check: TrafficCheck) -> TrafficReport: ...

    async def release(self, federation_id: str) -> None: ...


class GrpcOrchestrator:
    """:class:`Orchestrator` over a (mutual TLS) channel to the MEO's server.
    The MEO's answers are validated like any request (mecfed.wire)."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 120.0) -> None:
        self._stub = pb_grpc.MecOrchestratorStub(channel)
        self._timeout = timeout

    async def _call(self, what: str, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"local MEO {what}") from None

    async def require_app(self, name: str) -> None:
        await self._call("GetApp", self._stub.GetApp, pb.GetAppRequest(name=name))

    async def reserve_overlay(self, federation_id: str, candidates: int) -> OverlayReservation:
        resp = await self._call(
            "ReserveOverlay",
            self._stub.ReserveOverlay,
            pb.ReserveOverlayRequest(federation_id=federation_id, candidates=candidates),
        )
        return wire.reservation_from_proto(resp)

    async def deploy_federated(self, order: DeploymentOrder) -> OverlayEndpoint:
        resp = await self._call(
            "DeployFederatedService",
            self._stub.DeployFederatedService,
            wire.deploy_to_proto(order),
        )
        return wire.deployed_from_proto(resp)

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint:
        resp = await self._call(
            "ConnectOverlay",
            self._stub.ConnectOverlay,
            pb.ConnectOverlayRequest(
                federation_id=federation_id,
                service_name=service_name,
                provider_endpoint=endpoint_to_proto(provider_endpoint),
            ),
        )
        return wire.endpoint_from_proto(resp.consumer_endpoint, "consumer_endpoint")

    async def verify_traffic(self, federation_id: str, check: TrafficCheck) -> TrafficReport:
        resp = await self._call(
            "VerifyTraffic",
            self._stub.VerifyTraffic,
            wire.traffic_check_to_proto(federation_id, check),
        )
        return traffic_from_proto(resp)

    async def release(self, federation_id: str) -> None:
        await self._call(
            "ReleaseService",
            self._stub.ReleaseService,
            pb.ReleaseServiceRequest(federation_id=federation_id),
        )


__all__ = ["GrpcOrchestrator", "Orchestrator"]
