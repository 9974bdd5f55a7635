"""One WebSocket JSON-RPC connection (AsyncWeb3 + WebSocketProvider).

Requests go through the provider's raw ``make_request`` so we see the node's
error objects (with revert data) unmodified and parse hex ourselves; web3's
contract layer is still available through :attr:`RpcConnection.w3` for
encoding calls and decoding events.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from web3 import AsyncWeb3, WebSocketProvider
from web3.exceptions import (
    PersistentConnectionClosedOK,
    ProviderConnectionError,
    TaskNotRunning,
    Web3RPCError,
)
from websockets.exceptions import ConnectionClosed, WebSocketException

from mecfed.errors import Unavailable

log = logging.getLogger(__name__)

# Anything that means "the transport is gone", as opposed to a node answer.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionClosed,
    WebSocketException,
    ProviderConnectionError,
    PersistentConnectionClosedOK,
    TaskNotRunning,
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
    """Hex-quantity or int (web3 formats some subscription payloads) to int."""
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
    """A reconnectable WebSocket connection with raw JSON-RPC requests."""

    def __init__(self, ws_url: str, *, request_timeout: float = 30.0) -> None:
        self.ws_url = ws_url
        self.request_timeout = request_timeout
        self.w3: AsyncWeb3[Any] = self._new_w3()
        self._reconnect_lock = asyncio.Lock()
        self._closed = False

    def _new_w3(self) -> AsyncWeb3[Any]:
        # max_connection_retries=1: our callers own the retry policy; web3's
        # own loop sleeps 1.75 s+ between attempts.
        provider = WebSocketProvider(
            self.ws_url,
            request_timeout=self.request_timeout,
            max_connection_retries=1,
        )
        # No middleware: requests and replies pass unmodified (no ENS lookups,
        # no AttributeDict), which our raw JSON-RPC handling relies on.
        return AsyncWeb3(provider, middleware=[])

    @property
    def provider(self) -> WebSocketProvider:
        return self.w3.provider  # type: ignore[return-value]

    async def connect(self, attempts: int = 1, backoff: Backoff | None = None) -> None:
        backoff = backoff or Backoff()
        for attempt in range(1, attempts + 1):
            try:
                # Not ``await AsyncWeb3(...)``: that would install process-wide
                # SIGINT/SIGTERM handlers behind our back.
                await self.provider.connect()
                return
            except TRANSPORT_ERRORS as exc:
                if attempt == attempts:
                    raise Unavailable(f"cannot connect to {self.ws_url}: {exc}") from exc
                await backoff.wait()

    async def reconnect(self) -> None:
        """Drops the current socket and opens a new one (serialised)."""
        async with self._reconnect_lock:
            if self._closed:
                raise Unavailable("connection closed")
            if self.is_open():
                return  # another task already reconnected
            # Same provider object: contracts bound to ``self.w3`` stay valid.
            await self._safe_disconnect()
            await self.connect(attempts=3)

    def is_open(self) -> bool:
        ws = getattr(self.provider, "_ws", None)
        task = getattr(self.provider, "_message_listener_task", None)
        return ws is not None and self.provider.is_open() and task is not None and not task.done()

    async def _safe_disconnect(self) -> None:
        try:
            await self.provider.disconnect()
        except Exception as exc:  # already broken; nothing left to release
            log.debug("disconnect of %s: %s", self.ws_url, exc)

    async def close(self) -> None:
        self._closed = True
        await self._safe_disconnect()

    async def request(self, method: str, params: list[Any], *, retry: bool = True) -> Any:
        """The ``result`` of one request; :class:`RpcError` for node errors.

        Transport failures reconnect and retry once when ``retry`` (only for
        idempotent requests), else raise :class:`Unavailable`.
        """
        for attempt in (0, 1):
            try:
                # Through the manager, not provider.make_request: the manager
                # registers the request id, otherwise web3's listener treats an
                # error reply as "stray" and kills the connection.
                # It returns the reply's ``result`` and raises for ``error``.
                return await self.w3.manager.socket_request(method, params)  # type: ignore[arg-type]
            except Web3RPCError as exc:
                error = (exc.rpc_response or {}).get("error") or {"message": str(exc)}
                raise RpcError(method, dict(error)) from None
            except TRANSPORT_ERRORS as exc:
                if not retry or attempt == 1 or self._closed:
                    raise Unavailable(f"{method} to {self.ws_url} failed: {exc!r}") from exc
                log.info("%s: transport error %r; reconnecting", method, exc)
                await self.reconnect()
                continue
        raise AssertionError("unreachable")
