"""Log and head streams over the client's one multiplexed connection.

Every stream is an ``eth_subscribe`` on the WebSocket of a
:class:`~mecfed.chain.connection.Connection` (web3's subscription manager);
the connection's dispatcher routes each notification to its stream. Heads
share one ``newHeads`` subscription.

Log streams never miss or repeat an event across reconnects:

1. subscribe first (the node starts sending live logs), then
2. back-fill with ``eth_getLogs`` from the cursor to the head read *after*
   subscribing, then
3. drain the live logs.

A delivered log is remembered by ``(blockNumber, logIndex)`` with its block
hash: the overlap of back-fill and live logs, and of a replay, is dropped,
while a log at the same position in a *different* block (a reorg replaced
the block) is delivered. When the connection drops it is reopened with
backoff and every live stream subscribes again on the new connection and
replays from its last delivered block (a few blocks earlier, for reorgs that
happened meanwhile), so logs emitted while disconnected are delivered
exactly once. Heads are wake-ups: heads missed while disconnected are not
replayed.

Reorgs (:mod:`mecfed.chain.reorgs`): a delivered log whose block is
replaced (``removed: true`` from the node, a reorg the connection noticed in
the heads, or a new log that conflicts with what was delivered) is delivered
again as a removal (``Event.removed``), newest first, before what replaced
it. With ``confirmations`` = d > 0 (Clique: forks of a few blocks happen) a
log is delivered only once d blocks are on top of its block, fetched with
``eth_getLogs`` as heads arrive (the node's canonical chain at that moment);
0 (QBFT and other instant-finality networks) delivers as the node pushes.

Consumers that cannot undo (``removals=False``) get no removals: a
replaced log is forgotten (its replacement is delivered) and logged.

A named stream with a journal keeps a durable cursor: the last log its
consumer took (it asked for the next one, so it handled this one); after a
restart the stream resumes right after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from web3.utils.subscriptions import LogsSubscription, NewHeadsSubscription

from mecfed.chain.events import Event, EventDecoder, Head
from mecfed.chain.journal import Cursor, Journal
from mecfed.chain.provider import TRANSIENT_ERRORS
from mecfed.chain.reorgs import DEDUP_BLOCKS, Delivered
from mecfed.errors import MecfedError, Unavailable

if TYPE_CHECKING:
    from mecfed.chain.connection import Connection

log = logging.getLogger(__name__)

GETLOGS_CHUNK = 5000  # Besu's default --rpc-max-logs-range
_RETRYABLE: tuple[type[BaseException], ...] = (MecfedError, *TRANSIENT_ERRORS)


class Backoff:
    """Exponential backoff with jitter, for reconnect loops."""

    def __init__(self, first: float = 0.05, factor: float = 2.0, cap: float = 5.0) -> None:
        self.first, self.factor, self.cap = first, factor, cap
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    async def wait(self, stop: asyncio.Event | None = None) -> None:
        """Sleeps the current delay (returns early once ``stop`` is set)."""
        delay = self.delay * random.uniform(0.8, 1.2)
        self.delay = min(self.delay * self.factor, self.cap)
        if stop is None:
            await asyncio.sleep(delay)
            return
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass


# Unique labels: web3 derives a default one from the parameters and makes it
# unique before subscribing, so concurrent identical subscriptions get the
# same label and corrupt its subscription registry.
_labels = itertools.count(1)


class _Sink:
    """Where the dispatcher puts a subscription's notifications."""

    sink: Callable[[Any], None]
    generation: int


class LogsSub(LogsSubscription, _Sink):
    def __init__(self, query: Mapping[str, Any], sink: Callable[[Any], None], generation: int):
        super().__init__(
            address=query.get("address"), topics=query.get("topics"), label=_label("logs")
        )
        self.sink = sink
        self.generation = generation


class HeadsSub(NewHeadsSubscription, _Sink):
    def __init__(self, sink: Callable[[Any], None], generation: int) -> None:
        super().__init__(label=_label("heads"))
        self.sink = sink
        self.generation = generation


def _label(kind: str) -> str:
    return f"mecfed-{kind}-{next(_labels)}"


@dataclass(frozen=True)
class ConnectionLost:
    """Put in a stream's inbox when connection ``generation`` ended."""

    generation: int


class _End:
    pass


_END = _End()


@dataclass(frozen=True)
class Reorg:
    """Put in a stream's inbox: blocks from ``fork`` up were replaced."""

    fork: int


@dataclass(frozen=True)
class NewHead:
    """Put in a confirming stream's inbox: block ``number`` arrived."""

    number: int


class LogStream:
    """Decoded logs matching a node-side filter, from ``from_block`` (None:
    from the next block), surviving reconnects and reorgs (see the module
    doc). ``async for event in stream``; ``await stream.close()`` ends it
    (from any task). ``confirmations``: blocks on top of a log's block
    before it is delivered; ``name`` with ``journal``: a durable cursor
    (resumes after the last log taken, whatever ``from_block`` says)."""

    def __init__(
        self,
        connection: Connection,
        query: Mapping[str, Any],
        from_block: int | None,
        decoder: EventDecoder,
        *,
        confirmations: int = 0,
        name: str | None = None,
        journal: Journal | None = None,
        removals: bool = True,
    ) -> None:
        if confirmations < 0 or confirmations > DEDUP_BLOCKS:
            raise ValueError(f"confirmations must be within 0..{DEDUP_BLOCKS}")
        self._connection = connection
        self.query = dict(query)
        self._decoder = decoder
        self.confirmations = confirmations
        self.removals = removals  # False: reorged logs are forgotten, not delivered
        self.name = name
        self._journal = journal if name is not None else None
        after = self._journal.cursor(name) if self._journal is not None and name else None
        self._delivered = Delivered(from_block, after)
        self._fetched: int | None = None  # confirming: fetched up to this block
        self._taken: Event | None = None  # the last addition handed out
        self.connects = 0  # sessions that got live, for tests and metrics
        self.reorgs = 0  # reorgs that reached this stream, for tests and metrics
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._out: asyncio.Queue[Event | _End | BaseException] = asyncio.Queue()
        self._live = asyncio.Event()
        self._closed = False
        self._sub: LogsSub | None = None
        self._task = asyncio.create_task(self._run(), name=f"logs {self.query}")

    # -- consumer side --------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        self._commit()
        item = await self._out.get()
        if isinstance(item, _End):
            self._out.put_nowait(item)  # every later call ends too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._out.put_nowait(_END)
            raise item
        if not item.removed:
            self._taken = item
        return item

    def _commit(self) -> None:
        """The consumer asks for the next event: it handled the last one."""
        taken, self._taken = self._taken, None
        if taken is not None and self._journal is not None and self.name:
            self._journal.save_cursor(
                self.name, Cursor(taken.block_number, taken.log_index, taken.block_hash)
            )

    async def wait_live(self, timeout: float = 10.0) -> None:
        """Waits until the stream is subscribed and caught up; events after
        this are delivered live."""
        await asyncio.wait_for(self._live.wait(), timeout)

    @property
    def cursor(self) -> int | None:
        """The block a replay starts from (inclusive; None: not yet known)."""
        return self._delivered.cursor

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=5)
        await self._drop_subscription()
        self._connection.remove_stream(self)
        self._out.put_nowait(_END)

    def connection_lost(self, generation: int) -> None:
        """Connection ``generation`` ended (called by the connection): the
        stream subscribes again on the next one and replays."""
        self._inbox.put_nowait(ConnectionLost(generation))

    def reorged(self, fork: int) -> None:
        """Blocks from ``fork`` up were replaced (called by the connection)."""
        self._inbox.put_nowait(Reorg(fork))

    def new_head(self, number: int) -> None:
        """Block ``number`` arrived (called by the connection)."""
        if self.confirmations:
            self._inbox.put_nowait(NewHead(number))

    # -- the subscription -----------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        failures = 0  # consecutive; only the first is a warning
        try:
            while not self._closed and not self._connection.closing:
                try:
                    generation = await self._connection.wait_connected(timeout=None)
                    await self._session(generation)
                    backoff.reset()  # the connection ended; a new one is coming
                    failures = 0
                except _RETRYABLE as exc:
                    if self._closed or self._connection.closing:
                        return
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    log.log(level, "log subscription %s failed (%r); retrying", self.query, exc)
                    failures += 1
                    await self._drop_subscription()
                    await backoff.wait(self._connection.stop)
                finally:
                    self._live.clear()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: let the consumer see it
            self._out.put_nowait(exc)
        finally:
            self._out.put_nowait(_END)

    async def _session(self, generation: int) -> None:
        connection = self._connection
        self._sub = None  # one of an earlier connection is gone with it
        if not self.confirmations:  # confirming streams fetch on heads instead
            sub = LogsSub(self.query, self._inbox.put_nowait, generation)
            await connection.subscribe(sub)
            self._sub = sub
            if connection.generation != generation:
                raise Unavailable("the connection changed while subscribing")
        # The head is read after subscribing: a log the subscription missed
        # (it came before the node knew of us) lies at or below it.
        head = await self._head()
        start = self._delivered.replay_start(head)
        if self._fetched is not None:
            start = min(start, self._fetched + 1)
        await self._backfill(start, head - self.confirmations)
        self.connects += 1
        self._live.set()
        while True:
            item = await self._inbox.get()
            if isinstance(item, ConnectionLost):
                if item.generation == generation:
                    return
                continue  # of an earlier connection
            if isinstance(item, Reorg):
                self.reorgs += 1
                await self._unwind(item.fork)
                head = await self._head()
                await self._backfill(item.fork, head - self.confirmations)
            elif isinstance(item, NewHead):
                assert self._fetched is not None
                await self._backfill(self._fetched + 1, item.number - self.confirmations)
            else:
                await self._accept(item)

    async def _head(self) -> int:
        connection = self._connection
        return int(
            await connection.request(lambda: connection.w3.eth.block_number, "eth_blockNumber")
        )

    async def _backfill(self, start: int, end: int) -> None:
        """Delivers the logs of blocks ``start..end`` not delivered yet."""
        start = max(start, self._delivered.origin or 0)
        while start <= end:
            chunk_end = min(end, start + GETLOGS_CHUNK - 1)
            for raw in await self._connection.raw_logs(self.query, start, chunk_end):
                await self._accept(raw)
            start = chunk_end + 1
        if end >= 0:
            self._delivered.caught_up(end)
        floor = (self._delivered.origin or 0) - 1
        self._fetched = max(-1 if self._fetched is None else self._fetched, end, floor)

    async def _accept(self, raw: Mapping[str, Any]) -> None:
        if raw.get("removed"):
            if self._delivered.delivered(raw):
                self._delivered.admit(raw)  # forgets it
                self._emit(raw, removed=True)
            return
        if self._delivered.conflicts(raw):
            # Its block replaced one delivered from, and maybe those below.
            await self._unwind(int(raw["blockNumber"]) - DEDUP_BLOCKS)
        if self._delivered.admit(raw):
            self._emit(raw)

    async def _unwind(self, fork: int) -> None:
        """Delivers the removal of every delivered log from ``fork`` up
        whose block is no longer canonical. Checked from the newest down to
        the first canonical block: the blocks below it are its ancestors."""
        canonical: dict[int, str | None] = {}
        for height in reversed(self._delivered.heights(fork)):
            canonical[height] = await self._connection.block_hash(height)
            if canonical[height] == self._delivered.hash_at(height):
                break
        for raw in self._delivered.unwind(canonical):
            self._emit(raw, removed=True)

    def _emit(self, raw: Mapping[str, Any], removed: bool = False) -> None:
        event = self._decoder(raw)
        if event is None:
            return
        if removed:
            event = dataclasses.replace(event, removed=True)
            if not self.removals:
                log.warning(
                    "reorg: %s log of block %d (tx %s) removed; not delivered (removals off)",
                    event.name,
                    event.block_number,
                    event.tx_hash,
                )
                return
        self._out.put_nowait(event)

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await self._connection.unsubscribe(sub)


class HeadStream:
    """New block heads as they arrive (wake-ups: not replayed after a
    reconnect). ``async for head in stream``; ``await stream.close()``."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._queue: asyncio.Queue[Head | _End] = asyncio.Queue()
        self._closed = False

    def push(self, head: Head) -> None:
        """A new head (called by the connection)."""
        if not self._closed:
            self._queue.put_nowait(head)

    def __aiter__(self) -> AsyncIterator[Head]:
        return self

    async def __anext__(self) -> Head:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)
            raise StopAsyncIteration
        return item

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._connection.remove_stream(self)
            self._queue.put_nowait(_END)
