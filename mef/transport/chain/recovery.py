"""The provider's side after a restart: the chain says what we bid on and
what became of it, so nothing keeps running for a consumer that ended its
service while we were down, nothing we earned stays unbooked, and no bond
stays behind.

Every service we ever bid on is found from our BidPlaced events. For each:
ended by the consumer (cancelled, terminated: also its complaint) → our
deployment for it is released; deployed and acknowledged (or its challenge
window passed) → the payment is booked; deployed and still in its challenge
window → remembered, so the consumer's terminate releases it and the
window's end books it; awarded to us → confirmed if our durable
deployment record for it is READY (the deployment survived the restart and
the provider's reconcile, which must run before this), else declined (the
binding quote that backed the bid did not survive the restart; a new round
finds another winner) and whatever we had deployed released; lost → the
bond reclaimed. Releases go through the deployments registry, so its
durable records end with them.
Auctions still open are never bid on again: our live bid stands, and is
declined if it wins.
"""

from __future__ import annotations

import logging

from mecfed.chain.federation import ServiceState
from mecfed.chain.revert import ContractRevert
from mecfed.errors import InvalidArgument, MecfedError
from mecfed.model import InstanceState, Requirements, ServiceNeed
from mef.transport.chain import codec
from mef.transport.chain.bidder import Bid, Bidder
from mef.transport.chain.chaintime import wait_block_after, wait_chain_time

log = logging.getLogger(__name__)


class ProviderRecovery:
    def __init__(self, bidder: Bidder) -> None:
        self._bidder = bidder
        self._contract = bidder.contract

    async def run(self) -> None:
        events = await self._contract.past_events(
            ["BidPlaced"], provider=self._bidder.address, from_block=0
        )
        seen: dict[str, None] = {}
        for event in events:
            seen.setdefault("0x" + bytes(event.args["id"]).hex(), None)
        for service_id in seen:
            if self._bidder.bid_on(service_id) is not None:
                continue  # bid on since this start: handled live
            try:
                await self.recover(service_id)
            except MecfedError as exc:
                log.warning("%s: not recovered yet: %s", service_id, exc)

    async def recover(self, service_id: str, *, again: bool = True) -> None:
        view = await self._contract.service(service_id)
        ours = view.winner == self._bidder.address
        state = view.state
        if state in (ServiceState.OPEN, ServiceState.CLOSING):
            if again:  # a stale auction: look again once it closed
                if state == ServiceState.CLOSING:
                    await wait_block_after(self._contract.client, view.close_block)
                else:
                    await wait_chain_time(self._contract.client, view.deadline)
                await self.recover(service_id, again=False)
            return
        if not ours:
            await self._bidder.reclaim(service_id)
            return
        if state in (ServiceState.TERMINATED, ServiceState.CANCELLED):
            await self._release(service_id, view.consumer)
            await self._bidder.reclaim(service_id)
        elif state == ServiceState.AWARDED:
            if await self._confirm_running(service_id, view.consumer):
                return
            await self._bidder.decline(service_id)
            await self._release(service_id, view.consumer)
        elif state == ServiceState.DEPLOYED:
            await self._remember(service_id)
            self._bidder.tasks.spawn(self._bidder.settle_later(service_id), f"settle {service_id}")
        elif state == ServiceState.ACKNOWLEDGED:
            await self._remember(service_id)  # a later terminate still releases it
            try:
                await self._contract.settle(service_id)
            except ContractRevert as exc:
                if exc.error_name != "WrongState":  # already booked
                    raise
            await self._bidder.payouts.withdraw()

    async def _announcement(self, service_id: str) -> codec.Announcement | None:
        events = await self._contract.past_events(
            ["ServiceAnnounced"], service_id=service_id, from_block=0
        )
        if not events:
            return None
        try:
            return codec.decode_requirements(bytes(events[0].args["requirements"]))
        except InvalidArgument as exc:
            log.warning("%s: unreadable announcement: %s", service_id, exc)
            return None

    async def _confirm_running(self, service_id: str, consumer: str) -> bool:
        """Confirms an award whose deployment is READY in our durable
        records (deployed before the restart, kept by the provider's
        reconcile); False if there is none to confirm."""
        deployments = self._bidder.deployments
        announcement = await self._announcement(service_id)
        if deployments is None or announcement is None:
            return False
        deployment = deployments.find(consumer, announcement.federation_id)
        if (
            deployment is None
            or deployment.state != InstanceState.READY
            or deployment.endpoint is None
        ):
            return False
        await self._remember(service_id, offer_ref=deployment.offer_ref)
        log.info("%s: deployed before the restart; confirming", service_id)
        await self._bidder.confirm(service_id, deployment.endpoint)
        return True

    async def _release(self, service_id: str, consumer: str) -> None:
        announcement = await self._announcement(service_id)
        if announcement is None:
            return
        await self._bidder.release(consumer, announcement.federation_id)

    async def _remember(self, service_id: str, offer_ref: str = "") -> None:
        announcement = await self._announcement(service_id)
        if announcement is None:
            return
        view = await self._contract.service(service_id)
        need = ServiceNeed(
            announcement.federation_id,
            view.consumer,
            announcement.app,
            Requirements(view.max_price),
        )
        self._bidder.remember(Bid(service_id, need, offer_ref, announcement.traceparent))


__all__ = ["ProviderRecovery"]
