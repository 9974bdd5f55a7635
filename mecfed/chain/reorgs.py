"""Reorgs: which recent blocks are canonical, and which delivered logs are
not any more.

:class:`Canonical` follows the heads a connection receives and notices when
a head replaces blocks it saw (a head at a height already seen, or whose
parent is not the block seen below it); it walks down to the fork point
with ``eth_getBlockByNumber``. Nodes are not relied on to push logs with
``removed: true`` (anvil pushes none): the fork point is announced to every
log stream, which checks the blocks of what it delivered and delivers a
removal for each log whose block is gone.

:class:`Delivered` is a stream's memory of what it delivered (and where it
resumes), used for exactly-once delivery across back-fills, replays and
reorgs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hexbytes import HexBytes

from mecfed.chain.events import Head
from mecfed.chain.journal import Cursor

# Blocks before the last delivered one that a replay fetches again, so a
# reorg while disconnected is caught up (QBFT is final: none there).
REPLAY_OVERLAP_BLOCKS = 8
# How far below the highest delivered block the dedup memory reaches (and
# so the deepest reorg whose removals are delivered).
DEDUP_BLOCKS = 64
# Heads remembered for reorg detection.
KEEP_HEADS = 2 * DEDUP_BLOCKS

HashAt = Callable[[int], Awaitable[str | None]]


class Canonical:
    """The hashes of the recent heads by height, as last seen canonical."""

    def __init__(self) -> None:
        self.hashes: dict[int, str] = {}

    async def advance(self, head: Head, hash_at: HashAt) -> int | None:
        """Records ``head``; the first replaced height if it reveals a reorg
        (``hash_at(n)``: the node's canonical hash at ``n``)."""
        known = self.hashes
        n = head.number
        if known.get(n) == head.hash:
            return None  # seen (e.g. again after a reconnect)
        fork = None
        top = max(known, default=-1)
        below = known.get(n - 1)
        if known and (n <= top or (below is not None and below != head.parent_hash)):
            fork = await self._fork(min(n - 1, top), hash_at)
        known[n] = head.hash
        if len(known) > KEEP_HEADS:
            for height in [h for h in known if h < n - KEEP_HEADS]:
                del known[height]
        return fork

    async def verify(self, hash_at: HashAt) -> int | None:
        """Checks the highest recorded head against the node (after a
        reconnect: heads were missed); the first replaced height, if any."""
        if not self.hashes:
            return None
        top = max(self.hashes)
        if await hash_at(top) == self.hashes[top]:
            return None
        return await self._fork(top, hash_at)

    async def _fork(self, start: int, hash_at: HashAt) -> int:
        """The lowest height from ``start`` down whose recorded hash is not
        canonical any more, plus nothing below it; forgets those above."""
        height = start
        while height in self.hashes and await hash_at(height) != self.hashes[height]:
            height -= 1
        fork = height + 1
        for h in [h for h in self.hashes if h >= fork]:
            del self.hashes[h]
        return fork


def _key(raw: Mapping[str, Any]) -> tuple[int, int]:
    return int(raw["blockNumber"]), int(raw["logIndex"])


def _block(raw: Mapping[str, Any]) -> bytes:
    return bytes(HexBytes(raw["blockHash"]))


class Delivered:
    """The logs a stream has delivered, by ``(blockNumber, logIndex)`` with
    their block hash and the log itself (to deliver its removal), and where
    to replay from. ``after``: a durable cursor, the last log the consumer
    took before a restart (it and those before it in its block are not
    delivered again)."""

    def __init__(self, from_block: int | None, after: Cursor | None = None) -> None:
        if after is not None:
            from_block = after.block_number
        self.origin = from_block  # nothing before this block is delivered
        self.cursor = from_block  # replay from here (inclusive)
        self._seen: dict[tuple[int, int], tuple[bytes, Mapping[str, Any]]] = {}
        self._top = -1  # highest block delivered
        self._after = after

    def replay_start(self, head: int) -> int:
        """The first block to fetch (again) when the node's head is ``head``;
        a stream from the next block starts after it."""
        if self.origin is None:
            self.origin = self.cursor = head + 1
        assert self.cursor is not None
        return max(self.origin, self.cursor - REPLAY_OVERLAP_BLOCKS)

    def caught_up(self, head: int) -> None:
        """Everything up to block ``head`` is delivered."""
        assert self.cursor is not None
        self.cursor = max(self.cursor, head + 1)

    def delivered(self, raw: Mapping[str, Any]) -> bool:
        """Whether this very log (same block hash) was delivered."""
        seen = self._seen.get(_key(raw))
        return seen is not None and seen[0] == _block(raw)

    def conflicts(self, raw: Mapping[str, Any]) -> bool:
        """Whether new log ``raw`` says blocks already delivered from were
        replaced: a delivered log at its height has another block hash, or
        logs above its height were delivered while none at it."""
        number = int(raw["blockNumber"])
        if self.delivered(raw) or number < self._top - DEDUP_BLOCKS:
            return False
        at = {h for (n, _), (h, _) in self._seen.items() if n == number}
        return bool(at - {_block(raw)}) or (not at and number < self._top)

    def heights(self, fork: int) -> list[int]:
        """The heights from ``fork`` up that logs were delivered from."""
        return sorted({n for n, _ in self._seen if n >= fork})

    def hash_at(self, height: int) -> str | None:
        """The block hash of the logs delivered from ``height``, if any."""
        for (n, _), (block, _) in self._seen.items():
            if n == height:
                return HexBytes(block).to_0x_hex()
        return None

    def unwind(self, canonical: Mapping[int, str | None]) -> list[Mapping[str, Any]]:
        """Forgets the delivered logs whose block is not ``canonical[height]``
        (for the heights given); those logs, newest first."""
        gone = [
            (key, raw)
            for key, (block, raw) in self._seen.items()
            if key[0] in canonical and HexBytes(block).to_0x_hex() != canonical[key[0]]
        ]
        for key, _ in gone:
            del self._seen[key]
        self._top = max((n for n, _ in self._seen), default=-1)
        return [raw for _, raw in sorted(gone, key=lambda kv: kv[0], reverse=True)]

    def admit(self, raw: Mapping[str, Any]) -> bool:
        """Whether log ``raw`` is to be delivered (it is then remembered)."""
        number, index = key = _key(raw)
        block = _block(raw)
        if raw.get("removed"):
            if self._seen.get(key, (None,))[0] == block:
                del self._seen[key]  # reorged out; its replacement will be new
            return False
        if self._seen.get(key, (None,))[0] == block or number < self._top - DEDUP_BLOCKS:
            return False  # delivered already (back-fill/live overlap, replay)
        if self.origin is not None and number < self.origin:
            return False
        after = self._after
        if (
            after is not None
            and number == after.block_number
            and index <= after.log_index
            and HexBytes(block).to_0x_hex() == after.block_hash
        ):
            return False  # taken by the consumer before a restart
        self._seen[key] = (block, raw)
        if number > self._top:
            self._top = number
            floor = number - DEDUP_BLOCKS
            if len(self._seen) > 4 * DEDUP_BLOCKS:
                self._seen = {k: v for k, v in self._seen.items() if k[0] >= floor}
        if self.cursor is None or number > self.cursor:
            self.cursor = number
        return True


__all__ = ["DEDUP_BLOCKS", "REPLAY_OVERLAP_BLOCKS", "Canonical", "Delivered"]
