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
the block) is delivered. ``removed: true`` logs are dropped. When the
connection drops it is reopened with backoff and every live stream
subscribes again on the new connection and replays from its last delivered
block (a few blocks earlier, for reorgs that happened meanwhile), so logs
emitted while disconnected are delivered exactly once. Heads are wake-ups:
heads missed while disconnected are not replayed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hexbytes import HexBytes
from web3.utils.subscriptions import LogsSubscription, NewHeadsSubscription

from mecfed.chain.events import Event, EventDecoder, Head
from mecfed.chain.provider import TRANSIENT_ERRORS
from mecfed.errors import MecfedError, Unavailable

if TYPE_CHECKING:
    from mecfed.chain.connection import Connection

log = logging.getLogger(__name__)

# Blocks before the last delivered one that a replay fetches again, so a
# reorg while disconnected is caught up (QBFT is final: none there).
REPLAY_OVERLAP_BLOCKS = 8
# How far below the highest delivered block the dedup memory reaches.
DEDUP_BLOCKS = 64
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


class Delivered:
    """The logs a stream has delivered, by ``(blockNumber, logIndex)`` with
    their block hash (see the module doc), and where to replay from."""

    def __init__(self, from_block: int | None) -> None:
        self.origin = from_block  # nothing before this block is delivered
        self.cursor = from_block  # replay from here (inclusive)
        self._seen: dict[tuple[int, int], bytes] = {}  # (block, index) -> block hash
        self._top = -1  # highest block delivered

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

    def admit(self, raw: Mapping[str, Any]) -> bool:
        """Whether log ``raw`` is to be delivered (it is then remembered)."""
        number, index = int(raw["blockNumber"]), int(raw["logIndex"])
        block = bytes(HexBytes(raw["blockHash"]))
        key = (number, index)
        if raw.get("removed"):
            if self._seen.get(key) == block:
                del self._seen[key]  # reorged out; its replacement will be new
            return False
        if self._seen.get(key) == block or number < self._top - DEDUP_BLOCKS:
            return False  # delivered already (back-fill/live overlap, replay)
        if self.origin is not None and number < self.origin:
            return False
        self._seen[key] = block
        if number > self._top:
            self._top = number
            floor = number - DEDUP_BLOCKS
            if len(self._seen) > 4 * DEDUP_BLOCKS:
                self._seen = {k: v for k, v in self._seen.items() if k[0] >= floor}
        if self.cursor is None or number > self.cursor:
            self.cursor = number
        return True


class LogStream:
    """Decoded logs matching a node-side filter, from ``from_block`` (None:
    from the next block), surviving reconnects. ``async for event in
    stream``; ``await stream.close()`` ends it (from any task)."""

    def __init__(
        self,
        connection: Connection,
        query: Mapping[str, Any],
        from_block: int | None,
        decoder: EventDecoder,
    ) -> None:
        self._connection = connection
        self.query = dict(query)
        self._decoder = decoder
        self._delivered = Delivered(from_block)
        self.connects = 0  # sessions that got live, for tests and metrics
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
        item = await self._out.get()
        if isinstance(item, _End):
            self._out.put_nowait(item)  # every later call ends too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._out.put_nowait(_END)
            raise item
        return item

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
        sub = LogsSub(self.query, self._inbox.put_nowait, generation)
        await connection.subscribe(sub)
        self._sub = sub
        if connection.generation != generation:
            raise Unavailable("the connection changed while subscribing")
        # The head is read after subscribing: a log the subscription missed
        # (it came before the node knew of us) lies at or below it.
        head = await connection.request(lambda: connection.w3.eth.block_number, "eth_blockNumber")
        start = self._delivered.replay_start(head)
        while start <= head:
            end = min(head, start + GETLOGS_CHUNK - 1)
            for raw in await connection.raw_logs(self.query, start, end):
                self._accept(raw)
            start = end + 1
        self._delivered.caught_up(head)
        self.connects += 1
        self._live.set()
        while True:
            item = await self._inbox.get()
            if isinstance(item, ConnectionLost):
                if item.generation == generation:
                    return
                continue  # of an earlier connection
            self._accept(item)

    def _accept(self, raw: Mapping[str, Any]) -> None:
        if not self._delivered.admit(raw):
            return
        event = self._decoder(raw)
        if event is not None:
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
