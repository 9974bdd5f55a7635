"""One WebSocket JSON-RPC connection to an Ethereum node.

Plain JSON-RPC 2.0 over the ``websockets`` library: a reader task routes
replies to the waiting request by id and ``eth_subscription`` notifications
to a queue. Replies are passed on unmodified, so callers see the node's
error objects (with revert data) as the node sent them and parse hex
quantities themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from mecfed.errors import Unavailable

log = logging.getLogger(__name__)

# Large enough for an eth_getLogs back-fill of a busy contract.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ConnectionLost(ConnectionError):
    """The socket closed (or was never open) while a request waited."""


# Anything that means "the transport is gone", as opposed to a node answer.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionClosed,
    WebSocketException,
    ConnectionLost,
    OSError,
    TimeoutError,
)


class RpcError(Exception):
    """The node answered a request with a JSON-RPC error object."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.error = error
        self.code = error.get("code")
        self.rpc_message = str(error.get("message", ""))
        super().__init__(f"{method}: {self.rpc_message} (code {self.code})")


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


def to_int(value: Any) -> int:
    """Hex quantity (or int, or big-endian bytes) to int."""
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return int.from_bytes(value, "big")
    return int(str(value), 16) if str(value).startswith("0x") else int(value)


def to_hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if hasattr(value, "to_0x_hex"):
        return value.to_0x_hex()
    return str(value)


class RpcConnection:
    """A reconnectable WebSocket connection with raw JSON-RPC requests and
    ``eth_subscribe`` notifications."""

    def __init__(self, ws_url: str, *, request_timeout: float = 30.0) -> None:
        self.ws_url = ws_url
        self.request_timeout = request_timeout
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._notifications: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reconnect_lock = asyncio.Lock()
        self._closed = False

    async def connect(self, attempts: int = 1, backoff: Backoff | None = None) -> None:
        backoff = backoff or Backoff()
        for attempt in range(1, attempts + 1):
            try:
                await self._open()
                return
            except TRANSPORT_ERRORS as exc:
                if attempt == attempts:
                    raise Unavailable(f"cannot connect to {self.ws_url}: {exc}") from exc
                await backoff.wait()

    async def _open(self) -> None:
        # proxy=None: the node is addressed directly, whatever the environment says.
        ws = await ws_connect(
            self.ws_url,
            proxy=None,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            open_timeout=self.request_timeout,
        )
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name=f"rpc-reader {self.ws_url}")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                for item in message if isinstance(message, list) else [message]:
                    self._dispatch(item)
        except (ConnectionClosed, WebSocketException, OSError) as exc:
            log.debug("connection to %s ended: %r", self.ws_url, exc)
        except json.JSONDecodeError as exc:
            log.warning("%s sent invalid JSON (%s); dropping the connection", self.ws_url, exc)
        finally:
            # Nobody waits forever on a dead socket: requests fail, streams end.
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionLost(f"connection to {self.ws_url} lost"))
            self._waiting.clear()
            self._notifications.put_nowait(None)
            with contextlib.suppress(Exception):
                await ws.close()

    def _dispatch(self, item: dict[str, Any]) -> None:
        if item.get("method") == "eth_subscription":
            self._notifications.put_nowait(item.get("params") or {})
            return
        fut = self._waiting.pop(item.get("id"), None)  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(item)

    async def reconnect(self) -> None:
        """Drops the current socket and opens a new one (serialised)."""
        async with self._reconnect_lock:
            if self._closed:
                raise Unavailable("connection closed")
            if self.is_open():
                return  # another task already reconnected
            await self.disconnect()
            self._notifications = asyncio.Queue()
            await self.connect(attempts=3)

    def is_open(self) -> bool:
        return (
            self._ws is not None
            and self._reader is not None
            and not self._reader.done()
            and self._ws.close_code is None
        )

    async def disconnect(self) -> None:
        """Closes the socket; pending requests fail with a transport error.
        The connection can be opened again (tests use this as a network drop)."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 5)

    async def close(self) -> None:
        self._closed = True
        await self.disconnect()

    async def _call(self, method: str, params: list[Any]) -> Any:
        ws = self._ws
        if ws is None or not self.is_open():
            raise ConnectionLost(f"not connected to {self.ws_url}")
        request_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        try:
            if not self.is_open():  # the reader ended after the check above
                raise ConnectionLost(f"connection to {self.ws_url} lost")
            await ws.send(
                json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            )
            reply = await asyncio.wait_for(fut, self.request_timeout)
        finally:
            self._waiting.pop(request_id, None)
        if "error" in reply and reply["error"] is not None:
            raise RpcError(method, dict(reply["error"]))
        return reply.get("result")

    async def request(self, method: str, params: list[Any], *, retry: bool = True) -> Any:
        """The ``result`` of one request; :class:`RpcError` for node errors.

        Transport failures reconnect and retry once when ``retry`` (only for
        idempotent requests), else raise :class:`Unavailable`.
        """
        for attempt in (0, 1):
            try:
                return await self._call(method, params)
            except TRANSPORT_ERRORS as exc:
                if not retry or attempt == 1 or self._closed:
                    raise Unavailable(f"{method} to {self.ws_url} failed: {exc!r}") from exc
                log.info("%s: transport error %r; reconnecting", method, exc)
                await self.reconnect()
        raise AssertionError("unreachable")

    async def subscribe(self, kind: str, *params: Any) -> str:
        """``eth_subscribe``; returns the subscription id. Notifications of
        this connection arrive through :meth:`notifications`."""
        return str(await self.request("eth_subscribe", [kind, *params], retry=False))

    async def notifications(self) -> AsyncIterator[dict[str, Any]]:
        """``{"subscription", "result"}`` of each notification, until the
        socket closes (then :class:`ConnectionLost` is raised)."""
        while True:
            item = await self._notifications.get()
            if item is None:
                raise ConnectionLost(f"subscription connection to {self.ws_url} lost")
            yield item
