"""The MEO's gRPC server (mecfed.v1.MecOrchestrator).

Each method converts the request (:mod:`mecfed.wire.orchestrator`, which
validates it), makes one orchestrator call and converts the answer back;
decisions live in :mod:`meo.orchestrator`, status codes in
:mod:`mecfed.rpc.status`. Only this MEC system (its MEF and its operator,
identified by the system id in their client certificate) may call it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from mecfed import tracing
from mecfed.config import SystemConfig
from mecfed.model.checks import DEFAULT_ECHO_PORT
from mecfed.rpc import AccessPolicy, Server, start_server
from mecfed.v1 import common_pb2
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.wire import orchestrator as wire
from mecfed.wire.common import endpoint_to_proto, traffic_to_proto
from meo.orchestrator import Orchestrator, state_path
from meo.state import DbClaims, installation_id, open_database
from meo.vim import make_vim

log = logging.getLogger(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["MecOrchestrator"]
SERVICE_NAME = SERVICE.full_name


class MecOrchestratorService:
    """mecfed.v1.MecOrchestrator over an :class:`Orchestrator`."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch

    async def CreateApp(self, request: pb.CreateAppRequest, context: Any) -> pb.App:
        name, spec = wire.create_app_from_proto(request)
        return wire.app_record_to_proto(await self.orch.create_app(name, spec))

    async def GetApp(self, request: pb.GetAppRequest, context: Any) -> pb.App:
        return wire.app_record_to_proto(self.orch.get_app(wire.app_name_from(request.name)))

    async def ListApps(self, request: pb.ListAppsRequest, context: Any) -> pb.ListAppsResponse:
        return pb.ListAppsResponse(
            apps=[wire.app_record_to_proto(a) for a in self.orch.list_apps()]
        )

    async def ScaleApp(self, request: pb.ScaleAppRequest, context: Any) -> pb.App:
        name = wire.app_name_from(request.name)
        return wire.app_record_to_proto(await self.orch.scale_app(name, request.replicas))

    async def DeleteApp(self, request: pb.DeleteAppRequest, context: Any) -> pb.DeleteAppResponse:
        await self.orch.delete_app(wire.app_name_from(request.name))
        return pb.DeleteAppResponse()

    async def DeployFederatedService(
        self, request: pb.DeployFederatedServiceRequest, context: Any
    ) -> pb.DeployFederatedServiceResponse:
        order = wire.deploy_from_proto(request)
        endpoint, instances = await self.orch.deploy_federated_service(order)
        return wire.deployed_to_proto(endpoint, instances)

    async def ReserveOverlay(
        self, request: pb.ReserveOverlayRequest, context: Any
    ) -> pb.ReserveOverlayResponse:
        federation_id, count = wire.reserve_from_proto(request)
        return wire.reservation_to_proto(await self.orch.reserve_overlay(federation_id, count))

    async def ConnectOverlay(
        self, request: pb.ConnectOverlayRequest, context: Any
    ) -> pb.ConnectOverlayResponse:
        federation_id, service_name, provider = wire.connect_from_proto(request)
        local = await self.orch.connect_overlay(federation_id, service_name, provider)
        return pb.ConnectOverlayResponse(consumer_endpoint=endpoint_to_proto(local))

    async def VerifyTraffic(
        self, request: pb.VerifyTrafficRequest, context: Any
    ) -> common_pb2.TrafficReport:
        federation_id, check = wire.traffic_check_from_proto(request)
        return traffic_to_proto(await self.orch.verify_traffic(federation_id, check))

    async def WatchTraffic(
        self, request: pb.WatchTrafficRequest, context: Any
    ) -> AsyncIterator[common_pb2.TrafficReport]:
        federation_id, check, period_ms = wire.watch_traffic_from_proto(request)
        async for report in self.orch.watch_traffic(federation_id, check, period_ms):
            yield traffic_to_proto(report)

    async def ReleaseService(
        self, request: pb.ReleaseServiceRequest, context: Any
    ) -> pb.ReleaseServiceResponse:
        federation_id, consumer_id = wire.service_key_from(request)
        await self.orch.release_service(federation_id, consumer_id)
        return pb.ReleaseServiceResponse()

    async def GetServiceStatus(
        self, request: pb.GetServiceStatusRequest, context: Any
    ) -> pb.ServiceStatus:
        federation_id, consumer_id = wire.service_key_from(request)
        status = await self.orch.service_status(federation_id, consumer_id)
        return wire.status_to_proto(status)

    async def ListServices(
        self, request: pb.ListServicesRequest, context: Any
    ) -> pb.ListServicesResponse:
        return wire.services_to_proto(await self.orch.list_services())


def own_system_only(system_id: str) -> AccessPolicy:
    """Only callers presenting this MEC system's own certificate (its MEF,
    its operator) may drive its MEO."""

    def policy(method: str, peer_id: str) -> bool:
        return bool(peer_id) and peer_id == system_id

    return policy


def allow_any_caller(method: str, peer_id: str) -> bool:
    """For insecure test servers, whose callers carry no identity."""
    return True


def build_orchestrator(config: SystemConfig, tracer: Tracer | None = None) -> Orchestrator:
    """The orchestrator with the VIM the config names (one local host),
    scoped to the installation its state directory holds."""
    state = Path(config.state_dir)
    db = open_database(state_path(config))
    vim = make_vim(
        config.vim,
        config.system_id,
        installation=installation_id(db),
        bin_dir=str(state / "bin"),
        meta_dir=str(state / "netns-vim"),
    )
    if config.warm_pool and config.vim == "docker":
        from meo.vim.pool import PooledVim, PoolTemplate

        if not config.warm_image:
            raise ValueError("warm_pool needs warm_image: the image the spares run")
        # The same env the orchestrator gives a default-port echo app.
        template = PoolTemplate(config.warm_image, env=(("ECHO_PORT", str(DEFAULT_ECHO_PORT)),))
        claims = DbClaims(db, legacy_file=state / "warm-pool.json")
        vim = PooledVim(vim, template, config.warm_pool, claims)
    orch = Orchestrator(config, {vim.host: vim}, db=db, tracer=tracer)
    orch.load()
    return orch


@dataclass
class MeoServer:
    """A serving MEO: its gRPC server and the orchestrator behind it."""

    rpc: Server
    orchestrator: Orchestrator

    @property
    def port(self) -> int:
        """The bound TCP port (0 for unix sockets)."""
        return self.rpc.port

    async def stop(self, grace: float | None = 1.0) -> None:
        """Graceful: health turns NOT_SERVING, calls in flight get ``grace`` s."""
        await self.rpc.stop(grace)


async def serve(
    config: SystemConfig,
    server_credentials: grpc.ServerCredentials | None,
    *,
    orchestrator: Orchestrator | None = None,
    listen: str | None = None,
    access: AccessPolicy | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    traces: TracerProvider | None = None,
) -> MeoServer:
    """Starts the MEO gRPC server on ``listen`` (default ``config.meo_listen``).

    ``access`` defaults to :func:`own_system_only`. ``server_credentials=None``
    means an insecure port, for tests only: its callers have no identity, so
    such a server must be given an explicit policy (e.g. :func:`allow_any_caller`)
    to admit anyone. Without ``orchestrator`` one is built from the config,
    reconciled with what still runs and its VIMs prepared before serving
    (health SERVING means ready)."""
    if orchestrator is None:
        orchestrator = build_orchestrator(config, tracing.tracer(traces, "mecfed.meo"))
        await orchestrator.reconcile()
        await orchestrator.warm_up()
    server = await start_server(
        listen or config.meo_listen,
        server_credentials,
        [(SERVICE, MecOrchestratorService(orchestrator))],
        access=access or own_system_only(config.system_id),
        interceptors=[*tracing.server_interceptors(traces), *interceptors],
    )
    return MeoServer(server, orchestrator)


def run(config_path: str, *, insecure: bool = False, cleanup_on_exit: bool = False) -> None:
    """Blocking entry point (``mecfed meo serve`` / ``python -m meo``): serves
    with mTLS from ``config.tls`` until SIGTERM/SIGINT, then stops cleanly.

    By default apps and federations outlive the process (state is reloaded
    on the next start); ``cleanup_on_exit`` removes them all on shutdown.
    ``insecure`` serves without TLS and admits any caller (tests only)."""
    from mecfed.procutil import run_until_signal

    config = SystemConfig.load(config_path)

    async def main(stop: asyncio.Event) -> None:
        creds = None
        if not insecure:
            from mecfed.rpc import server_credentials

            creds = server_credentials(config.tls)
        traces = tracing.setup_for_system("meo", config)
        server = await serve(
            config, creds, access=allow_any_caller if insecure else None, traces=traces
        )
        log.info(
            "MEO of %s serving on %s (port %s)", config.system_id, config.meo_listen, server.port
        )
        try:
            await stop.wait()
        finally:
            await server.stop(grace=2)
            await server.orchestrator.close()
            if cleanup_on_exit:
                await server.orchestrator.cleanup_all()
            await tracing.shutdown_async(traces)

    run_until_signal(main, f"meo[{config.system_id}]")


__all__ = [
    "SERVICE_NAME",
    "MecOrchestratorService",
    "MeoServer",
    "allow_any_caller",
    "build_orchestrator",
    "own_system_only",
    "run",
    "serve",
]
