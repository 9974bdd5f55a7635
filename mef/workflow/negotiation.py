"""The steps of the consumer's workflow run, from offers to verified
traffic (used by :class:`mef.workflow.consumer.ConsumerWorkflow`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from mecfed.errors import DeadlineExceeded, DeploymentFailed, MecfedError, Unavailable
from mecfed.model import (
    DeploymentOrder,
    Federation,
    FederationState,
    Offer,
    OverlayReservation,
    ServiceNeed,
    Step,
    TrafficCheck,
)
from mecfed.tracing import set_attributes, set_traffic, step_span
from mef.federations import FederationStore
from mef.meo_client import Orchestrator
from mef.transport.base import Fallback, MffTransport
from mef.workflow.upkeep import Backoff, ProviderReleases

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
    # Runtime liveness after ESTABLISHED: one traffic series per period
    # through the MEO's WatchTraffic (0 = off).
    liveness_period_ms: int = 2000
    # How long TerminateFederation waits for TERMINATED before it answers
    # TERMINATING (the release goes on in the background).
    terminate_wait: float = 5.0
    # Retries of releases that were not acknowledged (provider down, MEO
    # unreachable).
    retry: Backoff = field(default_factory=Backoff)


class Negotiation:
    """Offers → award → deploy (with fallback) → overlay → traffic check."""

    system_id: str
    transport: MffTransport
    orchestrator: Orchestrator
    store: FederationStore
    settings: ConsumerSettings
    tracer: Tracer
    releases: ProviderReleases
    _clock: Callable[[], float]

    def _set(self, fed: Federation, *, reason: str = "", **changes: object) -> Federation:
        state = changes.get("state")
        if isinstance(state, FederationState) and state != fed.state:
            # Each transition is an event of the span it happens in, so the
            # trace shows the same history as the record.
            trace.get_current_span().add_event(
                "state", {"state": state.name, "previous": fed.state.name, "reason": reason}
            )
        return self.store.put(fed.evolve(reason=reason, **changes))

    def _step(self, name: str, started: float) -> Step:
        return Step(name, started, self._clock())

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
                app_instance_id="",
                provider_endpoint=None,
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
                await self._release_attempt(fed, exc)
        raise last_error

    async def _release_attempt(self, fed: Federation, exc: MecfedError) -> None:
        """A failed attempt may have left a deployment at its provider (it
        timed out, went silent, or deployed something we refused): release it
        before the next provider is tried; if that provider cannot be
        reached, the release is retried in the background until it is.
        DeploymentFailed means the provider itself reported the failure and
        rolled back. With MARKET fallback the market settles the attempt
        (the failed winner declines)."""
        if self.transport.capabilities.fallback != Fallback.NEXT_OFFER:
            return
        if isinstance(exc, DeploymentFailed) and not fed.app_instance_id:
            return
        # A provider that went silent is not waited for again: its release
        # goes to the background and the next provider is asked at once.
        await self.releases.release(fed, wait=not isinstance(exc, Unavailable))

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
            # Recorded before it is checked: what the provider deployed must
            # be released even if its answer is refused below.
            fed = self._set(fed, app_instance_id=result.app_instance_id)
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
            provider_endpoint=provider_end,
            steps=(*fed.steps, self._step(STEP_DEPLOY, started)),
        )

    async def _collect_offers(self, need: ServiceNeed) -> list[Offer]:
        """Offers at or below max_price until k arrived or the deadline. If
        none did, DeadlineExceeded says why: offers above max_price, the
        transport's reason (providers at capacity, a stalled chain...), or
        that nothing arrived."""
        wanted = need.requirements.offers_to_wait_for
        deadline = (
            need.requirements.offer_timeout_ms / 1000 + self.transport.capabilities.offer_grace
        )
        offers: list[Offer] = []
        too_dear = 0
        transport_reason = ""
        stream = self.transport.solicit_offers(need)

        async def gather() -> None:
            nonlocal too_dear, transport_reason
            try:
                async for offer in stream:
                    if offer.price > need.requirements.max_price or offer.price <= 0:
                        too_dear += 1
                        continue  # the provider ignored our limit; do not trust it
                    trace.get_current_span().add_event(
                        "offer received", {"provider": offer.provider_id, "price": offer.price}
                    )
                    offers.append(offer)
                    self._set(self.store.get(need.federation_id), offers=tuple(offers))
                    if len(offers) >= wanted:
                        return
            except MecfedError as exc:
                # The transport knows why no (further) offer can come.
                transport_reason = f"{exc.title}: {exc.message}"

        try:
            await asyncio.wait_for(gather(), deadline)
        except TimeoutError:
            pass  # choose among what arrived
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if not offers:
            why = []
            if too_dear:
                why.append(f"{too_dear} offer(s) above max_price were ignored")
            if transport_reason:
                why.append(transport_reason)
            if not why:
                why.append("none arrived")
            raise DeadlineExceeded(
                f"no offer at or below max_price {need.requirements.max_price} "
                f"within {need.requirements.offer_timeout_ms} ms: {'; '.join(why)}"
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
        # Only now has the provider earned its price (chain: the consumer's
        # acknowledgement pays it). If that cannot be said, the federation
        # fails and is rolled back rather than run unpaid.
        await self.transport.established(fed)
        return self._set(
            fed,
            state=FederationState.ESTABLISHED,
            reason=f"traffic verified: {report.received}/{report.sent} echoes answered",
        )


__all__ = [
    "STEP_AWARD",
    "STEP_DEPLOY",
    "STEP_OFFERS",
    "STEP_OVERLAY",
    "STEP_TRAFFIC",
    "ConsumerSettings",
    "Negotiation",
]
