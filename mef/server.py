"""Assembles one MEF: registry, workflows, the provider's deployments, the
Mff transport chosen by configuration, and one gRPC server carrying Mfm (for
the local MEO) and Mff (for peer federators), both behind mutual TLS.

The MEF's durable state is one database file (``config.mef_db_path``,
:class:`mecfed.storage.Database`), opened here and handed to every part that
keeps state (``MefServer.db``; the consumer's records are component
``federations``). Health says SERVING only once the transport has started
and the consumer has recovered and reconciled with its MEO; afterwards it
follows ``transport.health()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace import TracerProvider

from mecfed import tracing
from mecfed.config import SystemConfig
from mecfed.model import OfferPolicy
from mecfed.rpc import AccessPolicy, Server, secure_channel, server_credentials, start_server
from mecfed.storage import Database
from mecfed.v1 import common_pb2
from mecfed.wire.common import system_from_proto
from mecfed.wire.federator import policy_from_json
from mef.deployments import Deployments
from mef.federations import FederationStore
from mef.meo_client import GrpcOrchestrator, NotSupported, Orchestrator
from mef.peers import PeerBook
from mef.registry import SystemRegistry
from mef.servicer import SERVICE as FEDERATOR
from mef.servicer import FederatorServicer
from mef.transport.base import CallerPolicy, MffTransport
from mef.transport.direct import DirectTransport
from mef.transport.peer_client import PeerClient
from mef.transport.peer_service import SERVICE as PEER
from mef.transport.peer_service import PeerServicer
from mef.workflow import ConsumerSettings, ConsumerWorkflow, ProviderWorkflow
from mef.workflow.upkeep import Backoff, retry_until_done

log = logging.getLogger(__name__)


def access_policy(peers: PeerBook, callers: CallerPolicy) -> AccessPolicy:
    """Mfm only for this system's own identity (its MEO and operator). Mff as
    the transport's gate says: only pre-registered peers (direct), or any
    caller with a certificate of the trusted CA (chain, where every order
    must also carry the consumer's chain signature)."""
    mfm, mff = f"/{FEDERATOR.full_name}/", f"/{PEER.full_name}/"

    def allowed(method: str, peer_id: str) -> bool:
        if method.startswith(mfm):
            return peer_id == peers.own_id
        if method.startswith(mff):
            if callers == CallerPolicy.ANY_AUTHENTICATED:
                return bool(peer_id)
            return peer_id in peers
        return False

    return allowed


def system_info(config: SystemConfig, port: int) -> common_pb2.SystemInfo:
    host = config.mef_listen.rpartition(":")[0].strip("[]")
    return common_pb2.SystemInfo(
        system_id=config.system_id,
        system_name=config.system_name,
        system_provider=config.system_provider,
        endpoint=common_pb2.EndPointInfo(
            addresses=common_pb2.EndPointInfo.Addresses(
                addresses=[common_pb2.Address(host=host, port=port)]
            )
        ),
    )


@dataclass
class MefServer:
    config: SystemConfig
    rpc: Server
    consumer: ConsumerWorkflow
    provider: ProviderWorkflow
    deployments: Deployments
    transport: MffTransport
    peers: PeerBook
    registry: SystemRegistry
    meo_channel: grpc.aio.Channel
    traces: TracerProvider | None = None
    db: Database | None = None
    _readiness: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return self.rpc.port

    def follow_transport_health(self, every: float = 1.0) -> None:
        """Readiness follows ``transport.health()`` from now on."""
        self._readiness = asyncio.create_task(
            follow_health(self.rpc, self.transport, every), name="mef readiness"
        )

    async def stop(self, grace: float = 1.0) -> None:
        """Graceful: health goes NOT_SERVING first, calls in flight get
        ``grace`` seconds, then the workflows and the transport stop."""
        if self._readiness is not None:
            self._readiness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readiness
        await self.rpc.health.enter_graceful_shutdown()
        await self.consumer.close()
        await self.deployments.close()
        await self.rpc.stop(grace)
        await self.transport.close()
        await self.meo_channel.close()
        if self.db is not None:
            self.db.close()
        await tracing.shutdown_async(self.traces)


async def follow_health(rpc: Server, transport: MffTransport, every: float) -> None:
    """NOT_SERVING while the transport says it cannot act, SERVING again
    once it can; each change is logged with the transport's reason."""
    serving = True
    while True:
        await asyncio.sleep(every)
        why = transport.health()
        if (why is None) == serving:
            continue
        serving = why is None
        if serving:
            log.warning("%s transport ready again", transport.name)
            await rpc.mark_serving()
        else:
            log.warning("%s transport not ready: %s", transport.name, why)
            for name in ["", *rpc.services]:
                await rpc.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


async def reconcile_provider(
    provider: ProviderWorkflow, deployments: Deployments, retry: Backoff
) -> None:
    """The provider side's records and the MEO agree before we serve
    (retried until the MEO answers; skipped, loudly, with an MEO that cannot
    list what it holds)."""

    async def once() -> None:
        try:
            done = await provider.reconcile(deployments)
        except NotSupported as exc:
            log.error("provider side not reconciled with the MEO: %s", exc.message)
            return
        log.info("provider side reconciled: %s", done)

    await retry_until_done("provider reconcile with the MEO", once, retry)


async def build_transport(
    config: SystemConfig,
    peers: PeerBook,
    client: PeerClient,
    traces: TracerProvider | None,
    db: Database | None = None,
) -> MffTransport:
    """The transport ``config.backend`` names. ``db`` is the MEF's database:
    a transport that keeps durable state (chain: cursors, nonces, escrows)
    takes its own component in it."""
    if config.backend == "direct":
        return DirectTransport(peers, client)  # keeps nothing across restarts
    if config.backend == "chain":
        from mef.transport.chain import connect_chain_transport

        return await connect_chain_transport(config, client, traces, database=db)
    raise ValueError(f"backend {config.backend!r} is unknown (direct, chain)")


async def start(
    config: SystemConfig,
    *,
    transport: MffTransport | None = None,
    orchestrator: Orchestrator | None = None,
    settings: ConsumerSettings | None = None,
    db: Database | None = None,
) -> MefServer:
    """Starts a MEF; ``config.mef_listen`` may use port 0 (the bound port is
    ``MefServer.port``). ``transport`` and ``orchestrator`` replace the ones
    the configuration names (tests); ``db`` the database file named by
    ``config.mef_db_path`` (it is then closed with the MEF all the same)."""
    if db is None:
        db = Database(config.mef_db_path)
    if settings is None:
        settings = ConsumerSettings(liveness_period_ms=config.liveness_period_ms)
    traces = tracing.setup_for_system("mef", config)
    tracer = tracing.tracer(traces, "mecfed.mef")
    outgoing = tracing.client_interceptors(traces)
    peers = PeerBook(config.system_id, config.peers)
    meo_channel = secure_channel(
        config.meo_target, config.tls, config.system_id, interceptors=outgoing
    )
    orchestrator = orchestrator or GrpcOrchestrator(meo_channel)
    if transport is None:
        transport = await build_transport(
            config, peers, PeerClient(config.tls, outgoing), traces, db
        )
    policy = policy_from_json(config.offer_policy) if config.offer_policy else OfferPolicy.default()
    provider = ProviderWorkflow(config.system_id, orchestrator, policy, tracer=tracer, db=db)
    consumer = ConsumerWorkflow(
        config.system_id,
        transport,
        orchestrator,
        store=FederationStore(db),
        settings=settings,
        tracer=tracer,
    )
    deployments = Deployments(provider, transport.gate, db=db)
    registry = SystemRegistry()
    peer_servicer = PeerServicer(
        provider, deployments, transport.gate, common_pb2.SystemInfo(), config.underlay_ip
    )
    rpc = await start_server(
        config.mef_listen,
        server_credentials(config.tls),
        [
            (FEDERATOR, FederatorServicer(registry, consumer, provider)),
            (PEER, peer_servicer),
        ],
        access=access_policy(peers, transport.gate.callers),
        # Tracing first: a refused call is still seen in the trace.
        interceptors=tracing.server_interceptors(traces),
        # Health says SERVING only once the transport has started (on the
        # chain: the MEF is a member and listens to the contract).
        ready=False,
    )
    me = system_info(config, rpc.port)
    peer_servicer.system_info = me
    registry.preload([system_from_proto(me)])
    host = config.mef_listen.rpartition(":")[0]
    try:
        await transport.start(provider, deployments, f"{host}:{rpc.port}")
        # Records left by a previous run are settled and the MEO's view
        # agrees with ours before anyone is told we serve.
        await reconcile_provider(provider, deployments, consumer.settings.retry)
        await consumer.recover()
        # The chain is the source of truth for money: what it holds for a
        # federation we no longer run is ended now, not left locked.
        await transport.reconcile({f.federation_id for f in consumer.store.list() if f.state.live})
        await rpc.mark_serving()
    except BaseException:
        await consumer.close()
        await rpc.stop(0)
        await transport.close()
        await meo_channel.close()
        db.close()
        raise
    log.info("MEF %s serving on port %d (%s backend)", config.system_id, rpc.port, transport.name)
    mef = MefServer(
        config,
        rpc,
        consumer,
        provider,
        deployments,
        transport,
        peers,
        registry,
        meo_channel,
        traces,
        db,
    )
    mef.follow_transport_health()
    return mef


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
