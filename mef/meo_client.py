"""The MEF's view of its own MEO: domain calls over the Mfm orchestrator API."""

from __future__ import annotations

from typing import Protocol

import grpc

from mecfed.errors import from_rpc_error
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.v1 import orchestrator_pb2_grpc as pb_grpc
from mef.domain import AppSpec, OverlayEndpoint, TrafficReport, TunnelCandidate


class Orchestrator(Protocol):
    """What the workflow needs from the local MEO."""

    async def require_app(self, name: str) -> None: ...

    async def reserve_overlay(
        self, federation_id: str, candidates: int
    ) -> tuple[OverlayEndpoint, tuple[TunnelCandidate, ...]]: ...

    async def deploy_federated(
        self,
        federation_id: str,
        consumer_id: str,
        app: AppSpec,
        consumer_endpoint: OverlayEndpoint,
        candidates: tuple[TunnelCandidate, ...],
    ) -> OverlayEndpoint: ...

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint: ...

    async def verify_traffic(
        self, federation_id: str, count: int, interval_ms: int, timeout_ms: int, echo_port: int
    ) -> TrafficReport: ...

    async def release(self, federation_id: str) -> None: ...


class GrpcOrchestrator:
    """Orchestrator over a (mutual TLS) channel to the MEO's gRPC server."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 120.0) -> None:
        self._stub = pb_grpc.MecOrchestratorStub(channel)
        self._timeout = timeout

    async def _call(self, what: str, method, request):  # type: ignore[no-untyped-def]
        try:
            return await method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"local MEO {what}") from None

    async def require_app(self, name: str) -> None:
        await self._call("GetApp", self._stub.GetApp, pb.GetAppRequest(name=name))

    async def reserve_overlay(
        self, federation_id: str, candidates: int
    ) -> tuple[OverlayEndpoint, tuple[TunnelCandidate, ...]]:
        resp = await self._call(
            "ReserveOverlay",
            self._stub.ReserveOverlay,
            pb.ReserveOverlayRequest(federation_id=federation_id, candidates=candidates),
        )
        return (
            OverlayEndpoint.from_proto(resp.consumer_endpoint),
            tuple(TunnelCandidate.from_proto(c) for c in resp.candidates),
        )

    async def deploy_federated(
        self,
        federation_id: str,
        consumer_id: str,
        app: AppSpec,
        consumer_endpoint: OverlayEndpoint,
        candidates: tuple[TunnelCandidate, ...],
    ) -> OverlayEndpoint:
        resp = await self._call(
            "DeployFederatedService",
            self._stub.DeployFederatedService,
            pb.DeployFederatedServiceRequest(
                federation_id=federation_id,
                consumer_id=consumer_id,
                app=app.to_proto(),
                consumer_endpoint=consumer_endpoint.to_proto(),
                candidates=[c.to_proto() for c in candidates],
            ),
        )
        return OverlayEndpoint.from_proto(resp.provider_endpoint)

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint:
        resp = await self._call(
            "ConnectOverlay",
            self._stub.ConnectOverlay,
            pb.ConnectOverlayRequest(
                federation_id=federation_id,
                service_name=service_name,
                provider_endpoint=provider_endpoint.to_proto(),
            ),
        )
        return OverlayEndpoint.from_proto(resp.consumer_endpoint)

    async def verify_traffic(
        self, federation_id: str, count: int, interval_ms: int, timeout_ms: int, echo_port: int
    ) -> TrafficReport:
        resp = await self._call(
            "VerifyTraffic",
            self._stub.VerifyTraffic,
            pb.VerifyTrafficRequest(
                federation_id=federation_id,
                count=count,
                interval_ms=interval_ms,
                timeout_ms=timeout_ms,
                echo_port=echo_port,
            ),
        )
        return TrafficReport.from_proto(resp)

    async def release(self, federation_id: str) -> None:
        await self._call(
            "ReleaseService",
            self._stub.ReleaseService,
            pb.ReleaseServiceRequest(federation_id=federation_id),
        )
