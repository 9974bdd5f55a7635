"""The federation workflow: consumer and provider state machines, written
once and driven through whichever Mff transport the MEF was built with.

Consumer: request offers -> wait for k offers or the deadline -> choose the
cheapest (ties: earliest) -> ask it to deploy -> connect our end of the
overlay -> verify app-to-app traffic (success only at 0% loss) -> report.
Anything that fails after the provider deployed is rolled back on both sides.

Provider: quote from the offer policy (price rises with load, so concurrent
consumers spread over providers) -> on an accepted offer deploy through the
local MEO -> report; release on termination.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from mecfed.errors import (
    DeadlineExceeded,
    DeploymentFailed,
    FailedPrecondition,
    MecfedError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from mecfed.tracing import set_attributes, step_span
from mecfed.tracing import tracer as make_tracer
from mef.domain import AppSpec as AppSpecT
from mef.domain import (
    DeploymentOrder,
    DeploymentResult,
    Federation,
    FederationState,
    Offer,
    Problem,
    Requirements,
    ServiceNeed,
    Step,
)
from mef.federations import FederationStore
from mef.meo_client import Orchestrator
from mef.pricing import CapacityLedger, OfferPolicy
from mef.transport.base import MffTransport

log = logging.getLogger(__name__)

# Step names shared by both transports (and the benchmark's breakdown).
STEP_OFFERS = "offer_collection"
STEP_AWARD = "award"
STEP_DEPLOY = "deployment"
STEP_OVERLAY = "overlay"
STEP_TRAFFIC = "traffic_check"


@dataclass(frozen=True)
class TrafficCheck:
    """How the consumer proves the federation works."""

    count: int = 20
    interval_ms: int = 10
    timeout_ms: int = 500


@dataclass
class ConsumerSettings:
    tunnel_candidates: int = 8
    deployment_timeout: float = 120.0
    # Deployment failures fall back to the next cheapest offer this often.
    max_deploy_attempts: int = 2
    traffic: TrafficCheck = field(default_factory=TrafficCheck)


class ConsumerWorkflow:
    """Runs federations for the local MEO. One instance per MEF."""

    def __init__(
        self,
        system_id: str,
        transport: MffTransport,
        orchestrator: Orchestrator,
        store: FederationStore | None = None,
        settings: ConsumerSettings | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.system_id = system_id
        self.transport = transport
        self.orchestrator = orchestrator
        self.tracer = tracer or make_tracer(None)
        self.store = store or FederationStore()
        self.settings = settings or ConsumerSettings()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def request(
        self, service_name: str, app: AppSpecT, requirements: Requirements, request_id: str = ""
    ) -> Federation:
        """Validates and starts a federation; returns its first record at once."""
        if request_id and (existing := self.store.by_request_id(request_id)):
            return existing
        app.validate()
        requirements.validate()
        await self.orchestrator.require_app(service_name)
        federation = Federation(
            federation_id=f"fed-{uuid.uuid4().hex[:16]}",
            service_name=service_name,
            app=app,
            requirements=requirements,
            consumer_id=self.system_id,
            backend=self.transport.name,
        )
        self.store.add(federation, request_id)
        task = asyncio.create_task(self._run(federation), name=federation.federation_id)
        self._tasks[federation.federation_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(federation.federation_id, None))
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
        return self.store.put(fed.evolve(state=FederationState.TERMINATED))

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- the state machine ---------------------------------------------------

    def _set(self, fed: Federation, **changes: object) -> Federation:
        return self.store.put(fed.evolve(**changes))

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
        started = time.time()
        # Our end of the tunnel is reserved while offers come in: it is on
        # the critical path otherwise.
        reservation = asyncio.create_task(
            self.orchestrator.reserve_overlay(fed.federation_id, self.settings.tunnel_candidates)
        )
        with step_span(self.tracer, STEP_OFFERS, k=need.requirements.offers_to_wait_for) as span:
            try:
                offers = await self._collect_offers(need, fed)
            except BaseException:
                reservation.cancel()
                with contextlib.suppress(BaseException):
                    await reservation
                raise
            endpoint, candidates = await reservation
            set_attributes(span, offers=len(offers))
        fed = self.store.get(fed.federation_id)
        fed = self._set(
            fed, consumer_endpoint=endpoint, steps=(Step(STEP_OFFERS, started, time.time()),)
        )

        ranked = sorted(offers, key=lambda o: (o.price, o.received_at))
        last_error: Exception | None = None
        for candidate in ranked[: self.settings.max_deploy_attempts]:
            started = time.time()
            with step_span(
                self.tracer, STEP_AWARD, provider=candidate.provider_id, price=candidate.price
            ):
                offer = await self.transport.award(need, candidate)
            fed = self._set(
                fed,
                state=FederationState.AWARDED,
                provider_id=offer.provider_id,
                price=offer.price,
                steps=(*fed.steps, Step(STEP_AWARD, started, time.time())),
            )
            started = time.time()
            fed = self._set(fed, state=FederationState.DEPLOYING)
            order = DeploymentOrder(
                fed.federation_id, self.system_id, fed.app, endpoint, candidates
            )
            try:
                with step_span(self.tracer, STEP_DEPLOY, provider=offer.provider_id) as span:
                    result = await self.transport.deploy(
                        offer, order, self.settings.deployment_timeout
                    )
                    set_attributes(
                        span,
                        vni=result.provider_endpoint.vni,
                        udp_port=result.provider_endpoint.udp_port,
                        provider_ips=",".join(result.provider_endpoint.app_ips),
                    )
            except (DeploymentFailed, DeadlineExceeded, MecfedError) as exc:
                log.warning(
                    "%s: %s failed to deploy: %s", fed.federation_id, offer.provider_id, exc
                )
                last_error = exc
                continue
            return self._set(
                fed,
                app_instance_id=result.app_instance_id,
                provider_endpoint=result.provider_endpoint,
                steps=(*fed.steps, Step(STEP_DEPLOY, started, time.time())),
            )
        assert last_error is not None
        raise last_error

    async def _collect_offers(self, need: ServiceNeed, fed: Federation) -> list[Offer]:
        wanted = need.requirements.offers_to_wait_for
        deadline = need.requirements.offer_timeout_ms / 1000 + getattr(
            self.transport, "offer_grace", 0.0
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
                self._set(self.store.get(fed.federation_id), offers=tuple(offers))
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
        assert fed.provider_endpoint is not None
        started = time.time()
        fed = self._set(fed, state=FederationState.CONNECTING)
        with step_span(
            self.tracer,
            STEP_OVERLAY,
            vni=fed.provider_endpoint.vni,
            remote=fed.provider_endpoint.underlay_ip,
        ):
            endpoint = await self.orchestrator.connect_overlay(
                fed.federation_id, fed.service_name, fed.provider_endpoint
            )
        fed = self._set(
            fed,
            consumer_endpoint=endpoint,
            steps=(*fed.steps, Step(STEP_OVERLAY, started, time.time())),
        )
        started = time.time()
        fed = self._set(fed, state=FederationState.VERIFYING)
        check = self.settings.traffic
        with step_span(self.tracer, STEP_TRAFFIC, count=check.count) as span:
            report = await self.orchestrator.verify_traffic(
                fed.federation_id,
                check.count,
                check.interval_ms,
                check.timeout_ms,
                fed.app.echo_port,
            )
            set_attributes(
                span,
                sent=report.sent,
                received=report.received,
                loss=report.loss,
                rtt_ms=report.rtt_ms,
            )
            if not report.ok:
                span.set_status(Status(StatusCode.ERROR, f"{report.loss:.0%} loss"))
        fed = self._set(
            fed, traffic=report, steps=(*fed.steps, Step(STEP_TRAFFIC, started, time.time()))
        )
        if not report.ok:
            raise DeploymentFailed(
                f"app-to-app traffic check failed: {report.received}/{report.sent} echoes "
                f"answered ({report.loss:.0%} loss); success requires 0% loss"
            )
        return self._set(fed, state=FederationState.ESTABLISHED)

    async def _fail(self, fed: Federation, exc: BaseException) -> None:
        if isinstance(exc, MecfedError):
            problem = Problem(type(exc).__name__, exc.http_status, exc.message)
        else:
            log.exception("federation %s crashed", fed.federation_id, exc_info=exc)
            problem = Problem("InternalError", 500, f"{type(exc).__name__}: {exc}")
        await self._rollback(fed)
        self._set(self.store.get(fed.federation_id), state=FederationState.FAILED, error=problem)

    async def _rollback(self, fed: Federation) -> None:
        """Releases both sides; each half is tried even if the other fails.
        The transport is told even when nothing was deployed, so that it can
        settle what it holds (e.g. the chain escrow of an announcement)."""
        try:
            await self.transport.terminate(fed.federation_id, fed.provider_id, fed.app_instance_id)
        except Exception as exc:
            log.warning("%s: provider release failed: %s", fed.federation_id, exc)
        try:
            await self.orchestrator.release(fed.federation_id)
        except Exception as exc:
            log.warning("%s: local release failed: %s", fed.federation_id, exc)


@dataclass
class _Quote:
    offer: Offer
    consumer_id: str
    federation_id: str
    app: AppSpecT
    binding: bool = False

    @property
    def replicas(self) -> int:
        return self.app.replicas


@dataclass
class _Deployment:
    consumer_id: str
    app: AppSpecT
    result: DeploymentResult | None = None


class ProviderWorkflow:
    """Answers other systems: quotes from the offer policy, deploys through
    the local MEO. Implements mef.transport.base.ProviderHandler."""

    # Outstanding quotes count towards load at this weight: a provider that
    # has just quoted to many consumers is likely to win some of them.
    PENDING_WEIGHT = 0.5

    def __init__(
        self,
        system_id: str,
        orchestrator: Orchestrator,
        policy: OfferPolicy,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self.system_id = system_id
        self.tracer = tracer or make_tracer(None)
        self.orchestrator = orchestrator
        self.policy = policy
        self.ledger = CapacityLedger(policy.capacity_replicas)
        self._clock = clock
        self._quotes: dict[str, _Quote] = {}
        self._deployments: dict[str, _Deployment] = {}
        self._lock = asyncio.Lock()

    def set_policy(self, policy: OfferPolicy) -> None:
        self.policy = policy
        self.ledger.set_capacity(policy.capacity_replicas)

    def _pending_replicas(self, now: float) -> int:
        for ref in [r for r, q in self._quotes.items() if q.offer.valid_until < now]:
            del self._quotes[ref]
        return sum(q.replicas for q in self._quotes.values())

    async def quote(self, need: ServiceNeed, binding: bool = False) -> Offer:
        """Prices ``need``. A ``binding`` quote (a bid the auction may award
        without asking again) also holds capacity until it is accepted,
        withdrawn or expires, so a provider never wins more than it can run."""
        with step_span(
            self.tracer, "provider.quote", federation_id=need.federation_id, provider=self.system_id
        ) as span:
            offer = await self._quote(need, binding)
            set_attributes(span, price=offer.price, binding=binding)
            return offer

    def withdraw(self, offer_ref: str) -> None:
        """The offer lost (e.g. another provider won the auction)."""
        self._quotes.pop(offer_ref, None)

    async def _quote(self, need: ServiceNeed, binding: bool = False) -> Offer:
        if need.consumer_id == self.system_id:
            raise FailedPrecondition("a system does not make offers for its own services")
        async with self._lock:
            now = self._clock()
            capacity = self.policy.capacity_replicas
            pending = self._pending_replicas(now)
            held = sum(q.replicas for q in self._quotes.values() if q.binding)
            free = capacity - self.ledger.used - (held if binding else 0)
            if need.app.replicas > free:
                raise ResourceExhausted(
                    f"{self.system_id} has capacity for {max(free, 0)} more replicas; "
                    f"{need.app.replicas} requested"
                )
            load = min(1.0, (self.ledger.used + self.PENDING_WEIGHT * pending) / capacity)
            price = self.policy.pricing.quote(need.app.replicas, load, _utc(now))
            if price > need.requirements.max_price:
                raise FailedPrecondition(
                    f"price {price} is above max_price {need.requirements.max_price}"
                )
            offer = Offer(
                provider_id=self.system_id,
                price=price,
                ref=f"offer-{secrets.token_hex(8)}",
                valid_until=now + self.policy.offer_validity_ms / 1000,
                received_at=now,
            )
            self._quotes[offer.ref] = _Quote(
                offer, need.consumer_id, need.federation_id, need.app, binding
            )
            return offer

    async def accept(self, offer_ref: str, consumer_id: str, federation_id: str) -> AppSpecT:
        async with self._lock:
            quote = self._quotes.get(offer_ref)
            if quote is None:
                raise FailedPrecondition(f"offer {offer_ref!r} is unknown or expired")
            if quote.consumer_id != consumer_id:
                raise PermissionDenied(f"offer {offer_ref!r} was not made to {consumer_id}")
            if quote.federation_id != federation_id:
                raise FailedPrecondition(
                    f"offer {offer_ref!r} is for federation {quote.federation_id}, "
                    f"not {federation_id}"
                )
            if quote.offer.valid_until < self._clock():
                del self._quotes[offer_ref]
                raise FailedPrecondition(f"offer {offer_ref!r} expired")
            if federation_id in self._deployments:
                raise FailedPrecondition(f"federation {federation_id} is already deployed here")
            await self.ledger.reserve(federation_id, quote.replicas)
            del self._quotes[offer_ref]
            self._deployments[federation_id] = _Deployment(consumer_id, quote.app)
            return quote.app

    async def deploy(self, order: DeploymentOrder) -> DeploymentResult:
        deployment = self._deployments.get(order.federation_id)
        if deployment is None or deployment.consumer_id != order.consumer_id:
            raise FailedPrecondition(f"federation {order.federation_id} has no accepted offer")
        try:
            with step_span(
                self.tracer,
                "provider.deploy",
                federation_id=order.federation_id,
                provider=self.system_id,
                image=deployment.app.image,
                replicas=deployment.app.replicas,
            ) as span:
                endpoint = await self.orchestrator.deploy_federated(
                    order.federation_id,
                    order.consumer_id,
                    deployment.app,
                    order.consumer_endpoint,
                    order.candidates,
                )
                set_attributes(span, vni=endpoint.vni, udp_port=endpoint.udp_port)
        except BaseException:
            # The MEO already rolled its half back; free the capacity.
            await self.ledger.release(order.federation_id)
            self._deployments.pop(order.federation_id, None)
            raise
        deployment.result = DeploymentResult(f"{self.system_id}/{order.federation_id}", endpoint)
        return deployment.result

    async def release(self, federation_id: str, consumer_id: str) -> None:
        deployment = self._deployments.get(federation_id)
        if deployment is None:
            return  # idempotent: already released or never deployed
        if deployment.consumer_id != consumer_id:
            raise NotFound(f"federation {federation_id!r} not found")
        await self.orchestrator.release(federation_id)
        self._deployments.pop(federation_id, None)
        await self.ledger.release(federation_id)


def _utc(seconds: float):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


__all__ = [
    "ConsumerSettings",
    "ConsumerWorkflow",
    "ProviderWorkflow",
    "TrafficCheck",
]
