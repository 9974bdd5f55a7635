"""The direct Mff transport: peer-to-peer gRPC between pre-registered MEFs
(the reference paper's "SOA" baseline), mutual TLS with one certificate per
system. The consumer asks every registered peer for an offer at once and
accepts the one the workflow ranks first; the provider's side is the shared
Mff server (mef.transport.peer_service) behind :class:`TlsGate`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from mecfed.errors import MecfedError, NotFound, ResourceExhausted, Unavailable
from mecfed.model import (
    DeploymentOrder,
    DeploymentResult,
    Federation,
    Installation,
    Offer,
    OfferRequest,
    ServiceNeed,
)
from mef.deployments import Deployment, Deployments
from mef.peers import PeerBook
from mef.transport.base import (
    Admission,
    CallerPolicy,
    Capabilities,
    Fallback,
    ProviderHandler,
)
from mef.transport.peer_client import DEFAULT_SILENCE, PeerClient, PeerContact

log = logging.getLogger(__name__)


class TlsGate:
    """Direct backend: the caller's certificate names the consumer, and the
    offer id names the offer it accepts."""

    callers = CallerPolicy.REGISTERED_PEERS
    serves_offers = True

    async def admit(self, installation: Installation, caller: str) -> Admission:
        return Admission(consumer_id=caller, offer_ref=installation.offer_id, caller=caller)

    async def deployed(self, deployment: Deployment) -> bytes:
        return b""

    async def failed(self, deployment: Deployment) -> None:
        return None


class DirectTransport:
    name = "direct"
    capabilities = Capabilities(offer_grace=0.0, fallback=Fallback.NEXT_OFFER)

    def __init__(
        self,
        peers: PeerBook,
        client: PeerClient,
        *,
        provider_silence: float = DEFAULT_SILENCE,
        remove_timeout: float = 10.0,
    ) -> None:
        self.gate = TlsGate()
        self._peers = peers
        self._client = client
        # A provider unheard from this long during a deployment is given up
        # (the workflow falls back to its next offer and releases this one).
        self.provider_silence = provider_silence
        self._remove_timeout = remove_timeout

    def _contact(self, system_id: str) -> PeerContact:
        return PeerContact(self._peers.get(system_id).endpoint, system_id)

    async def start(
        self, provider: ProviderHandler, deployments: Deployments, mff_endpoint: str
    ) -> None:
        # Incoming calls arrive through the Mff server; open channels early so
        # TLS set-up is off the critical path.
        for peer in self._peers:
            self._client.stub(self._contact(peer.system_id))

    async def close(self) -> None:
        await self._client.close()

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        timeout = need.requirements.offer_timeout_ms / 1000
        request = OfferRequest(need.federation_id, need.app, need.requirements.max_price)

        async def ask(peer_id: str) -> Offer | None:
            try:
                quote = await self._client.request_offer(self._contact(peer_id), request, timeout)
            except MecfedError as exc:
                # A peer that declines, is down or too slow is skipped (and
                # named if nobody offers).
                log.debug("%s: no offer from %s: %s", need.federation_id, peer_id, exc)
                raise
            if quote.provider_id != peer_id:
                log.warning("%s answered as %r; ignored", peer_id, quote.provider_id)
                return None
            return Offer(peer_id, quote.price, quote.offer_id, quote.valid_until)

        declined: dict[str, MecfedError] = {}

        async def ask_and_note(peer_id: str) -> Offer | None:
            try:
                return await ask(peer_id)
            except MecfedError as exc:
                declined[peer_id] = exc
                return None

        tasks = [asyncio.create_task(ask_and_note(p.system_id)) for p in self._peers]
        offered = 0
        try:
            for next_done in asyncio.as_completed(tasks):
                offer = await next_done
                if offer is not None:
                    offered += 1
                    yield offer
        finally:
            for task in tasks:
                task.cancel()
        if not offered:
            raise no_offer_error(declined, len(tasks))

    async def award(
        self, need: ServiceNeed, ranked: Sequence[Offer], failed: Sequence[Offer]
    ) -> Offer | None:
        """The workflow's ranking decides; nothing to send (InstallApp accepts)."""
        return next((o for o in ranked if o not in failed), None)

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        installation = Installation(
            offer_id=str(offer.ref),
            federation_id=order.federation_id,
            consumer_endpoint=order.consumer_endpoint,
            candidates=order.candidates,
        )
        details = await self._client.install(
            self._contact(offer.provider_id), installation, timeout, self.provider_silence
        )
        assert details.provider_endpoint is not None  # READY carries it (wire checks)
        return DeploymentResult(details.app_instance_id, details.provider_endpoint)

    async def reconcile(self, live_federation_ids: set[str]) -> None:
        return None

    async def established(self, federation: Federation) -> None:
        return None

    def health(self) -> str | None:
        return None

    async def terminate(self, federation: Federation) -> None:
        """Asks the provider to remove its side, by app instance id or, when
        that was never learnt (terminated or restarted during DEPLOYING), by
        federation id. NotFound means the provider holds nothing: released.
        Unavailable/DeadlineExceeded when it cannot be reached (retried)."""
        if not federation.provider_id:
            return  # nobody was awarded: nothing to release
        try:
            contact = self._contact(federation.provider_id)
        except NotFound:
            raise Unavailable(
                f"provider {federation.provider_id} is not a registered peer (any more)"
            ) from None
        try:
            await self._client.remove(
                contact,
                federation.app_instance_id,
                self._remove_timeout,
                federation_id=federation.federation_id,
            )
        except NotFound:
            return


def no_offer_error(declined: dict[str, MecfedError], asked: int) -> MecfedError:
    """Why no peer offered: at capacity (ResourceExhausted) when any said so,
    otherwise Unavailable naming each peer's answer."""
    if not asked:
        return Unavailable("no peer is registered to ask for an offer")
    reasons = "; ".join(f"{peer}: {exc.message}" for peer, exc in sorted(declined.items()))
    silent = asked - len(declined)
    if silent:
        reasons += f"{'; ' if reasons else ''}{silent} peer(s) did not answer"
    if any(isinstance(exc, ResourceExhausted) for exc in declined.values()):
        return ResourceExhausted(f"providers declined: {reasons}")
    return Unavailable(f"no provider offered: {reasons}")


__all__ = ["DirectTransport", "TlsGate", "no_offer_error"]
