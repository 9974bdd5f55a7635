"""The consumer's side of the federation workflow, written once and driven
through whichever Mff transport the MEF was built with.

Request offers → wait for k offers or the deadline → the transport awards
(direct: our ranking, cheapest then earliest; chain: the contract decides) →
ask the winner to deploy (on failure, the next winner: our next offer, or the
market's re-award) → connect our end of the overlay → verify app-to-app
traffic (success only at 0 % loss) → report. Anything that fails after the
provider deployed is rolled back on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from mecfed.errors import DeadlineExceeded, DeploymentFailed, FailedPrecondition, MecfedError
from mecfed.model import (
    DeploymentOrder,
    Federation,
    FederationRequest,
    FederationState,
    Offer,
    OverlayReservation,
    Problem,
    ServiceNeed,
    Step,
    TrafficCheck,
)
from mecfed.tracing import set_attributes, set_traffic, step_span
from mecfed.tracing import tracer as make_tracer
from mef.federations import FederationStore
from mef.meo_client import Orchestrator
from mef.transport.base import MffTransport
from mef.workflow.provider import Clock

log = logging.getLogger(__name__)

# Step names shared by both transports (and the benchmark's breakdown).
STEP_OFFERS = "offer_collection"
STEP_AWARD = "award"
STEP_DEPLOY = "deployment"
STEP_OVERLAY = "overlay"
STEP_TRAFFIC = "traffic_check"


@dataclass
class ConsumerSettings:
    tunnel_candidates: int = 8
    deployment_timeout: float = 120.0
    # A failed deployment falls back to the next winner this often in all.
    max_deploy_attempts: int = 2
    traffic: TrafficCheck = field(default_factory=TrafficCheck)


class ConsumerWorkflow:
    """Runs federations for the local MEO. One instance per MEF."""

    def __init__(
        self,
        system_id: str,
        transport: MffTransport,
        orchestrator: Orchestrator,
        *,
        store: FederationStore | None = None,
        settings: ConsumerSettings | None = None,
        clock: Clock = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self.system_id = system_id
        self.transport = transport
        self.orchestrator = orchestrator
        self.store = store or FederationStore()
        self.settings = settings or ConsumerSettings()
        self.tracer = tracer or make_tracer(None)
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def request(self, req: FederationRequest) -> Federation:
        """Starts a federation; returns its first record at once."""
        if req.request_id and (existing := self.store.by_request_id(req.request_id)):
            return existing
        await self.orchestrator.require_app(req.service_name)
        now = self._clock()
        federation = Federation(
            federation_id=f"fed-{uuid.uuid4().hex[:16]}",
            service_name=req.service_name,
            app=req.app,
            requirements=req.requirements,
            consumer_id=self.system_id,
            backend=self.transport.name,
            created_at=now,
            updated_at=now,
        )
        self.store.add(federation, req.request_id)
        fid = federation.federation_id
        task = asyncio.create_task(self._run(federation), name=fid)
        self._tasks[fid] = task
        task.add_done_callback(lambda _t: self._tasks.pop(fid, None))
        return federation

    async def wait(self, federation_id: str) -> Federation:
        """Waits until the federation reaches a terminal state."""
        async for fed in self.store.watch(federation_id):
            if fed.state.terminal:
                return fed
        return self.store.get(federation_id)

    async def terminate(self, federation_id: str) -> Federation:
        fed = self.store.get(federation_id)
        if fed.state == FederationState.TERMINATED:
            raise FailedPrecondition(f"federation {federation_id} is already terminated")
        task = self._tasks.get(federation_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        fed = self.store.get(federation_id)
        await self._rollback(fed)
        return self._set(fed, state=FederationState.TERMINATED)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- the state machine ---------------------------------------------------

    def _set(self, fed: Federation, **changes: object) -> Federation:
        return self.store.put(fed.evolve(**changes))

    def _step(self, name: str, started: float) -> Step:
        return Step(name, started, self._clock())

    async def _run(self, fed: Federation) -> None:
        # One span for the whole federation; every step is its child, and the
        # providers' spans join through gRPC metadata or the announcement.
        with step_span(
            self.tracer,
            "federation",
            federation_id=fed.federation_id,
            consumer=self.system_id,
            backend=self.transport.name,
            service=fed.service_name,
            image=fed.app.image,
            replicas=fed.app.replicas,
            max_price=fed.requirements.max_price,
        ) as span:
            try:
                fed = await self._negotiate_and_deploy(fed)
                fed = await self._connect_and_verify(fed)
                set_attributes(span, provider=fed.provider_id, price=fed.price)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._fail(self.store.get(fed.federation_id), exc)

    async def _negotiate_and_deploy(self, fed: Federation) -> Federation:
        need = ServiceNeed(fed.federation_id, self.system_id, fed.app, fed.requirements)
        fed = self._set(fed, state=FederationState.COLLECTING_OFFERS)
        started = self._clock()
        # Our end of the tunnel is reserved while offers come in: it is on
        # the critical path otherwise.
        reserving = asyncio.create_task(
            self.orchestrator.reserve_overlay(fed.federation_id, self.settings.tunnel_candidates)
        )
        with step_span(self.tracer, STEP_OFFERS, k=need.requirements.offers_to_wait_for) as span:
            try:
                offers = await self._collect_offers(need)
            except BaseException:
                reserving.cancel()
                with contextlib.suppress(BaseException):
                    await reserving
                raise
            reservation = await reserving
            set_attributes(span, offers=len(offers))
        fed = self._set(
            self.store.get(fed.federation_id),
            consumer_endpoint=reservation.endpoint,
            steps=(self._step(STEP_OFFERS, started),),
        )
        ranked = sorted(offers, key=lambda o: (o.price, o.received_at))
        failed: list[Offer] = []
        last_error: Exception = DeadlineExceeded("no provider was awarded the federation")
        for _ in range(self.settings.max_deploy_attempts):
            started = self._clock()
            with step_span(self.tracer, STEP_AWARD, attempt=len(failed) + 1) as span:
                offer = await self.transport.award(need, ranked, failed)
                if offer is not None:
                    set_attributes(span, provider=offer.provider_id, price=offer.price)
            if offer is None:
                break
            fed = self._set(
                fed,
                state=FederationState.AWARDED,
                provider_id=offer.provider_id,
                price=offer.price,
                steps=(*fed.steps, self._step(STEP_AWARD, started)),
            )
            try:
                return await self._deploy(fed, offer, reservation)
            except MecfedError as exc:
                log.warning(
                    "%s: %s failed to deploy: %s", fed.federation_id, offer.provider_id, exc
                )
                failed.append(offer)
                last_error = exc
                fed = self.store.get(fed.federation_id)
        raise last_error

    async def _deploy(
        self, fed: Federation, offer: Offer, reservation: OverlayReservation
    ) -> Federation:
        started = self._clock()
        fed = self._set(fed, state=FederationState.DEPLOYING)
        order = DeploymentOrder(
            fed.federation_id, self.system_id, fed.app, reservation.endpoint, reservation.candidates
        )
        with step_span(self.tracer, STEP_DEPLOY, provider=offer.provider_id) as span:
            result = await self.transport.deploy(offer, order, self.settings.deployment_timeout)
            provider_end = result.provider_endpoint.require_remote_of(
                reservation.endpoint.underlay_ip, "provider_endpoint"
            )
            set_attributes(
                span,
                vni=provider_end.vni,
                udp_port=provider_end.udp_port,
                provider_ips=",".join(provider_end.app_ips),
            )
        return self._set(
            fed,
            app_instance_id=result.app_instance_id,
            provider_endpoint=provider_end,
            steps=(*fed.steps, self._step(STEP_DEPLOY, started)),
        )

    async def _collect_offers(self, need: ServiceNeed) -> list[Offer]:
        wanted = need.requirements.offers_to_wait_for
        deadline = (
            need.requirements.offer_timeout_ms / 1000 + self.transport.capabilities.offer_grace
        )
        offers: list[Offer] = []
        stream = self.transport.solicit_offers(need)

        async def gather() -> None:
            async for offer in stream:
                if offer.price > need.requirements.max_price or offer.price <= 0:
                    continue  # the provider ignored our limit; do not trust it
                trace.get_current_span().add_event(
                    "offer received", {"provider": offer.provider_id, "price": offer.price}
                )
                offers.append(offer)
                self._set(self.store.get(need.federation_id), offers=tuple(offers))
                if len(offers) >= wanted:
                    return

        try:
            await asyncio.wait_for(gather(), deadline)
        except TimeoutError:
            pass  # choose among what arrived
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if not offers:
            raise DeadlineExceeded(
                f"no offer at or below max_price {need.requirements.max_price} "
                f"arrived within {need.requirements.offer_timeout_ms} ms"
            )
        return offers

    async def _connect_and_verify(self, fed: Federation) -> Federation:
        provider_end = fed.provider_endpoint
        assert provider_end is not None
        started = self._clock()
        fed = self._set(fed, state=FederationState.CONNECTING)
        with step_span(
            self.tracer, STEP_OVERLAY, vni=provider_end.vni, remote=provider_end.underlay_ip
        ):
            endpoint = await self.orchestrator.connect_overlay(
                fed.federation_id, fed.service_name, provider_end
            )
        fed = self._set(
            fed,
            consumer_endpoint=endpoint,
            steps=(*fed.steps, self._step(STEP_OVERLAY, started)),
        )
        started = self._clock()
        fed = self._set(fed, state=FederationState.VERIFYING)
        check = TrafficCheck(
            count=self.settings.traffic.count,
            interval_ms=self.settings.traffic.interval_ms,
            timeout_ms=self.settings.traffic.timeout_ms,
            echo_port=fed.app.echo_port,
        )
        with step_span(self.tracer, STEP_TRAFFIC, count=check.count) as span:
            report = await self.orchestrator.verify_traffic(fed.federation_id, check)
            set_traffic(span, report)
            if not report.ok:
                span.set_status(Status(StatusCode.ERROR, f"{report.loss:.0%} loss"))
        fed = self._set(fed, traffic=report, steps=(*fed.steps, self._step(STEP_TRAFFIC, started)))
        if not report.ok:
            raise DeploymentFailed(
                f"app-to-app traffic check failed: {report.received}/{report.sent} echoes "
                f"answered ({report.loss:.0%} loss); success requires 0% loss"
            )
        return self._set(fed, state=FederationState.ESTABLISHED)

    async def _fail(self, fed: Federation, exc: BaseException) -> None:
        if not isinstance(exc, MecfedError):
            log.error("federation %s crashed", fed.federation_id, exc_info=exc)
        await self._rollback(fed)
        self._set(
            self.store.get(fed.federation_id), state=FederationState.FAILED, error=Problem.of(exc)
        )

    async def _rollback(self, fed: Federation) -> None:
        """Releases both sides; each half is tried even if the other fails.
        The transport is told even when nothing was deployed, so that it can
        settle what it holds (e.g. the chain escrow of an announcement)."""
        try:
            await self.transport.terminate(fed)
        except Exception as exc:
            log.warning("%s: provider release failed: %s", fed.federation_id, exc)
        try:
            await self.orchestrator.release(fed.federation_id)
        except Exception as exc:
            log.warning("%s: local release failed: %s", fed.federation_id, exc)


__all__ = [
    "STEP_AWARD",
    "STEP_DEPLOY",
    "STEP_OFFERS",
    "STEP_OVERLAY",
    "STEP_TRAFFIC",
    "ConsumerSettings",
    "ConsumerWorkflow",
]
