"""The consumer's money on the chain, from whatever state a service reached,
also after a restart: the chain is the source of truth.

Our services are found again from the chain itself: every ServiceAnnounced
event filtered by our address (its requirements name the federation id), so
nothing but the chain needs to survive a restart. With a database, what was
found is kept (component "chain_transport": the services per contract and
the block scanned up to; also the maybe-sent announcements of
:mod:`.maybe_sent`), so a restart scans only the blocks after it; the
chain stays the source of truth (a service reorged away reads as NONE and is
skipped; a chain shorter than the cursor is rescanned from its start). ``terminate`` ends a
service in every state (Open, Closing, Awarded: cancel; Deployed and not
acknowledged: terminate, which is our complaint and refunds us; Acknowledged:
terminate, payment stands) and ``reconcile`` does that for every service of
ours whose federation is no longer live; both withdraw what comes back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from mecfed.chain.federation import FederationContract, ServiceState
from mecfed.chain.revert import ContractRevert
from mecfed.errors import InvalidArgument, MecfedError, Unavailable
from mecfed.model import Federation
from mecfed.storage import Database
from mef.transport.chain import codec
from mef.transport.chain.auction import ConsumerAuction
from mef.transport.chain.chaintime import wait_block_after
from mef.transport.peer_client import PeerContact

log = logging.getLogger(__name__)

# Races with the winner (its confirmation lands before our cancel) settle
# within a few attempts: each one re-reads the state.
ATTEMPTS = 4


COMPONENT = "chain_transport"
# The scan cursor is not called chain_cursor: that is the chain client's
# table of stream cursors (component chain_journal) in the same database.
MIGRATIONS = [
    """
    CREATE TABLE chain_services (
        contract TEXT NOT NULL, service_id TEXT NOT NULL, federation_id TEXT NOT NULL,
        PRIMARY KEY (contract, service_id));
    CREATE TABLE chain_scan (contract TEXT PRIMARY KEY, block INTEGER NOT NULL);
    """,
    # Announcements whose receipt wait gave up (NotMined): maybe sent, so
    # maybe escrowing; watched until mined (then cancelled) or replaced.
    """
    CREATE TABLE chain_maybe_sent (
        contract TEXT NOT NULL, tx_hash TEXT NOT NULL, federation_id TEXT NOT NULL,
        noted_at REAL NOT NULL, PRIMARY KEY (contract, tx_hash));
    """,
]


class ConsumerSettlement:
    def __init__(self, auction: ConsumerAuction, db: Database | None = None) -> None:
        self._auction = auction
        self._contract: FederationContract = auction.contract
        self._db = db
        self._scanned_to = -1
        self._services: dict[str, list[str]] = {}  # federation id -> service ids, oldest first
        if db is not None:
            db.migrate(COMPONENT, MIGRATIONS)
            key = (self._contract.address,)
            row = db.query_one("SELECT block FROM chain_scan WHERE contract = ?", key)
            self._scanned_to = int(row["block"]) if row else -1
            for r in db.query(
                "SELECT service_id, federation_id FROM chain_services WHERE contract = ?"
                " ORDER BY rowid",
                key,
            ):
                self._services.setdefault(r["federation_id"], []).append(r["service_id"])

    def _store(self, found: list[tuple[str, str]], head: int) -> None:
        if self._db is None:
            return
        address = self._contract.address
        with self._db.transaction() as tx:
            for service_id, federation_id in found:
                tx.execute(
                    "INSERT OR IGNORE INTO chain_services (contract, service_id, federation_id)"
                    " VALUES (?, ?, ?)",
                    (address, service_id, federation_id),
                )
            tx.execute(
                "INSERT INTO chain_scan (contract, block) VALUES (?, ?)"
                " ON CONFLICT(contract) DO UPDATE SET block = excluded.block",
                (address, head),
            )

    async def services(self) -> dict[str, list[str]]:
        """Every service we announced, by federation id (from the chain)."""
        head = (await self._contract.client.head()).number
        if head < self._scanned_to:  # a shorter chain than we scanned: start again
            self._scanned_to = -1
        if head > self._scanned_to:
            events = await self._contract.past_events(
                ["ServiceAnnounced"],
                consumer=self._contract.client.address,
                from_block=self._scanned_to + 1,
                to_block=head,
            )
            found: list[tuple[str, str]] = []
            for event in events:
                service_id = "0x" + bytes(event.args["id"]).hex()
                try:
                    federation_id = codec.decode_requirements(
                        bytes(event.args["requirements"])
                    ).federation_id
                except InvalidArgument as exc:
                    log.warning("%s: unreadable announcement of ours: %s", service_id, exc)
                    continue
                ids = self._services.setdefault(federation_id, [])
                if service_id not in ids:
                    ids.append(service_id)
                    found.append((service_id, federation_id))
            self._store(found, head)
            self._scanned_to = head
        return self._services

    async def services_of(self, federation_id: str) -> list[str]:
        known = self._auction.auctions.get(federation_id)
        ids = list((await self.services()).get(federation_id, []))
        if known is not None and known.service_id not in ids:
            ids.append(known.service_id)
        return ids

    async def terminate(self, federation: Federation) -> None:
        auction = self._auction.auctions.get(federation.federation_id)
        if federation.app_instance_id and auction is not None and auction.contact is not None:
            # Ask the provider directly too, so it need not wait for a block.
            with contextlib.suppress(MecfedError):
                await self._auction.peers.remove(
                    PeerContact(auction.contact.endpoint, auction.contact.name),
                    federation.app_instance_id,
                    timeout=30,
                )
        for service_id in await self.services_of(federation.federation_id):
            await self.end(service_id)
        await self._auction.payouts.withdraw()

    async def reconcile(self, live_federation_ids: Iterable[str]) -> None:
        """Ends every service of ours whose federation is not live (its
        escrow comes back, a deployment not yet acknowledged is complained
        about) and withdraws our credits."""
        live = set(live_federation_ids)
        for federation_id, service_ids in (await self.services()).items():
            if federation_id in live:
                continue
            for service_id in service_ids:
                try:
                    await self.end(service_id)
                except MecfedError as exc:
                    log.warning("%s (%s): not settled yet: %s", service_id, federation_id, exc)
        await self._auction.payouts.withdraw()

    async def end(self, service_id: str) -> ServiceState:
        """Ends ``service_id`` from its current state; its final state."""
        contract = self._contract
        for _ in range(ATTEMPTS):
            view = await contract.service(service_id)
            state = view.state
            if state in (ServiceState.NONE, ServiceState.TERMINATED, ServiceState.CANCELLED):
                return state
            try:
                if state == ServiceState.CLOSING:
                    # Bids of the closing block still count; cancel after it.
                    await wait_block_after(contract.client, view.close_block)
                    continue
                if state in (ServiceState.OPEN, ServiceState.AWARDED):
                    await contract.cancel(service_id)
                    return ServiceState.CANCELLED
                await contract.terminate(service_id)  # DEPLOYED or ACKNOWLEDGED
                return ServiceState.TERMINATED
            except ContractRevert as exc:
                # The state moved under us (the winner confirmed, the deadline
                # passed): read it again.
                log.info("%s: %s; retrying from the new state", service_id, exc)
        raise Unavailable(f"{service_id}: could not settle within {ATTEMPTS} attempts")


__all__ = ["ConsumerSettlement"]
