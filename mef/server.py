"""Assembles one MEF: registry, workflows, the Mff transport chosen by
configuration, and one gRPC server carrying Mfm (for the local MEO) and Mff
(for peer federators), both behind mutual TLS."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from opentelemetry.sdk.trace import TracerProvider

from mecfed import security, tracing
from mecfed.config import SystemConfig
from mecfed.grpcutil import add_health_and_reflection, mark_serving
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc, peer_pb2, peer_pb2_grpc
from mef.meo_client import GrpcOrchestrator
from mef.peers import PeerBook
from mef.pricing import OfferPolicy
from mef.registry import SystemRecord, SystemRegistry
from mef.servicer import FederatorServicer
from mef.transport.base import MffTransport
from mef.transport.direct import DirectTransport
from mef.transport.peer_service import PeerServicer
from mef.workflow import ConsumerSettings, ConsumerWorkflow, ProviderWorkflow

log = logging.getLogger(__name__)

FEDERATOR = federator_pb2.DESCRIPTOR.services_by_name["MecFederator"].full_name
PEER = peer_pb2.DESCRIPTOR.services_by_name["FederationPeer"].full_name


def access_policy(peers: PeerBook, open_mff: bool = False) -> Callable[[str, str], bool]:
    """Mfm only for this system's own identity (its MEO and operator). Mff:
    on the direct backend only pre-registered peers; on the chain backend any
    authenticated caller, because every order must carry the consumer's
    chain signature, which the chain gate checks against the contract."""

    def allowed(method: str, peer_id: str) -> bool:
        if method.startswith(f"/{FEDERATOR}/"):
            return peer_id == peers.own_id
        if method.startswith(f"/{PEER}/"):
            return open_mff or peer_id in peers
        return False

    return allowed


def system_info(config: SystemConfig, port: int | None = None) -> common_pb2.SystemInfo:
    address = _address(config.mef_listen)
    if port is not None:
        address.port = port
    return common_pb2.SystemInfo(
        system_id=config.system_id,
        system_name=config.system_name,
        system_provider=config.system_provider,
        endpoint=common_pb2.EndPointInfo(
            addresses=common_pb2.EndPointInfo.Addresses(addresses=[address])
        ),
    )


def _address(host_port: str) -> common_pb2.Address:
    host, _, port = host_port.rpartition(":")
    return common_pb2.Address(host=host.strip("[]"), port=int(port))


@dataclass
class MefServer:
    config: SystemConfig
    server: grpc.aio.Server
    port: int
    consumer: ConsumerWorkflow
    provider: ProviderWorkflow
    transport: MffTransport
    peers: PeerBook
    peer_servicer: PeerServicer
    meo_channel: grpc.aio.Channel
    traces: TracerProvider | None = None

    async def stop(self, grace: float = 1.0) -> None:
        await self.consumer.close()
        await self.peer_servicer.close()
        await self.server.stop(grace)
        await self.transport.close()
        await self.meo_channel.close()
        await tracing.shutdown_async(self.traces)


async def start(
    config: SystemConfig,
    *,
    transport: MffTransport | None = None,
    settings: ConsumerSettings | None = None,
) -> MefServer:
    """Starts a MEF; ``config.mef_listen`` may use port 0 (the chosen port is
    returned in ``MefServer.port``)."""
    traces = tracing.setup_for_system("mef", config)
    tracer = tracing.tracer(traces, "mecfed.mef")
    outgoing = tracing.client_interceptors(traces)
    peers = PeerBook(config.system_id, config.peers)
    meo_channel = security.secure_channel(
        config.meo_target, config.tls, config.system_id, interceptors=outgoing
    )
    orchestrator = GrpcOrchestrator(meo_channel)
    if transport is None:
        if config.backend == "chain":
            transport = await chain_transport(config, traces)
        elif config.backend == "direct":
            transport = DirectTransport(config.system_id, config.tls, peers, outgoing)
        else:
            raise ValueError(f"backend {config.backend!r} is unknown (direct, chain)")
    gate = getattr(transport, "gate", None)
    policy = (
        OfferPolicy.from_json(config.offer_policy)
        if config.offer_policy
        else (OfferPolicy.default())
    )
    provider = ProviderWorkflow(config.system_id, orchestrator, policy, tracer=tracer)
    consumer = ConsumerWorkflow(
        config.system_id, transport, orchestrator, settings=settings, tracer=tracer
    )
    registry = SystemRegistry()

    server = grpc.aio.server(
        interceptors=[
            # Tracing first: a refused call is still seen in the trace.
            *tracing.server_interceptors(traces),
            security.PeerAuthorizer(access_policy(peers, open_mff=gate is not None)),
        ]
    )
    federator_pb2_grpc.add_MecFederatorServicer_to_server(
        FederatorServicer(registry, consumer, provider), server
    )
    peer_servicer = PeerServicer(provider, gate)
    peer_pb2_grpc.add_FederationPeerServicer_to_server(peer_servicer, server)
    health = add_health_and_reflection(server, [FEDERATOR, PEER])
    port = server.add_secure_port(config.mef_listen, security.server_credentials(config.tls))
    me = system_info(config, port)
    peer_servicer.system_info = me
    registry.preload([SystemRecord.from_proto(me)])
    await server.start()
    host = config.mef_listen.rpartition(":")[0]
    await transport.start(provider, f"{host}:{port}")
    await mark_serving(health, [FEDERATOR, PEER])
    log.info("MEF %s serving on port %d (%s backend)", config.system_id, port, transport.name)
    return MefServer(
        config,
        server,
        port,
        consumer,
        provider,
        transport,
        peers,
        peer_servicer,
        meo_channel,
        traces,
    )


async def chain_transport(
    config: SystemConfig, traces: TracerProvider | None = None
) -> MffTransport:
    """The chain backend from ``config.chain``: key from its keystore file,
    JSON-RPC over WebSocket to the node, the Federation contract."""
    from mecfed.chain.client import ChainClient
    from mecfed.chain.federation import status_for
    from mecfed.chain.keystore import load_key
    from mef.transport.chain import ChainTransport

    chain = config.chain
    missing = {"ws_url", "contract", "keystore", "password_file"} - set(chain)
    if missing:
        raise ValueError(f"chain backend needs config.chain keys {sorted(missing)}")
    account = load_key(chain["keystore"], chain["password_file"])
    client = await ChainClient.connect(chain["ws_url"], account, status_for=status_for)
    period = chain.get("block_period")
    return ChainTransport(
        config.system_id,
        client,
        chain["contract"],
        account,
        config.tls,
        block_period=max(1, math.ceil(period)) if period else None,
        traces=traces,
    )


async def serve_until(config: SystemConfig, stop: asyncio.Event) -> None:
    mef = await start(config)
    try:
        await stop.wait()
    finally:
        log.info("MEF %s stopping", config.system_id)
        await mef.stop()
        log.info("MEF %s stopped", config.system_id)


def run(config_path: str) -> None:
    from mecfed.procutil import run_until_signal

    config = SystemConfig.load(config_path)
    run_until_signal(lambda stop: serve_until(config, stop), f"mef-{config.system_id}")


__all__ = ["MefServer", "access_policy", "run", "start"]
