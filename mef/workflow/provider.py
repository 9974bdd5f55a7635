"""The provider's side of the federation workflow: quote from the offer
policy (the price rises with load, so concurrent consumers spread over
providers), commit capacity for an accepted offer, deploy through the local
MEO, release on termination. Transport independent: transports call it
through :class:`mef.transport.base.ProviderHandler`."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from opentelemetry.trace import Tracer

from mecfed.errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted
from mecfed.model import AppSpec, DeploymentOrder, Offer, OfferPolicy, OverlayEndpoint, ServiceNeed
from mecfed.tracing import set_attributes, step_span
from mecfed.tracing import tracer as make_tracer
from mef.capacity import CapacityLedger
from mef.meo_client import Orchestrator

Clock = Callable[[], float]


@dataclass
class _Quote:
    offer: Offer
    consumer_id: str
    federation_id: str
    app: AppSpec
    binding: bool

    @property
    def replicas(self) -> int:
        return self.app.replicas


@dataclass(frozen=True)
class _Accepted:
    consumer_id: str
    app: AppSpec


class ProviderWorkflow:
    """Answers other systems; implements :class:`mef.transport.base.ProviderHandler`."""

    # Outstanding quotes count towards load at this weight: a provider that
    # has just quoted to many consumers is likely to win some of them.
    PENDING_WEIGHT = 0.5

    def __init__(
        self,
        system_id: str,
        orchestrator: Orchestrator,
        policy: OfferPolicy,
        *,
        clock: Clock = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        self.system_id = system_id
        self.orchestrator = orchestrator
        self.policy = policy
        self.ledger = CapacityLedger(policy.capacity_replicas)
        self.tracer = tracer or make_tracer(None)
        self._clock = clock
        self._quotes: dict[str, _Quote] = {}
        self._accepted: dict[tuple[str, str], _Accepted] = {}
        self._lock = asyncio.Lock()

    def set_policy(self, policy: OfferPolicy) -> None:
        self.policy = policy
        self.ledger.set_capacity(policy.capacity_replicas)

    @property
    def outstanding_quotes(self) -> int:
        return len(self._quotes)

    def _expire(self, now: float) -> None:
        for ref in [r for r, q in self._quotes.items() if q.offer.valid_until < now]:
            del self._quotes[ref]

    async def quote(self, need: ServiceNeed, *, binding: bool = False) -> Offer:
        """Prices ``need``. A binding quote also holds capacity until it is
        accepted, withdrawn or expires, so a provider never wins more than it
        can run."""
        with step_span(
            self.tracer, "provider.quote", federation_id=need.federation_id, provider=self.system_id
        ) as span:
            offer = await self._quote(need, binding)
            set_attributes(span, price=offer.price, binding=binding)
            return offer

    async def _quote(self, need: ServiceNeed, binding: bool) -> Offer:
        if need.consumer_id == self.system_id:
            raise FailedPrecondition("a system does not make offers for its own services")
        async with self._lock:
            now = self._clock()
            self._expire(now)
            capacity = self.policy.capacity_replicas
            held = sum(q.replicas for q in self._quotes.values() if q.binding)
            free = capacity - self.ledger.used - (held if binding else 0)
            if need.app.replicas > free:
                raise ResourceExhausted(
                    f"{self.system_id} has capacity for {max(free, 0)} more replicas; "
                    f"{need.app.replicas} requested"
                )
            pending = sum(q.replicas for q in self._quotes.values())
            load = min(1.0, (self.ledger.used + self.PENDING_WEIGHT * pending) / capacity)
            price = self.policy.quote(need.app.replicas, load, datetime.fromtimestamp(now, UTC))
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
            self._quotes[str(offer.ref)] = _Quote(
                offer, need.consumer_id, need.federation_id, need.app, binding
            )
            return offer

    def withdraw(self, offer_ref: str) -> None:
        self._quotes.pop(offer_ref, None)

    async def accept(self, offer_ref: str, consumer_id: str, federation_id: str) -> AppSpec:
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
            key = (consumer_id, federation_id)
            if key in self._accepted:
                raise FailedPrecondition(f"federation {federation_id} is already deployed here")
            await self.ledger.reserve(_ledger_key(key), quote.replicas)
            del self._quotes[offer_ref]
            self._accepted[key] = _Accepted(consumer_id, quote.app)
            return quote.app

    async def deploy(self, order: DeploymentOrder) -> OverlayEndpoint:
        key = (order.consumer_id, order.federation_id)
        accepted = self._accepted.get(key)
        if accepted is None:
            raise FailedPrecondition(f"federation {order.federation_id} has no accepted offer")
        # The provider runs what it priced, whatever the order says.
        order = replace(order, app=accepted.app)
        try:
            with step_span(
                self.tracer,
                "provider.deploy",
                federation_id=order.federation_id,
                provider=self.system_id,
                image=order.app.image,
                replicas=order.app.replicas,
            ) as span:
                endpoint = await self.orchestrator.deploy_federated(order)
                set_attributes(span, vni=endpoint.vni, udp_port=endpoint.udp_port)
        except BaseException:
            # The MEO rolled its half back; free the capacity.
            self._accepted.pop(key, None)
            await self.ledger.release(_ledger_key(key))
            raise
        return endpoint

    async def release(self, federation_id: str, consumer_id: str) -> None:
        key = (consumer_id, federation_id)
        if key not in self._accepted:
            if any(f == federation_id for _, f in self._accepted):
                raise NotFound(f"federation {federation_id!r} not found")
            return  # idempotent: already released or never deployed
        await self.orchestrator.release(federation_id)
        self._accepted.pop(key, None)
        await self.ledger.release(_ledger_key(key))


def _ledger_key(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


__all__ = ["Clock", "ProviderWorkflow"]
