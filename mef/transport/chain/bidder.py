"""The provider's side of the chain market: bid on announcements (each
first bid on a service carries the announced bond), deploy what it won,
confirm, get paid when the consumer acknowledges or the challenge window
passes, decline what it could not deploy, reclaim the bonds of lost bids.

Every ServiceAnnounced event is priced by the provider workflow and answered
with a bid carrying our Mff contact sealed to the consumer. Orders reach the
provider's deployments registry either over Mff gRPC (admitted by the
:class:`~mef.transport.chain.gate.ChainGate`) or, on the slow path, from a
ConsumerEndpoint event; both go through the same registry. A bid that lost
frees the capacity its quote held and its bond is reclaimed; a reopened
auction (the winner declined) is bid on again. A service the consumer ends
(cancelled, or terminated: also its complaint) releases our deployment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from opentelemetry.trace import Tracer

from mecfed import tracing
from mecfed.chain.client import Event
from mecfed.chain.federation import FederationContract, ServiceState, auction_closed
from mecfed.chain.revert import ContractRevert
from mecfed.errors import FailedPrecondition, MecfedError, NotFound
from mecfed.model import Installation, OverlayEndpoint, Requirements, ServiceNeed
from mecfed.tracing import set_attributes, step_span
from mef.deployments import Deployments
from mef.tasks import TaskSet
from mef.transport.base import Admission, ProviderHandler
from mef.transport.chain import codec
from mef.transport.chain.auction import tx_attributes
from mef.transport.chain.chaintime import wait_block_after, wait_chain_time
from mef.transport.chain.maybe_sent import mined
from mef.transport.chain.payouts import Payouts

log = logging.getLogger(__name__)

# Announcements mined in one block reach a provider within milliseconds of
# each other; it gathers them for this long and bids in its own order.
ANNOUNCEMENT_BURST_S = 0.05
# Services we bid on and still remember (to rebid after a reopen).
MAX_REMEMBERED = 4096


@dataclass
class Bid:
    """A service this provider bid on."""

    service_id: str
    need: ServiceNeed  # consumer_id: the consumer's chain address
    offer_ref: str  # the binding quote that backs the bid ("" once lost or withdrawn)
    traceparent: str = ""
    bond: int | None = None  # the announced bond while we hold none; None: look it up

    @property
    def consumer(self) -> str:
        return self.need.consumer_id

    @property
    def federation_id(self) -> str:
        return self.need.federation_id


class Bidder:
    def __init__(
        self,
        system_id: str,
        contract: FederationContract,
        account: LocalAccount,
        payouts: Payouts,
        tasks: TaskSet,
        tracer: Tracer,
    ) -> None:
        self.system_id = system_id
        self.contract = contract
        self.account = account
        self.address = account.address
        self.payouts = payouts
        self.tasks = tasks
        self.tracer = tracer
        self.mff_endpoint = ""
        self._provider: ProviderHandler | None = None
        self._deployments: Deployments | None = None
        self._bids: OrderedDict[str, Bid] = OrderedDict()  # service id -> bid
        self._member = asyncio.Event()
        self._start_block = -1
        self._streams: list[tuple[Any, asyncio.Task[Any]]] = []  # (stream, its server)
        self._stream_error = ""  # why the first stream that failed ended

    def health(self) -> str | None:
        """Why we no longer follow the contract (a stream ended: we would
        stop bidding, deploying or releasing without a word), None if we do."""
        ended = [t for _, t in self._streams if t.done() and not t.cancelled()]
        if not ended:
            return None
        return (
            f"the chain transport stopped following {len(ended)} of its {len(self._streams)} "
            f"contract event streams: {self._stream_error or 'ended'}"
        )

    # --- what the gate asks ----------------------------------------------------

    def bid_on(self, service_id: str) -> Bid | None:
        return self._bids.get(service_id.lower())

    def service_of(self, consumer: str, federation_id: str) -> str | None:
        for bid in self._bids.values():
            if bid.consumer == consumer and bid.federation_id == federation_id:
                return bid.service_id
        return None

    # --- lifecycle ----------------------------------------------------------------

    async def start(
        self, provider: ProviderHandler, deployments: Deployments, mff_endpoint: str
    ) -> None:
        self._provider, self._deployments, self.mff_endpoint = provider, deployments, mff_endpoint
        # Listen from the current block on *before* registering: an
        # announcement in the block that admits us must not slip past.
        head = (await self.contract.client.head()).number
        self._start_block = head
        events = self._events
        streams = [
            # A reorged announcement withdraws our bid (its quote's capacity
            # comes back); the other streams' effects (a deployment started,
            # released, a payment withdrawn) cannot be undone, so they act on
            # logs the client's confirmation depth (config.chain
            # "confirmations") already holds final.
            (events("announced", ["ServiceAnnounced"], removals=True), None),
            (
                events("orders", ["ConsumerEndpoint"], provider=self.address),
                self._on_consumer_endpoint,
            ),
            (events("closed", ["ServiceClosing", "ServiceAwarded"]), self._on_closed),
            (events("reopened", ["ServiceReopened"]), self._on_reopened),
            (events("ended", ["ServiceTerminated", "ServiceCancelled"]), self._on_ended),
            (
                events("acknowledged", ["ServiceAcknowledged"], provider=self.address),
                self._on_acknowledged,
            ),
        ]
        for stream, handler in streams:
            if handler is None:
                task = self.tasks.spawn(self._serve_announcements(stream), "announcements")
            else:
                task = self.tasks.spawn(self._serve(stream, handler), f"{handler.__name__} events")
            self._streams.append((stream, task))
        for stream, _ in streams:
            await stream.wait_live(timeout=30)
        await self.contract.ensure_member(self.system_id)
        self._member.set()

    def _events(self, what: str, names: list[str], **filters: Any) -> Any:
        """A stream from the current block, or (its durable cursor, given
        the process's database) from after the last event taken before a
        restart: what was announced or ended while we were down is seen."""
        name = f"bidder-{what}-{self.contract.address[:10]}"
        return self.contract.events(names, from_block=self._start_block, name=name, **filters)

    async def _serve(self, stream: Any, handler: Any) -> None:
        try:
            async for event in stream:
                self.tasks.spawn(handler(event), f"{event.name} {_service_id(event)}")
        except Exception as exc:
            self._stream_error = self._stream_error or f"{handler.__name__}: {exc}"
            raise
        finally:
            await stream.close()

    async def _serve_announcements(self, stream: Any) -> None:
        """Bids on a burst of announcements in an order of this provider's
        own (a hash of its address and the service id), not in block order.

        Every bid holds capacity and raises the load factor of the next
        quote. If all providers quoted a burst in block order, auction i
        would find every provider at the same load and the cheapest tariff
        would win every auction; in provider-specific orders the load a
        provider quotes at differs per auction, so the wins spread."""
        events: asyncio.Queue[Event] = asyncio.Queue()

        async def read() -> None:
            async for event in stream:
                events.put_nowait(event)

        reader = asyncio.create_task(read(), name="announcements reader")
        try:
            while True:
                first = asyncio.ensure_future(events.get())
                await asyncio.wait({first, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    if (exc := reader.exception()) is not None:
                        self._stream_error = self._stream_error or f"announcements: {exc}"
                    reader.result()  # the stream failed: re-raise; or it ended
                    return
                await asyncio.sleep(ANNOUNCEMENT_BURST_S)
                burst = [first.result()]
                while not events.empty():
                    burst.append(events.get_nowait())
                for event in [e for e in burst if e.removed]:
                    self._unannounced(event)
                for event in sorted((e for e in burst if not e.removed), key=self._bid_order):
                    self.tasks.spawn(self._on_announced(event), f"bid {_service_id(event)}")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.close()

    def _unannounced(self, event: Event) -> None:
        """The announcement was reorged away: no service to bid on, so the
        quote behind our bid is withdrawn (a bid of ours mined on it went
        with it). Announced again, it is bid on again."""
        bid = self._bids.pop(_service_id(event), None)
        if bid is not None:
            log.warning("%s: the announcement was reorged away; bid withdrawn", bid.service_id)
            self._lose(bid)

    async def _stale(self, service_id: str) -> bool:
        """An announcement replayed from before this start: bid only if the
        auction is still open and we did not bid on it before a restart."""
        view = await self.contract.service(service_id)
        if view.state != ServiceState.OPEN or view.round != 0:
            return True
        return (await self.contract.bid_of(service_id, self.address)).price != 0

    def _bid_order(self, event: Event) -> bytes:
        return hashlib.sha256(self.address.encode() + bytes(event.args["id"])).digest()

    @property
    def provider(self) -> ProviderHandler | None:
        return self._provider

    def remember(self, bid: Bid) -> None:
        self._remember(bid)

    def _remember(self, bid: Bid) -> None:
        self._bids[bid.service_id] = bid
        while len(self._bids) > MAX_REMEMBERED:
            self._bids.popitem(last=False)

    # --- bidding --------------------------------------------------------------------

    async def _on_announced(self, event: Event) -> None:
        consumer = str(event.args["consumer"])
        service_id = _service_id(event)
        if consumer == self.address or self._provider is None or service_id in self._bids:
            return  # ours, not started, or seen already (replayed): one bid each
        if event.block_number <= self._start_block and await self._stale(service_id):
            return
        announcement = codec.decode_requirements(bytes(event.args["requirements"]))
        need = ServiceNeed(
            announcement.federation_id,
            consumer,
            announcement.app,
            Requirements(int(event.args["maxPrice"])),
        )
        bid = Bid(service_id, need, "", announcement.traceparent, bond=int(event.args["bond"]))
        await self._bid(bid, announced_in_block=event.block_number)

    async def _bid(self, bid: Bid, **attributes: Any) -> None:
        assert self._provider is not None
        with step_span(
            self.tracer,
            "provider.bid",
            context=tracing.extract_context(bid.traceparent),
            federation_id=bid.federation_id,
            service_id=bid.service_id,
            provider=self.system_id,
            **attributes,
        ) as span:
            try:
                offer = await self._provider.quote(bid.need, binding=True)
            except MecfedError as exc:
                log.debug("no bid on %s: %s", bid.service_id, exc)
                set_attributes(span, declined=str(exc))
                return
            bid.offer_ref = str(offer.ref)
            self._remember(bid)
            try:
                consumer = await self.contract.member(bid.consumer)
                if consumer is None:
                    raise FailedPrecondition(f"consumer {bid.consumer} is not a member")
                await self._member.wait()  # bids from non-members revert
                sealed = codec.seal_contact(
                    consumer.pubkey, codec.MffContact(self.mff_endpoint, self.system_id)
                )
                # Maybe sent: the bid may still be mined and bind us, so the
                # quote is held until it is (or is replaced).
                receipt = await mined(
                    self.contract.client,
                    self.contract.bid(bid.service_id, offer.price, sealed, bond=bid.bond),
                )
                if receipt is None:
                    self._lose(bid)
                    return
                bid.bond = 0  # held from now on
            except BaseException as exc:
                # No bid on chain, so no award will ever release the capacity
                # the quote holds (its validity runs past the confirm window).
                self._lose(bid)
                if auction_closed(exc):
                    log.debug("%s closed before our bid: %s", bid.service_id, exc)
                    set_attributes(span, declined=str(exc))
                    return
                raise
            tx_attributes(span, receipt, price=offer.price)
        # A round that ends at its deadline emits nothing: look then.
        self.tasks.spawn(self._after_deadline(bid), f"round end {bid.service_id}")

    async def _after_deadline(self, bid: Bid) -> None:
        view = await self.contract.service(bid.service_id)
        await wait_chain_time(self.contract.client, view.deadline)
        await self._check_lost(bid.service_id)

    def _lose(self, bid: Bid) -> None:
        if self._provider is not None and bid.offer_ref:
            self._provider.withdraw(bid.offer_ref)
        bid.offer_ref = ""

    async def _on_closed(self, event: Event) -> None:
        await self._check_lost(_service_id(event))

    async def _check_lost(self, service_id: str) -> None:
        """A round that closed without us as winner: the quote's capacity is
        free and the bond comes back. (Read from a mined block, a Closing
        round's winner is final.)"""
        bid = self._bids.get(service_id)
        if bid is None:
            return
        view = await self.contract.service(service_id)
        if not view.state.awarded or view.winner == self.address:
            return
        self._lose(bid)
        await self.reclaim(service_id)

    async def release(self, consumer: str, federation_id: str) -> None:
        """Ends our deployment for (consumer, federation), if any, through
        the deployments registry (its durable record ends with it), and
        whatever the provider holds for it."""
        try:
            if self._deployments is not None:
                await self._deployments.remove_federation(consumer, federation_id)
            elif self._provider is not None:
                await self._provider.release(federation_id, consumer)
        except NotFound as exc:  # not ours (another consumer's federation of that id)
            log.debug("%s/%s: %s", consumer, federation_id, exc)

    @property
    def deployments(self) -> Deployments | None:
        return self._deployments

    async def reclaim(self, service_id: str) -> None:
        """Takes our bond back (if held and free) and withdraws."""
        try:
            await self.contract.reclaim_bond(service_id)
        except ContractRevert as exc:
            if exc.error_name not in ("NoBond", "BondLocked"):
                raise
            return
        await self.payouts.withdraw()

    async def _on_reopened(self, event: Event) -> None:
        """The winner declined (or never confirmed): bid again, unless we
        were that winner. A new round is open to every member not excluded,
        so a service we did not bid on before (e.g. a k = 1 auction a
        griefer closed before us) is bid on as if just announced."""
        service_id = _service_id(event)
        if str(event.args["excluded"]) == self.address:
            return
        bid = self._bids.get(service_id)
        if bid is None:
            if str(event.args["consumer"]) == self.address or self._provider is None:
                return
            announced = await self.contract.past_events(
                ["ServiceAnnounced"], service_id=service_id, from_block=0
            )
            if announced:
                await self._on_announced(announced[0])
            return
        if bid.offer_ref:  # still held from the earlier round
            self._lose(bid)
        bid.bond = None  # held still, or reclaimed after we lost: the facade looks it up
        await self._bid(bid, reopened_round=int(event.args["round"]))

    # --- deployment ----------------------------------------------------------------------

    async def _on_consumer_endpoint(self, event: Event) -> None:
        """Slow path: the consumer's order arrives on-chain only."""
        service_id = _service_id(event)
        bid = self._bids.get(service_id)
        if bid is None or self._deployments is None or not bid.offer_ref:
            return
        if self._deployments.find(bid.consumer, bid.federation_id) is not None:
            return  # already handed over directly
        order = codec.open_order(self.account, bytes(event.args["sealedEndpoint"]))
        if order.federation_id != bid.federation_id:
            raise FailedPrecondition(f"order for {service_id} names another federation")
        installation = Installation(
            offer_id=service_id,
            federation_id=order.federation_id,
            consumer_endpoint=order.endpoint,
            candidates=order.candidates,
        )
        with step_span(
            self.tracer,
            "provider.deploy_from_chain",
            context=tracing.extract_context(bid.traceparent),
            service_id=service_id,
        ):
            admission = Admission(bid.consumer, bid.offer_ref, caller=f"chain:{bid.consumer}")
            await self._deployments.install(installation, admission)

    async def confirm(self, service_id: str, endpoint: OverlayEndpoint) -> None:
        bid = self._bids.get(service_id)
        if bid is None:
            raise FailedPrecondition(f"we did not bid on {service_id}")
        consumer = await self.contract.member(bid.consumer)
        if consumer is None:
            raise FailedPrecondition(f"consumer {bid.consumer} is not a member")
        sealed = codec.seal_confirmation(consumer.pubkey, endpoint)
        await self._after_closing_block(service_id)
        with step_span(self.tracer, "confirmation", service_id=service_id) as span:
            # Maybe sent: settle_later must follow the confirmation once mined.
            receipt = await mined(
                self.contract.client, self.contract.confirm_deployment(service_id, sealed)
            )
            if receipt is None:
                raise FailedPrecondition(f"the confirmation of {service_id} was replaced")
            tx_attributes(span, receipt)
        # Paid when the consumer acknowledges; else once the challenge window passed.
        self.tasks.spawn(self.settle_later(service_id), f"settle {service_id}")

    async def _after_closing_block(self, service_id: str) -> None:
        """Confirm and decline need the round Awarded in the block the node
        runs their gas estimate in (the latest): after the closing block."""
        view = await self.contract.service(service_id)
        if view.state == ServiceState.CLOSING:
            await wait_block_after(self.contract.client, view.close_block)

    async def settle_later(self, service_id: str) -> None:
        view = await self.contract.service(service_id)
        await wait_chain_time(self.contract.client, view.challenge_deadline + 1)
        if (await self.contract.service(service_id)).state != ServiceState.ACKNOWLEDGED:
            return  # terminated inside the window (the consumer's complaint)
        try:
            await self.contract.settle(service_id)
        except ContractRevert as exc:
            if exc.error_name != "WrongState":  # acknowledged, or terminated meanwhile
                raise
        await self.payouts.withdraw()

    async def _on_acknowledged(self, event: Event) -> None:
        await self.payouts.withdraw()

    async def decline(self, service_id: str) -> None:
        """We won but could not deploy: the contract reopens the auction
        without us, so the consumer gets another winner."""
        bid = self._bids.get(service_id)
        if bid is not None:
            bid.offer_ref = ""
        await self._after_closing_block(service_id)
        with step_span(self.tracer, "decline", service_id=service_id) as span:
            receipt = await mined(self.contract.client, self.contract.decline(service_id))
            if receipt is not None:
                tx_attributes(span, receipt)
        await self.reclaim(service_id)  # kept unless the consumer had ordered on-chain

    async def _on_ended(self, event: Event) -> None:
        """The consumer cancelled, or terminated (inside the challenge window:
        its complaint): nothing of ours may keep running for it."""
        service_id = _service_id(event)
        bid = self._bids.pop(service_id, None)
        if bid is None:
            return
        self._lose(bid)
        await self.release(bid.consumer, bid.federation_id)
        await self.reclaim(service_id)
        await self.payouts.withdraw()


def _service_id(event: Event) -> str:
    return "0x" + bytes(event.args["id"]).hex()


__all__ = ["Bid", "Bidder"]
