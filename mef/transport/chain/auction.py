"""The consumer's side of the chain market: announce, collect bids, let the
contract award, hand the order to the winner, acknowledge or settle.

Announce (escrowing max_price, with bounded windows) → bids arrive as
BidPlaced events, each with the bidder's Mff contact sealed to us → the k-th
bid marks the auction Closing in its block (bids in that same block still
compete) and the winner is final once that block is mined (or the first
block past the bidding deadline closes it) → we hand the winner our order
directly over Mff gRPC, signed with our chain key, before the order
deadline, and it answers with a deployment notice signed with its chain key.
Our order (sealed to the winner) also goes on-chain, which binds the
winner's bond; the winner's confirmation (sealed to us) starts the challenge
window. The price is paid only when we acknowledge (after our traffic
check) or when the challenge window passes without our complaint; a
terminate before that is the complaint and refunds us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from opentelemetry.trace import Span, Tracer

from mecfed import tracing
from mecfed.chain.client import Event, Receipt
from mecfed.chain.federation import FederationContract, ServiceState, Windows
from mecfed.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    MecfedError,
    Unavailable,
)
from mecfed.model import (
    DeploymentOrder,
    DeploymentResult,
    Offer,
    ServiceNeed,
)
from mecfed.tracing import set_attributes, step_span
from mef.transport.chain import codec
from mef.transport.chain.chaintime import wait_chain_time
from mef.transport.chain.handoff import hand_off, keep_handing_off
from mef.transport.chain.maybe_sent import MaybeSent
from mef.transport.chain.payouts import Payouts
from mef.transport.chain.reasons import no_bid
from mef.transport.peer_client import PeerClient

log = logging.getLogger(__name__)

# The winner's deploy window (seconds from the order deadline to the confirm
# deadline) and our challenge window (from its confirmation).
CONFIRM_WINDOW_S = 300
CHALLENGE_WINDOW_S = 300
# Our order is handed over at once after the close; the window only has to
# survive slow blocks.
ORDER_WINDOW_S = 60
# Block timestamps are whole seconds and a loaded node lags: below this a
# provider that answers at once can still miss the deadline.
MIN_BIDDING_WINDOW_S = 4
# How long the announcement's receipt is awaited, and (the client's
# valid_for["announce"]) how long it stays wanted: the workflow's own timer
# gives solicit_offers offer_timeout + this (ChainTransport's offer_grace),
# so once it gave up the announcement is replaced by a no-op; one mined in
# that race is cancelled (mef.transport.chain.maybe_sent).
ANNOUNCE_TIMEOUT_S = 60.0
# Direct hand-off failures after which the on-chain path may still succeed:
# the winner is unreachable, or it is already deploying from the chain.
RETRY_ON_CHAIN = (Unavailable, DeadlineExceeded, FailedPrecondition)
# How long a winner that cannot be reached (directly or through the chain)
# is waited for after its direct hand-off failed, in seconds and in blocks
# (whichever is longer); meanwhile the hand-off is retried.
WINNER_SILENCE_S = 15.0
WINNER_SILENCE_BLOCKS = 5


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
        tracer: Tracer,
        *,
        confirm_window: int = CONFIRM_WINDOW_S,
        challenge_window: int = CHALLENGE_WINDOW_S,
        block_period: int | None = None,
    ) -> None:
        self.system_id = system_id
        self.contract = contract
        self.account = account
        self.peers = peers
        self.payouts = payouts
        self.tracer = tracer
        self.confirm_window = confirm_window
        self.challenge_window = challenge_window
        self._period = block_period
        self.auctions: dict[str, Auction] = {}  # federation id -> auction
        # Set by the transport: keeps announcements whose receipt wait gave up.
        self.maybe_sent: MaybeSent | None = None

    # --- chain time ---------------------------------------------------------

    async def block_period(self) -> int:
        """Whole seconds: configured, else measured from recent blocks."""
        if self._period is None:
            self._period = max(1, math.ceil(await self.contract.client.block_period()))
        return self._period

    async def wait_chain_time(self, timestamp: int) -> None:
        await wait_chain_time(self.contract.client, timestamp)

    # --- offers -------------------------------------------------------------

    async def solicit_offers(self, need: ServiceNeed) -> AsyncIterator[Offer]:
        period = await self.block_period()
        # Bids need blocks: a window shorter than a few block periods would
        # close before any provider could answer the announcement.
        window = max(
            math.ceil(need.requirements.offer_timeout_ms / 1000),
            3 * period,
            MIN_BIDDING_WINDOW_S,
        )
        windows = Windows(
            bidding=window,
            order=max(ORDER_WINDOW_S, 5 * period),
            deploy=self.confirm_window,
            challenge=self.challenge_window,
        )
        with step_span(self.tracer, "announce", bidding_window_s=window) as span:
            # The traceparent rides in the announcement: providers' spans
            # join this trace although no gRPC call carries it to them.
            requirements = codec.encode_requirements(
                need, self.system_id, tracing.inject_traceparent()
            )
            purpose = f"announce {need.federation_id}"
            watched = self.maybe_sent.watching if self.maybe_sent else _unwatched
            with watched(purpose, need.federation_id):  # maybe sent: we do not give up
                announced = await self.contract.announce(
                    need.requirements.max_price,
                    need.requirements.offers_to_wait_for,
                    windows,
                    requirements,
                    purpose=purpose,
                    timeout=ANNOUNCE_TIMEOUT_S,
                )
            tx_attributes(span, announced.receipt, service_id=announced.service_id)
        auction = Auction(announced.service_id, announced.bidding_deadline, announced.block_number)
        self.auctions[need.federation_id] = auction
        # A reorged bid is delivered as a removal and forgotten (the
        # contract, not these logs, picks the winner, so a Closing that is
        # reorged away only ends our reading of the logs early). No durable
        # cursor: nothing resumes an auction after a restart (the
        # settlement ends it from the chain), and a name per service would
        # leave one cursor row per auction in the journal.
        events = self.contract.events(
            ["BidPlaced", "ServiceClosing"],
            service_id=auction.service_id,
            from_block=auction.block,
            removals=True,
        )
        heads = self.contract.client.heads()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        last_head = announced.block_number
        blocks_seen = 0

        async def pump_events() -> None:
            async for event in events:
                await queue.put(event)

        async def pump_heads() -> None:
            nonlocal last_head, blocks_seen
            # Bidding ends with the first block at or past the deadline; no
            # block for a whole window plus slack is a stalled chain.
            stall = window + 3 * period + 5
            while True:
                try:
                    head = await asyncio.wait_for(anext(heads), stall)
                except TimeoutError:
                    raise Unavailable(
                        f"no offer: the chain stalled (no new block for {stall} s after "
                        f"block #{last_head}); the auction {auction.service_id} cannot end"
                    ) from None
                blocks_seen = head.number - announced.block_number
                last_head = head.number
                if head.timestamp >= auction.deadline:
                    await queue.put(None)
                    return

        pumps = [asyncio.create_task(pump_events()), asyncio.create_task(pump_heads())]
        running = set(pumps)
        seen: set[str] = set()
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, *running}, return_when=asyncio.FIRST_COMPLETED
                )
                for pump in done & running:
                    running.discard(pump)
                    if pump.exception() is not None:  # a stall, or a failed stream
                        getter.cancel()
                        pump.result()
                if getter not in done:
                    getter.cancel()
                    if not running and queue.empty():
                        break  # both streams ended: nothing more can come
                    continue
                event = getter.result()
                if event is not None and event.removed:
                    self._removed(auction, event, seen)
                    continue
                if event is None or event.name == "ServiceClosing":
                    break
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
            if not seen:
                raise await no_bid(self.contract, need, window, blocks_seen)
        finally:
            for pump in pumps:
                pump.cancel()
            await events.close()
            await heads.close()

    def _removed(self, auction: Auction, event: Event, seen: set[str]) -> None:
        """A bid reorged away is not counted (unless it is mined again)."""
        if event.name != "BidPlaced":
            return
        provider = str(event.args["provider"])
        offer = auction.bids.get(provider)
        if offer is not None and offer.price == int(event.args["price"]):
            del auction.bids[provider]
            seen.discard(provider)
            log.warning("%s: the bid of %s was reorged away", auction.service_id, provider)

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
            valid_until=auction.deadline + ORDER_WINDOW_S + self.confirm_window,
        )

    # --- award --------------------------------------------------------------

    def auction(self, federation_id: str) -> Auction:
        auction = self.auctions.get(federation_id)
        if auction is None:
            raise FailedPrecondition(f"{federation_id} was never announced")
        return auction

    async def _final(self, service_id: str) -> Any:
        """The service once no bid can change its winner: a Closing round
        is final at the end of its closing block (already mined when we read
        it); an Open one with bids at its deadline."""
        view = await self.contract.service(service_id)
        if view.state == ServiceState.OPEN and view.bid_count:
            await self.wait_chain_time(view.deadline)
            view = await self.contract.service(service_id)
        return view

    async def award(self, need: ServiceNeed, failed: Sequence[Offer]) -> Offer | None:
        """The contract, not our reading of the logs, decides the winner."""
        auction = self.auction(need.federation_id)
        if failed and not await self._reawarded(auction, failed[-1]):
            return None
        view = await self._final(auction.service_id)
        if not view.state.awarded:
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
        starts a new round) and for the new round to end. False if it never
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
                if view.state.awarded:
                    auction.deadline = view.deadline
                    return True
                if view.state != ServiceState.OPEN or head.timestamp >= view.deadline:
                    return False  # a new round, and it got no bid
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
        auction = self.auction(order.federation_id)
        view = await self.contract.service(ref.service_id)
        if (await self.contract.client.head()).timestamp > view.order_deadline:
            raise DeadlineExceeded(
                f"the order window of {ref.service_id} closed at {view.order_deadline}"
            )
        sealed = codec.seal_order(
            provider.pubkey,
            codec.SealedOrder(order.federation_id, order.consumer_endpoint, order.candidates),
        )
        slow = asyncio.create_task(self._await_confirmation(auction, ref.provider))
        # The on-chain record of our order: binds the winner's bond, and is
        # the winner's slow path.
        on_chain = asyncio.create_task(self.contract.send_consumer_endpoint(ref.service_id, sealed))

        def hand() -> Coroutine[Any, Any, DeploymentResult]:
            return hand_off(self.peers, self.account, self.tracer, ref, order, timeout)

        fast = asyncio.create_task(hand())
        try:
            done, _ = await asyncio.wait(
                {fast, slow}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if fast in done and fast.exception() is None:
                return fast.result()
            if fast in done and not isinstance(fast.exception(), RETRY_ON_CHAIN):
                raise fast.exception()  # type: ignore[misc]  # the winner tried and failed
            if fast in done:
                # The winner may be down: bounded, so that the workflow can
                # fall back instead of waiting out the whole deployment time.
                silence = max(WINNER_SILENCE_S, WINNER_SILENCE_BLOCKS * await self.block_period())
                log.warning(
                    "%s: direct hand-off failed (%s); retrying it and waiting for the chain "
                    "for %.0f s",
                    ref.service_id,
                    fast.exception(),
                    silence,
                )
                fast = asyncio.create_task(keep_handing_off(hand, silence, RETRY_ON_CHAIN))
                done, _ = await asyncio.wait(
                    {fast, slow}, timeout=silence, return_when=asyncio.FIRST_COMPLETED
                )
                if fast in done and fast.exception() is None:
                    return fast.result()
                if slow not in done:
                    raise Unavailable(
                        f"{offer.provider_id} was awarded but could not be reached for "
                        f"{silence:.0f} s, neither directly nor through the chain"
                    )
            if slow in done:
                return slow.result()
            raise DeadlineExceeded(f"{offer.provider_id} did not deploy within {timeout:.0f} s")
        finally:
            for task in (fast, slow):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            # The order must be on-chain before we leave: a terminate that
            # follows must see it (and it may revert once the service moved on).
            with contextlib.suppress(MecfedError):
                await on_chain

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

    async def acknowledge(self, service_id: str, from_block: int) -> None:
        """Our traffic check passed: release the price once the winner's
        confirmation is on-chain (the direct hand-off comes before it)."""
        view = await self.contract.service(service_id)
        if view.state.awarded:
            now = (await self.contract.client.head()).timestamp
            wait = max(1, view.confirm_deadline - now) + 3 * await self.block_period()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._await_confirmation(Auction(service_id, 0, from_block), view.winner),
                    wait,
                )
            view = await self.contract.service(service_id)
        if view.state == ServiceState.ACKNOWLEDGED:
            return  # the challenge window passed: paid without us
        if view.state != ServiceState.DEPLOYED:
            raise FailedPrecondition(f"{service_id} is {view.state.name}: nothing to acknowledge")
        with step_span(self.tracer, "acknowledge", service_id=service_id) as span:
            receipt = await self.contract.acknowledge(service_id)
            tx_attributes(span, receipt)
        await self.payouts.withdraw()


def _unwatched(purpose: str, federation_id: str) -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def _ref(offer: Offer) -> BidRef:
    if not isinstance(offer.ref, BidRef):
        raise FailedPrecondition(f"offer of {offer.provider_id} was not made on the chain")
    return offer.ref


__all__ = ["Auction", "BidRef", "ConsumerAuction"]
