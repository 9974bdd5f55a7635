"""A :class:`~mecfed.chain.client.ChainClient`'s one WebSocket to its node,
kept up.

:func:`open_web3` opens it: web3's ``AsyncWeb3`` on a
:class:`~mecfed.chain.provider.MultiplexProvider`, tried a few times with
backoff. A :class:`Connection` then carries every request and every
subscription over it:

* a supervisor subscribes to new heads, runs the dispatcher that routes every
  subscription notification to its stream, and when the connection drops
  reconnects with backoff; every log stream then subscribes again and
  replays what it missed (:mod:`mecfed.chain.subscriptions`);
* a request waits for the connection, and an idempotent one is retried once
  across a reconnect (:meth:`Connection.request`);
* the streams are registered here, so that heads reach them, a lost
  connection is announced to them and closing the connection ends them;
* on every (re)connect the node's chain is checked against the expected
  :class:`~mecfed.chain.identity.Identity` before the connection counts as
  up; on a mismatch every request is refused (FailedPrecondition) until a
  later connection matches;
* heads are followed for reorgs (:class:`~mecfed.chain.reorgs.Canonical`):
  a head that replaces blocks is announced to every log stream, which
  delivers removals for what it delivered from the replaced blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound, TimeExhausted, Web3RPCError, Web3ValidationError

from mecfed.chain.events import EventDecoder, Head
from mecfed.chain.identity import Identity
from mecfed.chain.journal import Journal
from mecfed.chain.provider import TRANSIENT_ERRORS, TRANSPORT_ERRORS, MultiplexProvider
from mecfed.chain.reorgs import Canonical
from mecfed.chain.subscriptions import Backoff, HeadsSub, HeadStream, LogStream
from mecfed.errors import FailedPrecondition, InvalidArgument, MecfedError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_TIMEOUT_S = 5.0
_FOLLOW_ERRORS: tuple[type[BaseException], ...] = (MecfedError, *TRANSIENT_ERRORS)
UNSUBSCRIBE_TIMEOUT_S = 2.0


async def open_web3(url: str, *, request_timeout: float, attempts: int) -> AsyncWeb3[Any]:
    """An ``AsyncWeb3`` connected to ``url`` over a MultiplexProvider, after
    at most ``attempts`` tries; InvalidArgument for a URL that is not a
    WebSocket one, Unavailable when the node can't be reached."""
    try:
        provider = MultiplexProvider(url, request_timeout=request_timeout)
    except Web3ValidationError as exc:
        raise InvalidArgument(f"chain node URL {url!r}: {exc}") from None
    w3 = AsyncWeb3(provider)
    # No default middleware: it would ask for the chain id before every
    # call, and its block validation rejects PoA (QBFT/Clique) extraData.
    w3.middleware_onion.clear()
    backoff = Backoff()
    for attempt in itertools.count(1):
        try:
            await provider.connect()
            return w3
        except TRANSPORT_ERRORS as exc:
            if attempt >= attempts:
                raise Unavailable(f"cannot connect to {url}: {exc}") from exc
            await backoff.wait()
    raise AssertionError("unreachable")


class _Pulse:
    """An event that fires and re-arms: waiters take :meth:`current` before
    checking their condition, then wait on it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


class Connection:
    """The supervised connection of ``w3`` (opened by :func:`open_web3`).
    :meth:`start` it, end it with :meth:`close`."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        *,
        request_timeout: float = 30.0,
        identity: Identity | None = None,
    ) -> None:
        self.w3 = w3
        self.identity = identity
        self._provider = cast(MultiplexProvider, w3.provider)
        self.url = str(self._provider.endpoint_uri)
        self.request_timeout = request_timeout
        self.reconnects = 0  # connections opened after the first
        self._generation = 0  # +1 per connection
        self._connected = asyncio.Event()  # set while subscribed to heads
        self._state = _Pulse()  # fires on connect, disconnect and close
        self._heads = _Pulse()  # fires on every head
        self._latest: Mapping[str, Any] | None = None  # latest head (a block)
        self._stop = asyncio.Event()
        self._closing = False
        self._streams: set[LogStream] = set()
        self._head_streams: set[HeadStream] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._on_connect: list[Callable[[int], None]] = []
        self._canonical = Canonical()
        self._follow_queue: asyncio.Queue[Head | None] = asyncio.Queue()
        self._follower: asyncio.Task[None] | None = None
        self.reorgs = 0  # reorgs noticed in the heads

    async def start(self) -> None:
        """Starts the supervisor and waits (``request_timeout``) until the
        connection is up."""
        self._supervisor = asyncio.create_task(self._supervise(), name=f"chain {self.url}")
        self._follower = asyncio.create_task(self._follow(), name=f"chain heads {self.url}")
        await self.wait_connected(self.request_timeout)

    async def close(self) -> None:
        """Ends every stream and the connection (bounded)."""
        if self._closing:
            return
        self._closing = True
        self._stop.set()
        self._state.fire()
        closing: list[Awaitable[None]] = [s.close() for s in self._streams]
        closing += [s.close() for s in self._head_streams]
        await asyncio.gather(*closing, return_exceptions=True)
        tasks = {t for t in (self._supervisor, self._follower) if t is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._provider.disconnect(), CLOSE_TIMEOUT_S)
        self._connected.clear()

    # -- state ----------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The number of the current (or last) connection, from 1."""
        return self._generation

    @property
    def connected(self) -> bool:
        """Whether the connection is up (subscribed to new heads)."""
        return self._connected.is_set()

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has begun."""
        return self._closing

    @property
    def stop(self) -> asyncio.Event:
        """Set when :meth:`close` begins (retry loops wait on it)."""
        return self._stop

    @property
    def latest_block(self) -> Mapping[str, Any] | None:
        """The latest head the node pushed (a block), None before the first."""
        return self._latest

    @property
    def refused(self) -> str | None:
        """Why requests are refused (the chain's identity does not match),
        None when they are not."""
        return self.identity.error if self.identity is not None else None

    def on_connect(self, listener: Callable[[int], None]) -> None:
        """Calls ``listener(generation)`` whenever a connection is up."""
        self._on_connect.append(listener)

    def next_head(self) -> asyncio.Event:
        """An event set when the next head arrives: take it before checking
        what the head may change, then wait on it."""
        return self._heads.current()

    # -- streams --------------------------------------------------------------

    def head_stream(self) -> HeadStream:
        """A new head stream (fed by the one shared ``newHeads`` subscription)."""
        if self._closing:
            raise Unavailable("chain client closed")
        stream = HeadStream(self)
        self._head_streams.add(stream)
        return stream

    def log_stream(
        self,
        query: Mapping[str, Any],
        from_block: int | None,
        decoder: EventDecoder,
        *,
        confirmations: int = 0,
        name: str | None = None,
        journal: Journal | None = None,
        removals: bool = True,
    ) -> LogStream:
        """A new log stream (subscribing at once)."""
        if self._closing:
            raise Unavailable("chain client closed")
        stream = LogStream(
            self,
            query,
            from_block,
            decoder,
            confirmations=confirmations,
            name=name,
            journal=journal,
            removals=removals,
        )
        self._streams.add(stream)
        return stream

    def remove_stream(self, stream: LogStream | HeadStream) -> None:
        """Unregisters a closed stream."""
        if isinstance(stream, LogStream):
            self._streams.discard(stream)
        else:
            self._head_streams.discard(stream)

    # -- requests -------------------------------------------------------------

    async def request(
        self, make: Callable[[], Awaitable[T]], what: str, *, retry: bool = True
    ) -> T:
        """``await make()`` on the connection. Transport failures wait for the
        reconnection and retry once when ``retry`` (idempotent requests only),
        else raise Unavailable; node errors (web3 exceptions) pass through."""
        for attempt in (0, 1):
            generation = await self.wait_connected(self.request_timeout)
            if (refused := self.refused) is not None:
                raise FailedPrecondition(f"{what}: refused: {refused}")
            try:
                return await make()
            except TimeExhausted as exc:
                raise Unavailable(f"{what}: {exc}") from exc
            except TRANSPORT_ERRORS as exc:
                if not retry or attempt == 1 or self._closing:
                    raise Unavailable(f"{what} to {self.url} failed: {exc!r}") from exc
                log.info("%s: %r; retrying after the reconnection", what, exc)
                await self._wait_reconnected(generation)
        raise AssertionError("unreachable")

    async def raw_logs(self, query: Mapping[str, Any], start: int, end: int) -> list[Any]:
        """``eth_getLogs`` of ``query`` in blocks ``start..end``, in chain order."""
        params = cast(Any, {**query, "fromBlock": start, "toBlock": end})
        try:
            logs = await self.request(lambda: self.w3.eth.get_logs(params), "eth_getLogs")
        except Web3RPCError as exc:
            raise Unavailable(f"eth_getLogs {start}..{end} refused: {exc}") from exc
        return sorted(logs, key=lambda r: (int(r["blockNumber"]), int(r["logIndex"])))

    async def block_hash(self, number: int) -> str | None:
        """The hash of canonical block ``number`` (None: no such block yet)."""
        try:
            block = await self.request(
                lambda: self.w3.eth.get_block(number), "eth_getBlockByNumber"
            )
        except (BlockNotFound, Web3RPCError):
            return None
        return HexBytes(block["hash"]).to_0x_hex()

    async def wait_connected(self, timeout: float | None) -> int:
        """The current connection's generation, once connected."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            state = self._state.current()
            if self._closing:
                raise Unavailable("chain client closed")
            if self._connected.is_set():
                return self._generation
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise Unavailable(f"not connected to {self.url} (for {timeout:.0f} s)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wait(), remaining)

    async def _wait_reconnected(self, generation: int) -> None:
        """Until a connection newer than ``generation`` is up (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        while not self._closing and loop.time() < deadline:
            state = self._state.current()
            if self._generation > generation and self._connected.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wait(), deadline - loop.time())

    # -- subscriptions --------------------------------------------------------

    async def subscribe(self, sub: Any, *, connecting: bool = False) -> None:
        """``eth_subscribe`` through web3's subscription manager (which the
        dispatcher looks subscriptions up in). ``connecting``: for the
        supervisor, before the connection counts as up."""
        subscribe = self.w3.subscription_manager.subscribe
        try:
            if connecting:
                await subscribe(sub)
            else:
                await self.request(lambda: subscribe(sub), "eth_subscribe", retry=False)
        except Web3RPCError as exc:
            raise Unavailable(f"eth_subscribe refused: {exc}") from exc

    async def unsubscribe(self, sub: Any) -> None:
        """``eth_unsubscribe`` if ``sub`` belongs to the live connection
        (bounded, errors ignored); forgotten by web3 in any case."""
        manager = self.w3.subscription_manager
        try:
            if (
                not self._closing
                and sub.generation == self._generation
                and self._connected.is_set()
                and sub in manager.subscriptions
            ):
                with contextlib.suppress(Exception):
                    # Not sub.unsubscribe(): web3 then queues a marker for
                    # handler-based processing we don't run, and after 500
                    # unsubscribes its queue is full and unsubscribe hangs.
                    await asyncio.wait_for(self.w3.eth._unsubscribe(sub.id), UNSUBSCRIBE_TIMEOUT_S)
        finally:
            if sub in manager.subscriptions:
                manager._remove_subscription(sub)

    def _forget_subscriptions(self) -> None:
        """Subscriptions of a closed connection (their ids mean nothing now)."""
        manager = self.w3.subscription_manager
        for sub in list(manager.subscriptions):
            manager._remove_subscription(sub)

    # -- the supervisor -------------------------------------------------------

    async def _supervise(self) -> None:
        """Keeps the connection up: subscribes to heads, dispatches every
        notification, and on a drop reconnects with backoff; the log streams
        then subscribe again and replay."""
        backoff = Backoff()
        failures = 0
        have_connection = True  # open_web3() opened the first one
        while not self._closing:
            if not have_connection:
                try:
                    await self._provider.connect()
                except TRANSPORT_ERRORS as exc:
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    log.log(level, "cannot reach %s (%s); retrying", self.url, exc)
                    failures += 1
                    await backoff.wait(self._stop)
                    continue
                self.reconnects += 1
            have_connection = False
            self._generation += 1
            generation = self._generation
            dispatcher = asyncio.create_task(self._dispatch(), name=f"chain dispatch {self.url}")
            reason = "connection closed"
            try:
                if self.identity is not None:
                    await asyncio.wait_for(self.identity.check(self.w3), self.request_timeout)
                await self.subscribe(HeadsSub(self._on_head, generation), connecting=True)
                failures = 0
                backoff.reset()
                self._connected.set()
                self._state.fire()
                if generation > 1:
                    self._follow_queue.put_nowait(None)  # heads were missed: verify
                for listener in self._on_connect:
                    listener(generation)
                await dispatcher  # until the connection ends
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = repr(exc)
            finally:
                self._connected.clear()
                self._state.fire()
                dispatcher.cancel()
                for stream in list(self._streams):
                    stream.connection_lost(generation)
                self._forget_subscriptions()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._provider.disconnect(), CLOSE_TIMEOUT_S)
            if not self._closing:
                log.warning("connection to %s lost (%s); reconnecting", self.url, reason)
                await backoff.wait(self._stop)

    async def _dispatch(self) -> None:
        """Routes every subscription notification to its stream."""
        manager = self.w3.subscription_manager
        async for message in self.w3.socket.process_subscriptions():
            sub = manager.get_by_id(message["subscription"])
            sink = getattr(sub, "sink", None)
            if sink is None:
                continue
            try:
                sink(message["result"])
            except Exception:
                log.exception("subscription %s: notification not handled", sub)

    async def _follow(self) -> None:
        """Follows the heads for reorgs (see :mod:`mecfed.chain.reorgs`) and
        passes each head on to the log streams that confirm."""
        while True:
            head = await self._follow_queue.get()
            if self.refused is not None:
                continue  # heads of another chain say nothing about ours
            fork = None
            try:
                if head is None:
                    fork = await self._canonical.verify(self.block_hash)
                else:
                    fork = await self._canonical.advance(head, self.block_hash)
            except _FOLLOW_ERRORS as exc:
                log.debug("following heads: %r", exc)
            if fork is not None:
                self.reorgs += 1
                log.warning("chain reorg at %s: blocks from %d replaced", self.url, fork)
            self._announce(fork, head)

    def _announce(self, fork: int | None, head: Head | None) -> None:
        # A function of its own: no loop variable of the long-lived follower
        # keeps a (closed) stream alive.
        for stream in list(self._streams):
            if fork is not None:
                stream.reorged(fork)
            if head is not None:
                stream.new_head(head.number)

    def _on_head(self, block: Mapping[str, Any]) -> None:
        head = Head.of(block)
        self._latest = block
        self._follow_queue.put_nowait(head)
        self._heads.fire()
        for stream in list(self._head_streams):
            stream.push(head)
