"""The consumer's side of the chain market: announce, collect bids, let the
contract award, hand the order to the winner, settle.

Announce (escrowing max_price) → bids arrive as BidPlaced events, each with
the bidder's Mff contact sealed to us → the k-th bid closes the auction
on-chain in its own transaction (or the first block past the bidding
deadline does) → we hand the winner our order directly over Mff gRPC, signed
with our chain key, and it answers with a deployment notice signed with its
chain key, so we connect before any further block. The on-chain record stays
complete: our order (sealed to the winner) and the winner's confirmation
(sealed to us) follow in the next block, off the critical path; they are
also the slow path when the winner cannot be reached directly. A winner
that fails declines on-chain and the contract awards the auction anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from opentelemetry.trace import Span, Tracer

from mecfed import tracing
from mecfed.chain.client import Event, Receipt
from mecfed.chain.federation import FederationContract, ServiceState
from mecfed.chain.sealing import sign_message, verify_signer
from mecfed.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    MecfedError,
    Unavailable,
)
from mecfed.model import (
    DeploymentOrder,
    DeploymentResult,
    Federation,
    Installation,
    Offer,
    ServiceNeed,
)
from mecfed.tracing import set_attributes, step_span
from mef.tasks import TaskSet
from mef.transport.chain import codec
from mef.transport.chain.payouts import Payouts
from mef.transport.peer_client import PeerClient, PeerContact

log = logging.getLogger(__name__)

CONFIRM_WINDOW_S = 300
# Block timestamps are whole seconds and a loaded node lags: below this a
# provider that answers at once can still miss the deadline.
MIN_BIDDING_WINDOW_S = 4
# Direct hand-off failures after which the on-chain path may still succeed:
# the winner is unreachable, or it is already deploying from the chain.
RETRY_ON_CHAIN = (Unavailable, DeadlineExceeded, FailedPrecondition)


@dataclass(frozen=True)
class BidRef:
    """``Offer.ref`` on the chain: which bid, and how to reach its bidder."""

    service_id: str
    provider: str  # chain address
    contact: codec.MffContact


@dataclass
class Auction:
    """The consumer's view of one announced service."""

    service_id: str
    deadline: int
    block: int
    winner: str = ""
    contact: codec.MffContact | None = None
    bids: dict[str, Offer] = field(default_factory=dict)  # latest bid per provider


def tx_attributes(span: Span, receipt: Receipt, **extra: Any) -> None:
    set_attributes(
        span,
        tx_hash=receipt.tx_hash,
        block=receipt.block_number,
        gas_used=receipt.gas_used,
        **extra,
    )


class ConsumerAuction:
    def __init__(
        self,
        system_id: str,
        contract: FederationContract,
        account: LocalAccount,
        peers: PeerClient,
        payouts: Payouts,
        tasks: TaskSet,
        tracer: Tracer,
        *,
        confirm_window: int = CONFIRM_WINDOW_S,
        block_period: int | None = None,
    ) -> None:
        self.system_id = system_id
        self.contract = contract
        self.account = account
        self.peers = peers
        self.payouts = payouts
        self.tasks = tasks
        self.tracer = tracer
        self.confirm_window = confirm_window
        self._period = block_period
        self._auctions: dict[str, Auction] = {}  # federation id -> auction

    # --- chain time ---------------------------------------------------------

    async def block_period(self) -> int:
        """Whole seconds: configured, else measured from recent blocks."""
        if self._period is None:
            self._period = max(1, math.ceil(await self.contract.client.block_period()))
        return self._period

    async def wait_chain_time(self, timestamp: int) -> None:
        """Until a block at or past ``timestamp`` exists."""
        heads = self.contract.client.heads()
        try:
            if (await self.contract.client.head()).timestamp >= timestamp:
                return
            async for head in heads:
                if head.timestamp >= timestamp:
                    return
        finally:
            await heads.close()

    # --- offers -------------------------------------------------------------

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        # Bids need blocks: a window shorter than a few block periods would
        # close before any provider could answer the announcement.
        window = max(
            math.ceil(need.requirements.offer_timeout_ms / 1000),
            3 * await self.block_period(),
            MIN_BIDDING_WINDOW_S,
        )
        with step_span(self.tracer, "announce", bidding_window_s=window) as span:
            # The traceparent rides in the announcement: providers' spans
            # join this trace although no gRPC call carries it to them.
            requirements = codec.encode_requirements(
                need, self.system_id, tracing.inject_traceparent()
            )
            announced = await self.contract.announce(
                need.requirements.max_price,
                need.requirements.offers_to_wait_for,
                window,
                self.confirm_window,
                requirements,
            )
            tx_attributes(span, announced.receipt, service_id=announced.service_id)
        auction = Auction(announced.service_id, announced.bidding_deadline, announced.block_number)
        self._auctions[need.federation_id] = auction
        events = self.contract.events(
            ["BidPlaced", "ServiceAwarded"],
            service_id=auction.service_id,
            from_block=auction.block,
        )
        heads = self.contract.client.heads()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        async def pump_events() -> None:
            async for event in events:
                await queue.put(event)

        async def pump_heads() -> None:
            # Bidding ends with the first block at or past the deadline.
            async for head in heads:
                if head.timestamp >= auction.deadline:
                    await queue.put(None)
                    return

        pumps = [asyncio.create_task(pump_events()), asyncio.create_task(pump_heads())]
        seen: set[str] = set()
        try:
            while (event := await queue.get()) is not None:
                if event.name == "ServiceAwarded":
                    auction.winner = str(event.args["provider"])
                    return
                provider = str(event.args["provider"])
                try:
                    offer = await self._offer_from_bid(auction, event)
                except MecfedError as exc:
                    log.warning("%s: unusable bid from %s: %s", auction.service_id, provider, exc)
                    continue
                auction.bids[provider] = offer
                if provider not in seen:  # a lowered re-bid: award() reads the contract
                    seen.add(provider)
                    yield offer
        finally:
            for pump in pumps:
                pump.cancel()
            await events.close()
            await heads.close()

    async def _offer_from_bid(self, auction: Auction, event: Event) -> Offer:
        provider = str(event.args["provider"])
        member = await self.contract.member(provider)
        if member is None:
            raise FailedPrecondition(f"bidder {provider} is no longer a member")
        contact = codec.open_contact(self.account, bytes(event.args["sealedEndpoint"]))
        return Offer(
            provider_id=member.name,
            price=int(event.args["price"]),
            ref=BidRef(auction.service_id, provider, contact),
            valid_until=auction.deadline + self.confirm_window,
        )

    # --- award --------------------------------------------------------------

    def auction(self, federation_id: str) -> Auction:
        auction = self._auctions.get(federation_id)
        if auction is None:
            raise FailedPrecondition(f"{federation_id} was never announced")
        return auction

    async def award(self, need: ServiceNeed, failed: Sequence[Offer]) -> Offer | None:
        """The contract, not our reading of the logs, decides the winner."""
        auction = self.auction(need.federation_id)
        if failed:
            if not await self._reawarded(auction, failed[-1]):
                return None
        elif await self.contract.state(auction.service_id) != ServiceState.AWARDED:
            # Fewer than k bids: the auction closes by itself once a block at
            # or past the deadline exists; no transaction is needed for that.
            await self.wait_chain_time(auction.deadline)
        view = await self.contract.service(auction.service_id)
        if view.state != ServiceState.AWARDED:
            return None  # no bids at all
        auction.winner = view.winner
        offer = auction.bids.get(view.winner)
        if offer is None or offer.price != view.best_price:
            offer = await self._bid_from_logs(auction, view.winner)
        auction.contact = _ref(offer).contact
        log.info(
            "%s: the contract awarded %s at %s", auction.service_id, offer.provider_id, offer.price
        )
        return offer

    async def _reawarded(self, auction: Auction, failed: Offer) -> bool:
        """After a failed winner: waits for it to decline (the contract then
        reopens the auction) and for the new round to end. False if it never
        declines (unreachable winner) or nobody bids again."""
        period = await self.block_period()
        view = await self.contract.service(auction.service_id)
        old_round = view.round
        declined_by = asyncio.get_running_loop().time() + 3 * period + 10
        heads = self.contract.client.heads()
        try:
            async for head in heads:
                view = await self.contract.service(auction.service_id)
                if view.round == old_round:
                    if asyncio.get_running_loop().time() > declined_by:
                        log.warning(
                            "%s: %s did not decline", auction.service_id, failed.provider_id
                        )
                        return False
                    continue
                if view.state == ServiceState.AWARDED:
                    auction.deadline = view.deadline
                    return True
                if view.state != ServiceState.OPEN or head.timestamp >= view.deadline:
                    return False  # reopened, and the new round got no bid
        finally:
            await heads.close()
        return False

    async def _bid_from_logs(self, auction: Auction, provider: str) -> Offer:
        """The provider's latest bid, read back from the chain."""
        events = await self.contract.past_events(
            ["BidPlaced"],
            service_id=auction.service_id,
            provider=provider,
            from_block=auction.block,
        )
        if not events:
            raise FailedPrecondition(f"no bid of the winner {provider} on {auction.service_id}")
        offer = await self._offer_from_bid(auction, events[-1])
        auction.bids[provider] = offer
        return offer

    # --- deployment -----------------------------------------------------------

    async def deploy(
        self, offer: Offer, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        ref = _ref(offer)
        provider = await self.contract.member(ref.provider)
        if provider is None:
            raise FailedPrecondition(f"the winner {ref.provider} is no longer a member")
        sealed = codec.seal_order(
            provider.pubkey,
            codec.SealedOrder(order.federation_id, order.consumer_endpoint, order.candidates),
        )
        auction = self.auction(order.federation_id)
        slow = asyncio.create_task(self._await_confirmation(auction, ref.provider))
        # The on-chain record of our order; also the winner's slow path.
        self.tasks.spawn(
            self.contract.send_consumer_endpoint(ref.service_id, sealed),
            f"sendConsumerEndpoint {ref.service_id}",
        )
        fast = asyncio.create_task(self._hand_off(ref, order, timeout))
        try:
            done, _ = await asyncio.wait(
                {fast, slow}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if fast in done and fast.exception() is None:
                return fast.result()
            if fast in done and not isinstance(fast.exception(), RETRY_ON_CHAIN):
                raise fast.exception()  # type: ignore[misc]  # the winner tried and failed
            if fast in done:
                log.warning(
                    "%s: direct hand-off failed (%s); waiting for the chain",
                    ref.service_id,
                    fast.exception(),
                )
                done, _ = await asyncio.wait({slow}, timeout=timeout)
            if slow in done:
                return slow.result()
            raise DeadlineExceeded(f"{offer.provider_id} did not deploy within {timeout:.0f} s")
        finally:
            for task in (fast, slow):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def _hand_off(
        self, ref: BidRef, order: DeploymentOrder, timeout: float
    ) -> DeploymentResult:
        digest = codec.order_digest(
            ref.service_id, order.federation_id, order.consumer_endpoint, order.candidates
        )
        installation = Installation(
            offer_id=ref.service_id,
            federation_id=order.federation_id,
            consumer_endpoint=order.consumer_endpoint,
            candidates=order.candidates,
            consumer_signature=sign_message(self.account, digest),
        )
        with step_span(
            self.tracer, "handoff", provider=ref.contact.name, service_id=ref.service_id
        ):
            details = await self.peers.install(
                PeerContact(ref.contact.endpoint, ref.contact.name), installation, timeout
            )
        endpoint = details.provider_endpoint
        assert endpoint is not None  # READY carries it (checked at the wire)
        verify_signer(
            codec.notice_digest(ref.service_id, endpoint), details.deployment_notice, ref.provider
        )
        return DeploymentResult(details.app_instance_id, endpoint)

    async def _await_confirmation(self, auction: Auction, provider: str) -> DeploymentResult:
        events = self.contract.events(
            ["DeploymentConfirmed"],
            service_id=auction.service_id,
            provider=provider,
            from_block=auction.block,
        )
        try:
            async for event in events:
                endpoint = codec.open_confirmation(
                    self.account, bytes(event.args["sealedEndpoint"])
                )
                return DeploymentResult(auction.service_id, endpoint)
        finally:
            await events.close()
        raise DeadlineExceeded(f"no confirmation of {auction.service_id}")

    # --- settlement -------------------------------------------------------------

    async def terminate(self, federation: Federation) -> None:
        """Ends the service on-chain from whatever state it reached, so no
        escrow stays locked: Deployed → terminate, Open → cancel, Awarded to
        a winner that never confirmed → cancel once its confirm window is
        over (in the background)."""
        auction = self._auctions.get(federation.federation_id)
        if auction is None:
            return  # never announced: nothing on the chain
        if federation.app_instance_id and auction.contact is not None:
            # Ask the provider directly too, so it need not wait for a block.
            with contextlib.suppress(MecfedError):
                await self.peers.remove(
                    PeerContact(auction.contact.endpoint, auction.contact.name),
                    federation.app_instance_id,
                    timeout=30,
                )
        service_id = auction.service_id
        state = await self.contract.state(service_id)
        if state == ServiceState.AWARDED and federation.app_instance_id and auction.winner:
            # A direct hand-off succeeded; its on-chain confirmation is due.
            with contextlib.suppress(MecfedError, TimeoutError):
                await asyncio.wait_for(
                    self._await_confirmation(auction, auction.winner),
                    3 * await self.block_period() + 5,
                )
            state = await self.contract.state(service_id)
        if state == ServiceState.DEPLOYED:
            await self.contract.terminate(service_id)
        elif state == ServiceState.OPEN:
            await self.contract.cancel(service_id)
        elif state == ServiceState.AWARDED:
            self.tasks.spawn(self._recover_escrow(service_id), f"escrow {service_id}")
            return
        self.tasks.spawn(self.payouts.withdraw(), "withdraw")

    async def _recover_escrow(self, service_id: str) -> None:
        view = await self.contract.service(service_id)
        await self.wait_chain_time(view.confirm_deadline + 1)
        # Past the confirm deadline an unconfirmed award can be cancelled.
        await self.contract.cancel(service_id)
        await self.payouts.withdraw()


def _ref(offer: Offer) -> BidRef:
    if not isinstance(offer.ref, BidRef):
        raise FailedPrecondition(f"offer of {offer.provider_id} was not made on the chain")
    return offer.ref


__all__ = ["Auction", "BidRef", "ConsumerAuction"]
