"""Announcements that may have been sent: the receipt wait gave up
(:class:`~mecfed.chain.receipts.NotMined`), the workflow with it, but the
transaction may still be mined, and a mined announcement escrows our
``max_price`` in a service nobody will ever order. Each one is kept
(durably, component "chain_transport" of :mod:`.settlement`) and watched:
mined, its service is cancelled (the escrow comes back); replaced by the
client's no-op (``valid_for["announce"]``), it never executes and is
forgotten. The watch resumes after a restart (:meth:`MaybeSent.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from mecfed.chain.client import ChainClient, Receipt
from mecfed.chain.federation import FederationContract
from mecfed.chain.journal import DROPPED, MINED, REPLACED
from mecfed.chain.receipts import NotMined
from mecfed.errors import FailedPrecondition, MecfedError
from mecfed.storage import Database
from mef.tasks import TaskSet

log = logging.getLogger(__name__)

# Between receipt waits that failed for another reason than "not yet"
# (the node down, the chain refused): the journal keeps the transaction.
RETRY_S = 5.0


async def mined(client: ChainClient, send: Awaitable[Receipt]) -> Receipt | None:
    """``send``'s receipt; after NotMined, keeps waiting (the client's
    reconciler keeps the transaction sent) until it is mined, or None once
    it never will be (replaced). For transactions whose follow-up must not
    be skipped just because the first receipt wait gave up (a provider's
    confirm, decline)."""
    try:
        return await send
    except NotMined as exc:
        tx_hash = exc.tx_hash
        log.warning("%s: not mined yet; still waiting", exc.purpose)
    while True:
        try:
            return await client.wait_receipt(tx_hash)
        except NotMined:
            continue
        except FailedPrecondition as exc:
            entry = client.journal.get(tx_hash)
            if entry is None or entry.state in (REPLACED, DROPPED):
                log.warning("%s never executes: %s", tx_hash, exc)
                return None
            await asyncio.sleep(RETRY_S)  # e.g. the chain refused for now


class MaybeSent:
    """``end(service_id)`` ends a service whatever its state (the
    settlement's); ``tasks`` runs the watches."""

    def __init__(
        self,
        contract: FederationContract,
        db: Database | None,
        tasks: TaskSet,
        end: Callable[[str], Awaitable[object]],
    ) -> None:
        self._contract = contract
        self._db = db  # migrated by the settlement (same component)
        self._tasks = tasks
        self._end = end
        self._memory: dict[str, str] = {}  # tx hash -> federation id, without a db
        self.cancelled: list[str] = []  # service ids of zombies cancelled (for tests, logs)

    def pending(self) -> dict[str, str]:
        """tx hash -> federation id of every announcement still watched."""
        if self._db is None:
            return dict(self._memory)
        rows = self._db.query(
            "SELECT tx_hash, federation_id FROM chain_maybe_sent WHERE contract = ?"
            " ORDER BY noted_at",
            (self._contract.address,),
        )
        return {r["tx_hash"]: r["federation_id"] for r in rows}

    @contextlib.contextmanager
    def watching(self, purpose: str, federation_id: str) -> Iterator[None]:
        """Around sending a transaction of ``purpose`` (journalled under it):
        its receipt wait giving up (NotMined) or cancelled (the workflow's
        own timer) leaves it watched."""
        try:
            yield
        except NotMined as exc:
            self.note(exc, federation_id)
            raise
        except asyncio.CancelledError:
            self.note_purpose(purpose, federation_id)
            raise

    def note(self, exc: NotMined, federation_id: str) -> None:
        """Keeps ``exc``'s transaction and watches it (the workflow gave up)."""
        self.note_tx(exc.tx_hash, federation_id)

    def note_purpose(self, purpose: str, federation_id: str) -> None:
        """The receipt wait was cancelled (the workflow's own timer): keeps
        and watches the journalled transactions of ``purpose`` still
        pending (none if it was not sent yet)."""
        for entry in self._contract.client.pending_transactions():
            if entry.purpose == purpose:
                self.note_tx(entry.tx_hash, federation_id)

    def note_tx(self, tx_hash: str, federation_id: str) -> None:
        if self._db is None:
            self._memory[tx_hash] = federation_id
        else:
            self._db.execute(
                "INSERT OR IGNORE INTO chain_maybe_sent"
                " (contract, tx_hash, federation_id, noted_at) VALUES (?, ?, ?, ?)",
                (self._contract.address, tx_hash, federation_id, time.time()),
            )
        log.warning(
            "%s: announcement %s not mined in time; watching it (cancelled if mined)",
            federation_id,
            tx_hash,
        )
        self._spawn(tx_hash, federation_id)

    def resume(self) -> None:
        """After a restart: watches every announcement kept before it."""
        for tx_hash, federation_id in self.pending().items():
            self._spawn(tx_hash, federation_id)

    def _spawn(self, tx_hash: str, federation_id: str) -> None:
        self._tasks.spawn(self.watch(tx_hash, federation_id), f"maybe-sent {tx_hash}")

    def _forget(self, tx_hash: str) -> None:
        self._memory.pop(tx_hash, None)
        if self._db is not None:
            self._db.execute(
                "DELETE FROM chain_maybe_sent WHERE contract = ? AND tx_hash = ?",
                (self._contract.address, tx_hash),
            )

    async def watch(self, tx_hash: str, federation_id: str) -> str | None:
        """Until the announcement is mined (its service cancelled: the id)
        or will never be (None)."""
        journal = self._contract.client.journal
        while True:
            entry = journal.get(tx_hash)
            if entry is None or entry.state in (REPLACED, DROPPED):
                # Never executes (replaced), or not ours to know (a journal
                # without a database lost it: the start's reconcile, which
                # scans the chain for our announcements, covers it then).
                self._forget(tx_hash)
                return None
            try:
                announced = await self._contract.wait_announced(tx_hash)
            except NotMined:
                continue  # still pending; the client's reconciler keeps it sent
            except FailedPrecondition as exc:
                entry = journal.get(tx_hash)
                if entry is not None and entry.state not in (REPLACED, DROPPED, MINED):
                    await asyncio.sleep(RETRY_S)  # e.g. the chain refused for now
                    continue
                log.info("%s: announcement %s never executes: %s", federation_id, tx_hash, exc)
                self._forget(tx_hash)
                return None
            except MecfedError as exc:  # the node down, a mined failure
                log.warning("%s: waiting for announcement %s: %s", federation_id, tx_hash, exc)
                if (e := journal.get(tx_hash)) is not None and e.state == MINED:
                    self._forget(tx_hash)  # mined and failed: nothing escrowed
                    return None
                await asyncio.sleep(RETRY_S)
                continue
            break
        log.warning(
            "%s: announcement %s was mined after the workflow gave up: cancelling %s",
            federation_id,
            tx_hash,
            announced.service_id,
        )
        while True:
            try:
                await self._end(announced.service_id)
                break
            except MecfedError as exc:
                log.warning("%s: cancelling %s: %s", federation_id, announced.service_id, exc)
                await asyncio.sleep(RETRY_S)
        self.cancelled.append(announced.service_id)
        self._forget(tx_hash)
        return announced.service_id


__all__ = ["MaybeSent", "mined"]
