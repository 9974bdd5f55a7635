"""The Mff transport interface, with explicit capabilities.

The federation workflow (:mod:`mef.workflow`) is written once against
:class:`MffTransport`. A transport only moves the workflow's messages between
MEFs — the direct transport over peer-to-peer gRPC, the chain transport
through the Federation contract — and says up front what it can do
(:class:`Capabilities`) and how the provider's Mff server admits orders
(:class:`OrderGate`). Nothing is discovered with ``getattr``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mecfed.model import (
    AppSpec,
    DeploymentOrder,
    DeploymentResult,
    Federation,
    Installation,
    Offer,
    OverlayEndpoint,
    ServiceNeed,
)

if TYPE_CHECKING:
    from mef.deployments import Deployment, Deployments


class Fallback(enum.Enum):
    """Who picks the next provider when the winner fails to deploy."""

    #: The workflow tries its next-cheapest offer (direct: every offer is a
    #: standing quote the consumer may accept).
    NEXT_OFFER = "next_offer"
    #: The market decides again: after a failure, ``award()`` returns the
    #: winner the market chose next (chain: the failed winner declines, the
    #: contract reopens the auction and awards it anew).
    MARKET = "market"


class CallerPolicy(enum.Enum):
    """Who may call the provider's Mff server (FederationPeer)."""

    #: Only pre-registered peers (direct backend).
    REGISTERED_PEERS = "registered_peers"
    #: Any caller with a certificate of the trusted CA: every order must
    #: carry the consumer's chain signature, which the gate checks against
    #: the contract (chain backend; no prior trust between operators).
    ANY_AUTHENTICATED = "any_authenticated"


@dataclass(frozen=True)
class Capabilities:
    #: Seconds the workflow waits for offers beyond ``offer_timeout_ms``:
    #: room for an auction that ends by itself (0 where the workflow's own
    #: timer is the deadline).
    offer_grace: float
    fallback: Fallback


@dataclass(frozen=True)
class Admission:
    """An order the gate let through: for whom to deploy, against which
    offer, and who may watch and remove the result."""

    consumer_id: str  # system id (direct) or chain address (chain)
    offer_ref: str
    caller: str  # the TLS identity that placed the order


class OrderGate(Protocol):
    """How the provider's Mff server admits orders (InstallApp), and what it
    does once a deployment is ready or has failed."""

    @property
    def callers(self) -> CallerPolicy: ...

    @property
    def serves_offers(self) -> bool:
        """Whether RequestOffer is served over Mff (direct) or prices go
        elsewhere (chain: bids in the contract)."""
        ...

    async def admit(self, installation: Installation, caller: str) -> Admission:
        """Raises (PermissionDenied, FailedPrecondition) when it refuses."""
        ...

    async def deployed(self, deployment: Deployment) -> bytes:
        """Called once the deployment is ready; returns the deployment notice
        handed back with READY (b"" if the transport has none)."""
        ...

    async def failed(self, deployment: Deployment) -> None:
        """Called once a deployment failed (already rolled back)."""
        ...


class ProviderHandler(Protocol):
    """The provider's side of the workflow, as transports see it
    (implemented by :class:`mef.workflow.provider.ProviderWorkflow`)."""

    async def quote(self, need: ServiceNeed, *, binding: bool = False) -> Offer:
        """Prices ``need`` or raises (ResourceExhausted, FailedPrecondition).
        ``binding``: the offer can be taken without asking again (a bid), so
        it holds capacity until accepted, withdrawn or expired."""
        ...

    def withdraw(self, offer_ref: str) -> None:
        """Forgets an offer that lost."""
        ...

    async def accept(self, offer_ref: str, consumer_id: str, federation_id: str) -> AppSpec:
        """Commits capacity for an offer made to this consumer for this
        federation; returns the app that was priced."""
        ...

    async def deploy(self, order: DeploymentOrder) -> OverlayEndpoint:
        """Deploys an accepted order; on failure rolls back and frees capacity."""
        ...

    async def release(self, federation_id: str, consumer_id: str) -> None:
        """Removes what was deployed for the federation (idempotent)."""
        ...


class MffTransport(Protocol):
    """Moves workflow messages between federators."""

    @property
    def name(self) -> str:
        """ "direct" or "chain"; reported in every Federation."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def gate(self) -> OrderGate: ...

    async def start(
        self, provider: ProviderHandler, deployments: Deployments, mff_endpoint: str
    ) -> None:
        """Begins delivering other systems' requests: priced by ``provider``,
        deployed through ``deployments`` (the registry every deployment of
        this provider goes through); ``mff_endpoint`` (host:port) is where
        our Mff server listens."""
        ...

    async def close(self) -> None: ...

    def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        """Publishes ``need`` and yields offers as they arrive. Ends when no
        further offer can come; the workflow stops reading once it has enough
        or its deadline passes (then it closes the iterator)."""
        ...

    async def award(
        self, need: ServiceNeed, ranked: Sequence[Offer], failed: Sequence[Offer]
    ) -> Offer | None:
        """The offer to deploy next: ``ranked`` is the workflow's ranking of
        the offers received, ``failed`` the winners that failed so far. None
        when no further winner exists."""
        ...

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        """Asks the winner to deploy and waits for its result. Raises
        DeploymentFailed (the provider reported failure), Unavailable or
        DeadlineExceeded."""
        ...

    async def terminate(self, federation: Federation) -> None:
        """Settles whatever the transport holds for ``federation``: asks the
        provider to tear its side down and releases escrow (if any).

        Idempotent, and callable in any state, also after a restart with only
        the durable record (the app instance id may be unknown: the provider
        is then asked by federation id). Returns once the provider side
        acknowledged (or the chain recorded it); raises Unavailable or
        DeadlineExceeded when that is not known yet, and the workflow retries
        until it is."""
        ...

    async def reconcile(self, live_federation_ids: set[str]) -> None:
        """Called once at start, after the workflow recovered its records:
        whatever the transport holds for a federation not in
        ``live_federation_ids`` is settled (chain: every service of ours is
        ended and its escrow recovered, credits withdrawn; direct: nothing)."""
        ...

    async def established(self, federation: Federation) -> None:
        """Called once the consumer verified app-to-app traffic: the point at
        which the provider has earned its price (chain: the consumer's
        on-chain acknowledgement releases it; direct: nothing to do)."""
        ...

    def health(self) -> str | None:
        """None when the transport can act; otherwise why not (e.g. "chain
        client wedged: nonce gap at 12 for 40 s", "chain reset: no contract
        code at 0x…"). Readiness (gRPC health) reports NOT_SERVING then."""
        ...


__all__ = [
    "Admission",
    "CallerPolicy",
    "Capabilities",
    "Fallback",
    "MffTransport",
    "OrderGate",
    "ProviderHandler",
]
