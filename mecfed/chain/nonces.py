"""Keeping one account's journalled transactions moving: no nonce gap, no
stale transaction executed late, no silent wedge.

A node that loses a pending transaction (a restart empties its pool, an
eviction) leaves a gap at that nonce: every later transaction of the account
queues behind it, for ever. The :class:`Reconciler` checks every journalled
pending transaction on start, after every reconnect and periodically:

* mined: journalled as mined (so is one that lost its nonce to another
  transaction: ``replaced``);
* in the node's pool: left alone, unless past its ``valid_until``;
* unknown to the node: sent again, the same signed bytes (it can only
  execute once), or, when it is past its ``valid_until`` (executing it now
  would be harmful, e.g. a stale announcement locking escrow) or cannot be
  sent again, replaced by a 0-value transfer to itself at the same nonce
  with higher fees, so it never executes later;
* a nonce between the node's pending count and the account's next one that
  no journalled transaction holds gets such a no-op too;
* one journalled as mined whose block is gone (a reorg, or a node that lost
  its last second of blocks in a crash) is pending again.

:meth:`Reconciler.health` reports a wedged account: a transaction pending
for longer than ``wedged_after`` while none of the account's was mined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from hexbytes import HexBytes
from web3.exceptions import Web3Exception, Web3RPCError

from mecfed.chain.journal import DROPPED, KEEP_FINISHED_S, MINED, PENDING, REPLACED, Entry
from mecfed.errors import MecfedError, Unavailable

if TYPE_CHECKING:
    from mecfed.chain.transactions import Transactions

log = logging.getLogger(__name__)

NOOP_GAS = 21_000
FEE_BUMP = 1.25  # a replacement must outbid the original (geth/Besu: >= +10%)
WARN_EVERY_S = 30.0
PRUNE_EVERY_S = 600.0
KEEP_IN_MEMORY_S = 600.0  # finished rows of a journal without a database


class Reconciler:
    """Reconciles the journal of ``txs`` with its node (see module doc)."""

    def __init__(
        self,
        txs: Transactions,
        *,
        wedged_after: float = 60.0,
        interval: float = 2.0,
        settle: float = 3.0,
    ) -> None:
        self._txs = txs
        self.wedged_after = wedged_after
        self.interval = interval  # between periodic checks
        self.settle = settle  # younger transactions are left to their waiter
        self._wake = asyncio.Event()
        self._mined_count: int | None = None
        self._warned = 0.0
        self._pruned = time.monotonic()
        self.runs = 0  # completed reconciliations, for tests
        txs.repair = self.repair

    def wake(self, *_: object) -> None:
        """Reconcile soon (e.g. a connection is up again)."""
        self._wake.set()

    async def reconcile(self) -> None:
        """One pass over the journal's pending transactions (see module doc)."""
        txs = self._txs
        async with txs._nonce_lock:
            journal, account = txs.journal, txs.address
            mined = await txs.nonce_count("latest")
            if self._mined_count is None or mined > self._mined_count:
                txs.last_progress = time.time()
            self._mined_count = mined
            for entry in journal.mined_from(account, mined):
                # Its block is gone (a reorg, or a node that lost its last
                # blocks in a crash): pending again, so sent again or replaced.
                if await txs._receipt(entry.tx_hash) is None:
                    log.warning(
                        "%s: transaction %s (nonce %d) is no longer mined (reorg or node rollback)",
                        entry.purpose,
                        entry.tx_hash,
                        entry.nonce,
                    )
                    journal.mark(entry.tx_hash, PENDING, note="un-mined by a reorg or rollback")
            held: set[int] = set()
            for entry in journal.pending(account):
                if entry.tx_hash in txs.waiting:
                    held.add(entry.nonce)  # its waiter looks after it
                    continue
                receipt = await txs._receipt(entry.tx_hash)
                if receipt is not None:
                    journal.mark(entry.tx_hash, MINED, block_number=int(receipt["blockNumber"]))
                    continue
                if entry.nonce < mined:
                    await self._lost_nonce(entry)
                    continue
                held.add(entry.nonce)
                known = await txs._node_knows(entry.tx_hash)
                if known is None:
                    return  # the node can't be asked now; next pass
                if known and not entry.stale():
                    continue
                await self.repair(entry)
            if txs._nonce is not None:
                pending = await txs.nonce_count("pending")
                for nonce in range(pending, txs._nonce):
                    if nonce not in held:
                        log.warning(
                            "nonce gap at %d of %s: no journalled transaction holds it; "
                            "filling it with a no-op",
                            nonce,
                            account,
                        )
                        await self._noop(nonce, None, "fills a nonce gap")
            self.runs += 1

    async def _lost_nonce(self, entry: Entry) -> None:
        """``entry``'s nonce was used by another transaction."""
        txs = self._txs
        for other in txs.journal.at_nonce(txs.address, entry.nonce):
            if other.tx_hash != entry.tx_hash and other.state != MINED:
                receipt = await txs._receipt(other.tx_hash)
                if receipt is not None:  # e.g. the original of a no-op won after all
                    txs.journal.mark(other.tx_hash, MINED, block_number=int(receipt["blockNumber"]))
        txs.journal.mark(
            entry.tx_hash,
            REPLACED,
            replaced_by=entry.replaced_by,
            note=f"nonce {entry.nonce} was used by another transaction",
        )

    async def repair(self, entry: Entry) -> None:
        """``entry`` is unknown to the node (or stale): sends it again, or
        replaces it by a no-op. The caller holds the nonce lock."""
        if entry.stale():
            log.warning(
                "%s: transaction %s (nonce %d) not mined before its valid_until; "
                "replacing it with a no-op so it never executes",
                entry.purpose,
                entry.tx_hash,
                entry.nonce,
            )
            await self._noop(entry.nonce, entry, "past its valid_until")
            return
        log.warning(
            "%s: the node lost transaction %s (nonce %d); sending it again",
            entry.purpose,
            entry.tx_hash,
            entry.nonce,
        )
        txs = self._txs
        try:
            await txs._send_raw(entry.raw)
        except Unavailable:
            return  # next pass
        except Web3RPCError as exc:
            if await txs._node_knows(entry.tx_hash) is not False:
                return
            if await txs._receipt(entry.tx_hash) is not None:
                return
            if entry.nonce < await txs.nonce_count("latest"):
                await self._lost_nonce(entry)
                return
            log.warning("%s: cannot send %s again (%s)", entry.purpose, entry.tx_hash, exc)
            await self._noop(entry.nonce, entry, f"could not be sent again: {exc}")

    async def _noop(self, nonce: int, replacing: Entry | None, why: str) -> None:
        """A 0-value transfer to itself at ``nonce``, outbidding ``replacing``."""
        txs = self._txs
        fees = await txs._fees()
        if replacing is not None:
            fees = {
                k: max(v, int(replacing.fees.get(k, 0) * FEE_BUMP) + 1) for k, v in fees.items()
            }
            if "maxFeePerGas" in fees:
                fees["maxFeePerGas"] = max(fees["maxFeePerGas"], fees["maxPriorityFeePerGas"])
        tx: dict[str, Any] = {
            "to": txs.address,
            "value": 0,
            "data": b"",
            "gas": NOOP_GAS,
            "chainId": txs.chain_id,
            "nonce": nonce,
            **fees,
        }
        signed = txs.account.sign_transaction(cast(Any, tx))
        tx_hash = HexBytes(signed.hash).to_0x_hex()
        purpose = f"no-op at nonce {nonce} ({why})"
        if replacing is not None:
            purpose = f"no-op replacing {replacing.tx_hash} ({replacing.purpose}; {why})"
        raw = bytes(signed.raw_transaction)
        txs.journal.record(
            Entry(tx_hash, txs.address, nonce, raw, fees, purpose, None, PENDING, time.time())
        )
        try:
            await txs._send_raw(raw)
        except Unavailable:
            pass  # maybe sent: the next pass finds out
        except Web3RPCError as exc:
            if not await txs._node_knows(tx_hash):
                txs.journal.mark(tx_hash, DROPPED, note=f"refused by the node: {exc}")
                log.error("%s: refused by the node: %s", purpose, exc)
                return
        if replacing is not None:
            txs.journal.mark(
                replacing.tx_hash, REPLACED, replaced_by=tx_hash, note=f"replaced by a no-op: {why}"
            )

    # -- health -----------------------------------------------------------------

    def health(self) -> str | None:
        """Why the account is wedged (None: it is not)."""
        txs = self._txs
        pending = txs.journal.pending(txs.address)
        if not pending:
            return None
        now = time.time()
        oldest = min(pending, key=lambda e: e.sent_at)
        if now - oldest.sent_at < self.wedged_after or now - txs.last_progress < self.wedged_after:
            return None
        return (
            f"chain client wedged: {len(pending)} transaction(s) of {txs.address} pending, the "
            f"oldest {oldest.tx_hash} ({oldest.purpose}, nonce {oldest.nonce}) for "
            f"{now - oldest.sent_at:.0f} s, and none of its transactions mined for "
            f"{now - txs.last_progress:.0f} s"
        )

    # -- the background loop ------------------------------------------------------

    async def run(self) -> None:
        """Reconciles when woken (a reconnect) and every ``interval`` while
        a transaction older than ``settle`` is pending; warns while wedged."""
        txs = self._txs
        connection = txs._connection
        while not connection.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            woken = self._wake.is_set()
            self._wake.clear()
            if connection.closing or not connection.connected or connection.refused:
                continue
            pending = txs.journal.pending(txs.address)
            orphans = [e for e in pending if e.tx_hash not in txs.waiting]
            if woken or any(time.time() - e.sent_at > self.settle for e in orphans):
                try:
                    await self.reconcile()
                except (MecfedError, Web3Exception) as exc:
                    log.debug("reconciling the journal of %s: %r", txs.address, exc)
            if time.monotonic() - self._pruned > PRUNE_EVERY_S:
                self._pruned = time.monotonic()
                keep = KEEP_FINISHED_S if txs.journal.durable else KEEP_IN_MEMORY_S
                txs.journal.prune(keep)
            reason = self.health()
            if reason is not None and time.monotonic() - self._warned > WARN_EVERY_S:
                self._warned = time.monotonic()
                log.warning("%s", reason)


__all__ = ["Reconciler"]
