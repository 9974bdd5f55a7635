"""The Mff transport interface.

The federation workflow (mef.workflow) is written once against these two
protocols. A transport carries the workflow's messages between MEFs: the
direct transport over peer-to-peer gRPC, the chain transport through the
Federation smart contract. Transports hold no workflow decisions (who wins,
when to give up): they only move needs, offers, orders and results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from mef.domain import (
    AppSpec,
    DeploymentOrder,
    DeploymentResult,
    Offer,
    ServiceNeed,
)


class ProviderHandler(Protocol):
    """What a transport calls when another system wants something from us.
    Implemented by mef.workflow.ProviderWorkflow."""

    async def quote(self, need: ServiceNeed, binding: bool = False) -> Offer:
        """Price ``need`` or raise (ResourceExhausted, FailedPrecondition).
        ``binding``: the offer can be taken without asking again (a bid)."""
        ...

    def withdraw(self, offer_ref: str) -> None:
        """Forget an offer that lost."""
        ...

    async def accept(self, offer_ref: str, consumer_id: str, federation_id: str) -> AppSpec:
        """Check that ``offer_ref`` was made to this consumer for this
        federation and is still valid; commit capacity for it. Returns the
        app that was priced. Raises (FailedPrecondition, PermissionDenied,
        ResourceExhausted) when it refuses."""
        ...

    async def deploy(self, order: DeploymentOrder) -> DeploymentResult:
        """Deploy the app and our end of the overlay for an accepted offer;
        on failure everything is rolled back and the capacity freed."""
        ...

    async def release(self, federation_id: str, consumer_id: str) -> None:
        """Remove everything deployed for the federation (idempotent)."""
        ...


class MffTransport(Protocol):
    """Moves workflow messages between federators."""

    #: "direct" or "chain"; reported in every Federation.
    name: str
    #: Seconds the workflow waits for offers beyond offer_timeout_ms, for
    #: transports whose bidding ends by itself (0 where the workflow's timer
    #: is the deadline).
    offer_grace: float

    async def start(self, provider: ProviderHandler, mff_endpoint: str) -> None:
        """Begin delivering other systems' requests to ``provider``;
        ``mff_endpoint`` (host:port) is where our Mff gRPC server listens."""
        ...

    async def close(self) -> None: ...

    def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        """Publish ``need`` and yield offers as they arrive. The iterator ends
        when no further offer can come; the workflow stops reading once it
        has enough or its deadline passes (then it closes the iterator)."""
        ...

    async def award(self, need: ServiceNeed, offer: Offer) -> Offer:
        """Record the winner (a no-op where accepting happens in deploy) and
        return the offer that actually won: where an auction decides (the
        chain), that may differ from the workflow's own ranking."""
        ...

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        """Ask the winner to deploy and wait for its result. Raises
        DeploymentFailed (provider reported failure) or DeadlineExceeded."""
        ...

    async def terminate(self, federation_id: str, provider_id: str, app_instance_id: str) -> None:
        """Ask the provider to tear its side down."""
        ...
