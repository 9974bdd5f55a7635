"""gRPC servicer for mecfed.v1.MecOrchestrator: maps messages to the domain
and back; all decisions live in meo.orchestrator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from mecfed import tracing
from mecfed.config import SystemConfig
from mecfed.grpcutil import add_health_and_reflection, map_errors, mark_serving
from mecfed.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from mecfed.validation import require_id, require_name
from meo.model import AppSpec, Endpoint, candidates_from_proto
from meo.orchestrator import Orchestrator
from meo.vim import make_vim

log = logging.getLogger(__name__)
SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["MecOrchestrator"].full_name
pb = orchestrator_pb2


class MecOrchestratorServicer(orchestrator_pb2_grpc.MecOrchestratorServicer):
    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch

    @map_errors
    async def CreateApp(self, request, context):
        spec = AppSpec.from_proto(request.spec, "spec")
        return (await self.orch.create_app(request.name, spec)).to_proto()

    @map_errors
    async def GetApp(self, request, context):
        return self.orch.get_app(request.name).to_proto()

    @map_errors
    async def ListApps(self, request, context):
        return pb.ListAppsResponse(apps=[a.to_proto() for a in self.orch.list_apps()])

    @map_errors
    async def ScaleApp(self, request, context):
        return (await self.orch.scale_app(request.name, request.replicas)).to_proto()

    @map_errors
    async def DeleteApp(self, request, context):
        await self.orch.delete_app(request.name)
        return pb.DeleteAppResponse()

    @map_errors
    async def DeployFederatedService(self, request, context):
        require_id(request.federation_id, "federation_id")
        require_id(request.consumer_id, "consumer_id")
        spec = AppSpec.from_proto(request.app, "app")
        consumer = Endpoint.from_proto(
            request.consumer_endpoint, "consumer_endpoint", need_tunnel=False
        )
        candidates = candidates_from_proto(list(request.candidates))
        local, instances = await self.orch.deploy_federated_service(
            request.federation_id, request.consumer_id, spec, consumer, candidates
        )
        return pb.DeployFederatedServiceResponse(
            provider_endpoint=local.to_proto(), instances=[i.to_proto() for i in instances]
        )

    @map_errors
    async def ReserveOverlay(self, request, context):
        res = await self.orch.reserve_overlay(request.federation_id, request.candidates)
        endpoint = Endpoint(self.orch.config.underlay_ip, subnet=res.subnet or "")
        return pb.ReserveOverlayResponse(
            consumer_endpoint=endpoint.to_proto(),
            candidates=[{"vni": c.vni, "udp_port": c.port} for c in res.candidates],
        )

    @map_errors
    async def ConnectOverlay(self, request, context):
        require_id(request.federation_id, "federation_id")
        require_name(request.service_name, "service_name")
        provider = Endpoint.from_proto(
            request.provider_endpoint, "provider_endpoint", need_tunnel=True
        )
        local = await self.orch.connect_overlay(
            request.federation_id, request.service_name, provider
        )
        return pb.ConnectOverlayResponse(consumer_endpoint=local.to_proto())

    @map_errors
    async def VerifyTraffic(self, request, context):
        report = await self.orch.verify_traffic(
            request.federation_id,
            request.count,
            request.interval_ms,
            request.timeout_ms,
            request.echo_port,
        )
        return report.to_proto()

    @map_errors
    async def ReleaseService(self, request, context):
        await self.orch.release_service(request.federation_id)
        return pb.ReleaseServiceResponse()

    @map_errors
    async def GetServiceStatus(self, request, context):
        fed, instances, links = await self.orch.service_status(request.federation_id)
        return pb.ServiceStatus(
            federation_id=fed.federation_id,
            role=fed.role,
            instances=[i.to_proto() for i in instances],
            local_endpoint=fed.local.to_proto() if fed.local else None,
            remote_endpoint=fed.remote.to_proto() if fed.remote else None,
            links=links,
        )


def build_orchestrator(config: SystemConfig, tracer: Tracer | None = None) -> Orchestrator:
    """The orchestrator with the VIM the config names (one local host)."""
    state = Path(config.state_dir)
    vim = make_vim(
        config.vim,
        config.system_id,
        bin_dir=str(state / "bin"),
        meta_dir=str(state / "netns-vim"),
    )
    if config.warm_pool and config.vim == "docker":
        from meo.model import DEFAULT_ECHO_PORT
        from meo.vim.pool import PooledVim, PoolTemplate

        if not config.warm_image:
            raise ValueError("warm_pool needs warm_image: the image the spares run")
        # The same env the orchestrator gives a default-port echo app.
        template = PoolTemplate(config.warm_image, env=(("ECHO_PORT", str(DEFAULT_ECHO_PORT)),))
        vim = PooledVim(vim, template, config.warm_pool, state / "warm-pool.json")
    orch = Orchestrator(config, {vim.host: vim}, tracer=tracer)
    orch.load()
    return orch


async def serve(
    config: SystemConfig,
    server_credentials: grpc.ServerCredentials | None,
    *,
    orchestrator: Orchestrator | None = None,
    listen: str | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    traces: TracerProvider | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Starts the MEO gRPC server on ``listen`` (default ``config.meo_listen``).

    ``server_credentials=None`` means an insecure port and is meant for
    tests only; deployments pass mTLS credentials. Returns the started server
    and the bound port (0 for unix sockets); stop it with ``server.stop()``."""
    if orchestrator is None:
        orchestrator = build_orchestrator(config, tracing.tracer(traces, "mecfed.meo"))
        await orchestrator.reconcile()
        await orchestrator.warm_up()  # before serving: health means ready
    orch = orchestrator
    if server_credentials is not None and not interceptors:
        # Only this MEC system (its MEF and its operator) may drive its MEO.
        from mecfed.security import PeerAuthorizer

        own = config.system_id
        interceptors = (PeerAuthorizer(lambda _method, peer: peer == own),)
    server = grpc.aio.server(interceptors=[*tracing.server_interceptors(traces), *interceptors])
    orchestrator_pb2_grpc.add_MecOrchestratorServicer_to_server(
        MecOrchestratorServicer(orch), server
    )
    health = add_health_and_reflection(server, [SERVICE_NAME])
    address = listen or config.meo_listen
    if server_credentials is None:
        log.warning("MEO listening WITHOUT TLS on %s (test mode)", address)
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, server_credentials)
    if port == 0 and not address.startswith("unix:"):
        raise RuntimeError(f"could not bind {address}")
    await server.start()
    await mark_serving(health, [SERVICE_NAME])
    server.orchestrator = orch  # type: ignore[attr-defined]  # handy for tests and shutdown
    return server, port


def run(config_path: str, *, insecure: bool = False, cleanup_on_exit: bool = False) -> None:
    """Blocking entry point (``mecfed meo serve`` / ``python -m meo``): serves
    with mTLS from ``config.tls`` until SIGTERM/SIGINT, then stops cleanly.

    By default apps and federations outlive the process (state is reloaded
    on the next start); ``cleanup_on_exit`` removes them all on shutdown."""
    from mecfed.procutil import run_until_signal

    config = SystemConfig.load(config_path)

    async def main(stop: asyncio.Event) -> None:
        creds = None
        if not insecure:
            from mecfed.security import server_credentials

            creds = server_credentials(config.tls)
        traces = tracing.setup_for_system("meo", config)
        server, port = await serve(config, creds, traces=traces)
        log.info("MEO of %s serving on %s (port %s)", config.system_id, config.meo_listen, port)
        try:
            await stop.wait()
        finally:
            await server.stop(grace=2)
            await server.orchestrator.close()
            if cleanup_on_exit:
                await server.orchestrator.cleanup_all()
            await tracing.shutdown_async(traces)

    run_until_signal(main, f"meo[{config.system_id}]")
