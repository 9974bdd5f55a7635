"""A federation and the messages of its workflow, free of any transport.

The consumer's MEF keeps one :class:`Federation` record per request; the
workflow moves :class:`ServiceNeed` (what the consumer asks to be priced),
:class:`Offer`, :class:`DeploymentOrder` and :class:`DeploymentResult`
between MEFs through whichever Mff transport it was built with.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Hashable
from dataclasses import dataclass, field, replace

from mecfed.errors import InvalidArgument, MecfedError
from mecfed.model import checks as c
from mecfed.model.app import AppSpec
from mecfed.model.orchestration import InstanceState
from mecfed.model.overlay import OverlayEndpoint, TrafficReport, TunnelCandidate, require_candidates


class FederationState(enum.IntEnum):
    """Values equal mecfed.v1.FederationState."""

    REQUESTED = 1
    COLLECTING_OFFERS = 2
    AWARDED = 3
    DEPLOYING = 4
    CONNECTING = 5
    VERIFYING = 6
    ESTABLISHED = 7
    FAILED = 8
    TERMINATED = 9
    DEGRADED = 10
    TERMINATING = 11

    @property
    def terminal(self) -> bool:
        """Settled: the workflow has nothing left to do (an ESTABLISHED
        federation may still move to DEGRADED and back, or be terminated)."""
        return self in (
            FederationState.ESTABLISHED,
            FederationState.DEGRADED,
            FederationState.FAILED,
            FederationState.TERMINATED,
        )

    @property
    def live(self) -> bool:
        """The service runs at the provider for the consumer."""
        return self in (FederationState.ESTABLISHED, FederationState.DEGRADED)


@dataclass(frozen=True, slots=True)
class Requirements:
    max_price: int
    offers_to_wait_for: int = 1
    offer_timeout_ms: int = c.DEFAULT_OFFER_TIMEOUT_MS

    def __post_init__(self) -> None:
        c.require_price(self.max_price, "max_price")
        c.require_range(self.offers_to_wait_for, "offers_to_wait_for", 1, c.MAX_OFFERS_TO_WAIT_FOR)
        c.require_range(self.offer_timeout_ms, "offer_timeout_ms", 1, c.MAX_OFFER_TIMEOUT_MS)


@dataclass(frozen=True, slots=True)
class FederationRequest:
    """What the local MEO asks its MEF for (Mfm RequestFederation)."""

    service_name: str
    app: AppSpec
    requirements: Requirements
    request_id: str = ""  # idempotency key

    def __post_init__(self) -> None:
        c.require_name(self.service_name, "service_name")
        if self.request_id:
            c.require_id(self.request_id, "request_id")


@dataclass(frozen=True, slots=True)
class ServiceNeed:
    """What a consumer asks providers to price: the announcement."""

    federation_id: str
    consumer_id: str
    app: AppSpec
    requirements: Requirements

    def __post_init__(self) -> None:
        c.require_id(self.federation_id, "federation_id")


@dataclass(frozen=True, slots=True)
class Offer:
    """A provider's price for a ServiceNeed. ``ref`` is the handle of the
    transport that made it (an offer id, a bid on the chain): an immutable
    value only that transport reads."""

    provider_id: str
    price: int
    ref: Hashable
    valid_until: float
    received_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class DeploymentOrder:
    """The consumer's half of the overlay, handed to the winning provider."""

    federation_id: str
    consumer_id: str
    app: AppSpec
    consumer_endpoint: OverlayEndpoint
    candidates: tuple[TunnelCandidate, ...]

    def __post_init__(self) -> None:
        c.require_id(self.federation_id, "federation_id")
        require_candidates(self.candidates, "candidates")


@dataclass(frozen=True, slots=True)
class OfferRequest:
    """A consumer's request for a price over Mff (direct backend)."""

    federation_id: str
    app: AppSpec
    max_price: int

    def __post_init__(self) -> None:
        c.require_id(self.federation_id, "federation_id")
        c.require_price(self.max_price, "max_price")


@dataclass(frozen=True, slots=True)
class Installation:
    """An InstallApp call: accept ``offer_id`` and deploy for it. On the
    chain backend ``offer_id`` is the service id of the auction the provider
    won and ``consumer_signature`` the consumer's signature over the order."""

    offer_id: str
    federation_id: str
    consumer_endpoint: OverlayEndpoint
    candidates: tuple[TunnelCandidate, ...]
    consumer_signature: bytes = b""

    def __post_init__(self) -> None:
        if not 1 <= len(self.offer_id) <= 128 or not self.offer_id.isprintable():
            raise InvalidArgument.field("offer_id", "is required (1..128 printable characters)")
        c.require_id(self.federation_id, "federation_id")
        require_candidates(self.candidates, "candidates")
        if len(self.consumer_signature) > 256:
            raise InvalidArgument.field("consumer_signature", "is longer than 256 bytes")


@dataclass(frozen=True, slots=True)
class DeploymentResult:
    app_instance_id: str
    provider_endpoint: OverlayEndpoint


@dataclass(frozen=True, slots=True)
class Problem:
    """MEC 040 ProblemDetails."""

    title: str
    status: int
    detail: str

    @classmethod
    def of(cls, exc: BaseException) -> Problem:
        if isinstance(exc, MecfedError):
            return cls(exc.title, exc.http_status, exc.message)
        return cls("Internal", 500, "internal error (see the federator's log)")


@dataclass(frozen=True, slots=True)
class AppInstanceDetails:
    """A provider's app instance as its consumer sees it (OPG.04)."""

    app_instance_id: str
    federation_id: str
    state: InstanceState
    provider_endpoint: OverlayEndpoint | None = None
    error: Problem | None = None
    deployment_notice: bytes = b""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    started_at: float
    finished_at: float

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of a federation: to which state, when, and why (for
    FAILED, DEGRADED and recoveries; "" otherwise)."""

    state: FederationState
    at: float
    reason: str = ""


# A federation that flaps between ESTABLISHED and DEGRADED for weeks must not
# grow without bound: the oldest transitions beyond this many are dropped
# (the first, REQUESTED, is kept so the record still says when it began).
MAX_HISTORY = 256


@dataclass(frozen=True, slots=True)
class Federation:
    """The consumer's record of one federation. Immutable: every change makes
    a new version, which is what watchers receive."""

    federation_id: str
    service_name: str
    app: AppSpec
    requirements: Requirements
    consumer_id: str
    backend: str
    state: FederationState = FederationState.REQUESTED
    provider_id: str = ""
    offers: tuple[Offer, ...] = ()
    price: int = 0
    app_instance_id: str = ""
    consumer_endpoint: OverlayEndpoint | None = None
    provider_endpoint: OverlayEndpoint | None = None
    traffic: TrafficReport | None = None
    steps: tuple[Step, ...] = ()
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    error: Problem | None = None
    # Every state transition, oldest first (see :meth:`evolve`).
    history: tuple[StateChange, ...] = ()
    # The latest runtime app-to-app measurement after establishment.
    liveness: TrafficReport | None = None

    def evolve(self, *, reason: str = "", **changes: object) -> Federation:
        """A new version with ``changes``; a change of ``state`` is appended
        to ``history`` with the time and ``reason``."""
        now = time.time()
        state = changes.get("state")
        if isinstance(state, FederationState) and state != self.state:
            history = (*self.history, StateChange(state, now, reason))
            if len(history) > MAX_HISTORY:
                history = (history[0], *history[len(history) - MAX_HISTORY + 1 :])
            changes["history"] = history
        changes.setdefault("updated_at", now)
        return replace(self, **changes)  # type: ignore[arg-type]


__all__ = [
    "AppInstanceDetails",
    "DeploymentOrder",
    "DeploymentResult",
    "Federation",
    "FederationRequest",
    "FederationState",
    "Installation",
    "Offer",
    "OfferRequest",
    "Problem",
    "Requirements",
    "ServiceNeed",
    "StateChange",
    "Step",
]
