"""The provider's side of the federation workflow: quote from the offer
policy (the price rises with load, so concurrent consumers spread over
providers), commit capacity for an accepted offer, deploy through the local
MEO, release on termination. Transport independent: transports call it
through :class:`mef.transport.base.ProviderHandler`.

Everything is keyed by (consumer, federation id): federation ids are the
consumer's names, public in the announcement, and may collide between
consumers.

Load is what the provider is bound to: the committed replicas (accepted,
deploying, deployed) plus those held by binding quotes (chain bids, which
the market may award without asking again). A non-binding quote (a direct
RequestOffer) is only a price: it holds nothing, moves nobody's price and
expires within :data:`QUOTE_TTL_MS`; accepting it later is checked against
capacity again.

Durable (:mod:`mef.provider_store`): the policy set by SetOfferPolicy, the
binding quotes and the commitments survive a restart, and
:meth:`ProviderWorkflow.reconcile` makes the local MEO agree with them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry.trace import Tracer

from mecfed.errors import Aborted, FailedPrecondition, PermissionDenied, ResourceExhausted
from mecfed.model import (
    AppSpec,
    DeploymentOrder,
    Offer,
    OfferPolicy,
    OverlayEndpoint,
    Role,
    ServiceNeed,
)
from mecfed.storage import Database
from mecfed.tracing import set_attributes, step_span
from mecfed.tracing import tracer as make_tracer
from mef.capacity import CapacityLedger
from mef.meo_client import Orchestrator
from mef.provider_store import CommitmentRow, Key, ProviderStore, QuoteRow

if TYPE_CHECKING:
    from mef.deployments import Deployments

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: How long a non-binding quote stands (at most; the policy may say less).
#: Long enough for a consumer to collect offers and accept the best one.
QUOTE_TTL_MS = 10_000
#: Non-binding quotes one consumer may have outstanding: they hold nothing,
#: so this only bounds memory against a peer that asks without end.
MAX_QUOTES_PER_CONSUMER = 64


@dataclass
class _Quote:
    offer: Offer
    consumer_id: str
    federation_id: str
    app: AppSpec
    binding: bool

    @property
    def key(self) -> Key:
        return (self.consumer_id, self.federation_id)


@dataclass
class _Commitment:
    consumer_id: str
    federation_id: str
    offer_ref: str
    app: AppSpec
    state: str = "accepted"  # accepted | deploying | deployed
    # Set by release(): a deployment in flight must not report success.
    releasing: bool = field(default=False, repr=False)

    @property
    def key(self) -> Key:
        return (self.consumer_id, self.federation_id)


@dataclass(frozen=True)
class Reconciled:
    """What :meth:`ProviderWorkflow.reconcile` did (for the log and tests)."""

    kept: tuple[Key, ...] = ()
    rolled_back: tuple[Key, ...] = ()  # in flight at the restart
    dropped: tuple[Key, ...] = ()  # recorded, but the MEO no longer holds it
    orphans_released: tuple[Key, ...] = ()  # held by the MEO, no record here


class ProviderWorkflow:
    """Answers other systems; implements :class:`mef.transport.base.ProviderHandler`."""

    def __init__(
        self,
        system_id: str,
        orchestrator: Orchestrator,
        policy: OfferPolicy,
        *,
        clock: Clock = time.time,
        tracer: Tracer | None = None,
        db: Database | None = None,
    ) -> None:
        """``policy`` is the configured one; a policy set since with
        SetOfferPolicy (stored in ``db``) takes its place."""
        self.system_id = system_id
        self.orchestrator = orchestrator
        self._store = ProviderStore(db)
        self.policy = self._store.policy() or policy
        self.ledger = CapacityLedger(self.policy.capacity_replicas)
        self.tracer = tracer or make_tracer(None)
        self._clock = clock
        self._quotes: dict[str, _Quote] = {}
        self._commitments: dict[Key, _Commitment] = {}
        self._inflight: dict[Key, asyncio.Task[OverlayEndpoint]] = {}
        self._lock = asyncio.Lock()
        self._load()

    def _load(self) -> None:
        for q in self._store.quotes():
            offer = Offer(self.system_id, q.price, q.ref, q.valid_until, q.received_at)
            self._quotes[q.ref] = _Quote(offer, q.consumer_id, q.federation_id, q.app, True)
        for c in self._store.commitments():
            commitment = _Commitment(c.consumer_id, c.federation_id, c.offer_ref, c.app, c.state)
            self._commitments[commitment.key] = commitment
            # Restored as they were, even above a capacity lowered since.
            self.ledger.restore(_ledger_key(commitment.key), c.app.replicas)

    def set_policy(self, policy: OfferPolicy) -> None:
        self._store.save_policy(policy)
        self.policy = policy
        self.ledger.set_capacity(policy.capacity_replicas)

    @property
    def outstanding_quotes(self) -> int:
        return len(self._quotes)

    def committed(self) -> dict[Key, str]:
        """(consumer, federation) -> accepted | deploying | deployed."""
        return {key: c.state for key, c in self._commitments.items()}

    def _expire(self, now: float) -> None:
        expired = [r for r, q in self._quotes.items() if q.offer.valid_until < now]
        binding = [r for r in expired if self._quotes[r].binding]
        for ref in expired:
            del self._quotes[ref]
        if binding:
            self._store.delete_quotes(binding)

    def _held(self, excluding: str = "") -> int:
        """Replicas held by binding quotes (except ``excluding``)."""
        return sum(q.app.replicas for r, q in self._quotes.items() if q.binding and r != excluding)

    def load(self) -> float:
        """What prices are made from: committed plus bid, over capacity."""
        capacity = self.policy.capacity_replicas
        if capacity == 0:
            return 1.0
        return min(1.0, (self.ledger.used + self._held()) / capacity)

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
            free = capacity - self.ledger.used - (self._held() if binding else 0)
            if need.app.replicas > free:
                raise ResourceExhausted(
                    f"{self.system_id} has capacity for {max(free, 0)} more replicas; "
                    f"{need.app.replicas} requested"
                )
            if not binding:
                mine = sum(
                    1
                    for q in self._quotes.values()
                    if not q.binding and q.consumer_id == need.consumer_id
                )
                if mine >= MAX_QUOTES_PER_CONSUMER:
                    raise ResourceExhausted(
                        f"{need.consumer_id} has {mine} offers outstanding here; accept one "
                        f"or wait until they expire ({QUOTE_TTL_MS // 1000} s)"
                    )
            # Priced from the load before this quote, so that asking does
            # not raise the asker's own price either.
            price = self.policy.quote(
                need.app.replicas, self.load(), datetime.fromtimestamp(now, UTC)
            )
            if price > need.requirements.max_price:
                raise FailedPrecondition(
                    f"price {price} is above max_price {need.requirements.max_price}"
                )
            validity_ms = self.policy.offer_validity_ms
            if not binding:
                validity_ms = min(validity_ms, QUOTE_TTL_MS)
            offer = Offer(
                provider_id=self.system_id,
                price=price,
                ref=f"offer-{secrets.token_hex(8)}",
                valid_until=now + validity_ms / 1000,
                received_at=now,
            )
            quote = _Quote(offer, need.consumer_id, need.federation_id, need.app, binding)
            if binding:
                self._store.save_quote(
                    QuoteRow(
                        str(offer.ref),
                        need.consumer_id,
                        need.federation_id,
                        need.app,
                        price,
                        offer.valid_until,
                        now,
                    )
                )
            self._quotes[str(offer.ref)] = quote
            return offer

    def withdraw(self, offer_ref: str) -> None:
        quote = self._quotes.pop(offer_ref, None)
        if quote is not None and quote.binding:
            self._store.delete_quotes([offer_ref])

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
                self.withdraw(offer_ref)
                raise FailedPrecondition(f"offer {offer_ref!r} expired")
            key = (consumer_id, federation_id)
            if key in self._commitments:
                raise FailedPrecondition(f"federation {federation_id} is already deployed here")
            # A binding quote brings its own held replicas; a non-binding one
            # must still fit beside everything bound since it was made.
            others = self.ledger.used + self._held(excluding=offer_ref)
            if others + quote.app.replicas > self.policy.capacity_replicas:
                raise ResourceExhausted(
                    f"offer {offer_ref!r} can no longer be honoured: {others} of "
                    f"{self.policy.capacity_replicas} replicas are committed or bid, "
                    f"{quote.app.replicas} requested"
                )
            await self.ledger.reserve(_ledger_key(key), quote.app.replicas)
            commitment = _Commitment(consumer_id, federation_id, offer_ref, quote.app)
            self._store.commit(
                CommitmentRow(consumer_id, federation_id, offer_ref, quote.app, "accepted"),
                offer_ref,
            )
            del self._quotes[offer_ref]
            self._commitments[key] = commitment
            return quote.app

    def _set_state(self, commitment: _Commitment, state: str) -> None:
        self._store.set_commitment_state(commitment.key, state)
        commitment.state = state

    async def deploy(self, order: DeploymentOrder) -> OverlayEndpoint:
        """Deploys an accepted order. On failure (or cancellation) the MEO is
        asked to release what it may have made and the capacity is freed;
        a :meth:`release` during the deployment cancels it (Aborted)."""
        key = (order.consumer_id, order.federation_id)
        commitment = self._commitments.get(key)
        if commitment is None or commitment.releasing:
            raise FailedPrecondition(f"federation {order.federation_id} has no accepted offer")
        if commitment.state != "accepted" or key in self._inflight:
            raise FailedPrecondition(
                f"federation {order.federation_id} is already {commitment.state} here"
            )
        # The provider runs what it priced, whatever the order says.
        order = replace(order, app=commitment.app)
        self._set_state(commitment, "deploying")
        call = asyncio.create_task(
            self.orchestrator.deploy_federated(order), name=f"meo deploy {order.federation_id}"
        )
        self._inflight[key] = call
        try:
            with step_span(
                self.tracer,
                "provider.deploy",
                federation_id=order.federation_id,
                provider=self.system_id,
                image=order.app.image,
                replicas=order.app.replicas,
            ) as span:
                try:
                    endpoint = await call
                finally:
                    self._inflight.pop(key, None)
                if commitment.releasing:
                    raise Aborted(f"federation {order.federation_id} was released while deploying")
                set_attributes(span, vni=endpoint.vni, udp_port=endpoint.udp_port)
        except BaseException as exc:
            if commitment.releasing:  # release() owns the clean-up
                if _cancelled_by_release(exc, call):
                    raise Aborted(
                        f"federation {order.federation_id} was released while deploying"
                    ) from None
                raise
            await self._roll_back(commitment)
            raise
        self._set_state(commitment, "deployed")
        return endpoint

    async def _roll_back(self, commitment: _Commitment) -> None:
        """After a failed or cancelled deployment: the MEO rolls its half back
        on failure, but not necessarily on a cancelled call, so it is asked to
        release either way (idempotent) before the capacity is freed."""
        try:
            await self._release_at_meo(commitment)
        except Exception as exc:
            # Capacity stays committed; a later release or the next start's
            # reconcile retries.
            log.error("%s: could not roll back at the MEO: %s", commitment.federation_id, exc)
            return
        self._drop(commitment)

    async def _release_at_meo(self, commitment: _Commitment) -> None:
        # Shielded: a caller cancelled mid-way must not leave half a release.
        await asyncio.shield(
            self.orchestrator.release(commitment.federation_id, commitment.consumer_id)
        )

    def _drop(self, commitment: _Commitment) -> None:
        # Only if still current: a concurrent release may have dropped it and
        # the consumer committed the same federation anew since.
        if self._commitments.get(commitment.key) is commitment:
            self._store.delete_commitment(commitment.key)
            del self._commitments[commitment.key]
            self.ledger.release_now(_ledger_key(commitment.key))

    async def release(self, federation_id: str, consumer_id: str) -> None:
        """Removes what was deployed (or is being deployed) for the
        consumer's federation and frees its capacity. Idempotent and valid in
        every state: unknown, quoted, accepted, deploying (the deployment is
        cancelled and rolled back), deployed. Raises (the capacity stays
        committed) only when the MEO could not be told."""
        key = (consumer_id, federation_id)
        for ref in [r for r, q in self._quotes.items() if q.key == key]:
            self.withdraw(ref)
        commitment = self._commitments.get(key)
        if commitment is None:
            return
        commitment.releasing = True
        call = self._inflight.get(key)
        if call is not None:
            call.cancel()
            await asyncio.wait([call])
        try:
            await self._release_at_meo(commitment)
        except BaseException:
            commitment.releasing = False
            raise
        self._drop(commitment)

    async def reconcile(self, deployments: Deployments) -> Reconciled:
        """At start, before serving: makes records and the MEO agree.

        * deployment records in flight at the restart (PENDING, TERMINATING)
          are rolled back / finished, READY ones whose MEO resources are gone
          are dropped (see :meth:`mef.deployments.Deployments.recover`);
        * commitments without a live deployment (accepted or deploying when
          the process died) are released;
        * provider-side services the MEO holds without a live record here
          are released at the MEO (``release(federation_id, consumer_id)``).

        Raises if the MEO cannot be reached; records stay, so calling again
        (or at the next start) finishes the job."""
        services = await self.orchestrator.list_services()
        at_meo = {
            (s.consumer_id, s.federation_id)
            for s in services
            if s.role == Role.PROVIDER and s.consumer_id
        }
        for s in services:
            if s.role == Role.PROVIDER and not s.consumer_id:
                log.warning("MEO holds provider service %s with no consumer id", s.federation_id)
        recovered = await deployments.recover(at_meo)
        rolled_back = list(recovered.rolled_back)
        for key in [k for k in self._commitments if k not in recovered.kept]:
            await self.release(key[1], key[0])
            rolled_back.append(key)
        done = {*recovered.kept, *rolled_back, *recovered.dropped, *recovered.finished}
        orphans = sorted(at_meo - done)
        for consumer_id, federation_id in orphans:
            await self.orchestrator.release(federation_id, consumer_id)
        result = Reconciled(
            kept=tuple(recovered.kept),
            rolled_back=tuple(rolled_back),
            dropped=tuple(recovered.dropped),
            orphans_released=tuple(orphans),
        )
        if rolled_back or recovered.dropped or orphans:
            log.warning("provider reconcile: %s", result)
        return result


def _cancelled_by_release(exc: BaseException, call: asyncio.Task[OverlayEndpoint]) -> bool:
    """The MEO call was cancelled by release(), not this task by its owner
    (a shutdown): that cancellation must still propagate."""
    task = asyncio.current_task()
    return (
        isinstance(exc, asyncio.CancelledError)
        and call.cancelled()
        and not (task is not None and task.cancelling())
    )


def _ledger_key(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


__all__ = ["QUOTE_TTL_MS", "Clock", "ProviderWorkflow", "Reconciled"]
