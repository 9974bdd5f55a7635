"""The MEF's view of its own MEO: domain calls over the Mfm orchestrator API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from mecfed.errors import FailedPrecondition
from mecfed.model import (
    DeploymentOrder,
    OverlayEndpoint,
    OverlayReservation,
    ServiceStatus,
    TrafficCheck,
    TrafficReport,
)
from mecfed.rpc.status import error_from_rpc
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.v1 import orchestrator_pb2_grpc as pb_grpc
from mecfed.wire import orchestrator as wire
from mecfed.wire.common import endpoint_to_proto, traffic_from_proto

T = TypeVar("T")

# How long a call waits for the channel to (re)connect before it is sent: the
# MEO restarts (upgrade, crash) while its MEF keeps running, and a call made in
# the reconnect backoff would fail at once with "Connection refused" although
# the MEO is back a moment later. Bounded, so an MEO that is really down still
# fails the call quickly (wait_for_ready would hold it for the whole timeout).
CONNECT_GRACE_S = 5.0


class NotSupported(FailedPrecondition):
    """The local MEO does not offer this call (an older release): what needs
    it (reconcile, runtime liveness) is skipped rather than failed."""


def _unsupported(exc: grpc.RpcError, what: str) -> Exception:
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return NotSupported(f"local MEO {what} is not implemented (older MEO)")
    return error_from_rpc(exc, f"local MEO {what}")


class Orchestrator(Protocol):
    """What the workflow needs from the local MEO."""

    async def require_app(self, name: str) -> None: ...

    async def reserve_overlay(self, federation_id: str, candidates: int) -> OverlayReservation: ...

    async def deploy_federated(self, order: DeploymentOrder) -> OverlayEndpoint: ...

    async def connect_overlay(
        self, federation_id: str, service_name: str, provider_endpoint: OverlayEndpoint
    ) -> OverlayEndpoint: ...

    async def verify_traffic(self, federation_id: str, check: TrafficCheck) -> TrafficReport: ...

    async def release(self, federation_id: str, consumer_id: str = "") -> None:
        """Idempotent. ``consumer_id`` names the consumer of a provider-side
        federation ("" = our own, consumer side)."""
        ...

    async def list_services(self) -> list[ServiceStatus]:
        """Every federation the MEO holds resources for (reconcile)."""
        ...

    def watch_traffic(
        self, federation_id: str, check: TrafficCheck, period_ms: int
    ) -> AsyncIterator[TrafficReport]:
        """Runtime liveness: one report per ``period_ms`` until released."""
        ...


class GrpcOrchestrator:
    """:class:`Orchestrator` over a (mutual TLS) channel to the MEO's server.
    The MEO's answers are validated like any request (mecfed.wire)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout: float = 120.0,
        connect_grace: float = CONNECT_GRACE_S,
    ) -> None:
        self._channel = channel
        self._stub = pb_grpc.MecOrchestratorStub(channel)
        self._timeout = timeout
        self._connect_grace = connect_grace

    async def _connected(self) -> None:
        """Give a reconnecting channel a moment; never raises (the call that
        follows reports an MEO that stayed away)."""
        state = self._channel.get_state(try_to_connect=True)
        if state == grpc.ChannelConnectivity.READY:
            return
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self._connect_grace)
        except TimeoutError:
            pass

    async def _call(self, what: str, method: Callable[..., Awaitable[T]], request: Any) -> T:
        await self._connected()
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

    async def release(self, federation_id: str, consumer_id: str = "") -> None:
        await self._call(
            "ReleaseService",
            self._stub.ReleaseService,
            pb.ReleaseServiceRequest(federation_id=federation_id, consumer_id=consumer_id),
        )

    async def list_services(self) -> list[ServiceStatus]:
        await self._connected()
        try:
            resp = await self._stub.ListServices(pb.ListServicesRequest(), timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _unsupported(exc, "ListServices") from None
        return [wire.status_from_proto(s) for s in resp.services]

    async def watch_traffic(
        self, federation_id: str, check: TrafficCheck, period_ms: int
    ) -> AsyncIterator[TrafficReport]:
        request = pb.WatchTrafficRequest(
            federation_id=federation_id,
            period_ms=period_ms,
            count=check.count,
            interval_ms=check.interval_ms,
            timeout_ms=check.timeout_ms,
            echo_port=check.echo_port,
        )
        await self._connected()
        # No overall deadline: the stream lasts as long as the federation.
        stream = self._stub.WatchTraffic(request)
        try:
            async for report in stream:
                yield traffic_from_proto(report)
        except grpc.RpcError as exc:
            raise _unsupported(exc, "WatchTraffic") from None
        finally:
            stream.cancel()


__all__ = ["GrpcOrchestrator", "NotSupported", "Orchestrator"]
