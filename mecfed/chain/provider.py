"""web3's WebSocketProvider with three fixes for a long-running client that
multiplexes requests and subscriptions over one connection (web3 8.0).

1. A request waits for its response on an event the message listener sets,
   instead of polling the response cache with ``asyncio.sleep(0)``: stock
   web3 burns a whole core for as long as any request is pending (measured:
   1 s of CPU for a reply that took 1 s), which on a loaded node starves the
   node itself.
2. A waiting request fails at once when the connection ends. Stock web3
   notices only a listener that died of an exception; after a clean close
   it waits for the whole request timeout.
3. The listener does not check the response cache for "stray" error replies
   after every message. An error reply that arrived before web3 recorded its
   request would be raised *in the listener*, ending the connection.

Everything else (framing, formatting, the subscription queue) is web3's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from web3._utils.caching import generate_cache_key
from web3.exceptions import (
    PersistentConnectionError,
    ProviderConnectionError,
    TaskNotRunning,
    TimeExhausted,
    Web3Exception,
)
from web3.providers.persistent import WebSocketProvider
from web3.providers.persistent.request_processor import RequestProcessor
from web3.types import RPCId, RPCResponse
from web3.utils import SimpleCache
from websockets.exceptions import WebSocketException

# Anything that means "the connection is gone", as opposed to a node answer.
# (websockets' ConnectionClosed is a WebSocketException; TimeoutError an OSError.)
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    ProviderConnectionError,
    PersistentConnectionError,
    TaskNotRunning,
    WebSocketException,
    OSError,
)
# Worth retrying a subscription after: the connection, or a node error.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, Web3Exception)

# Large enough for an eth_getLogs back-fill of a busy contract (websockets'
# default is 1 MiB, and a bigger message closes the connection).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Request records (in-flight requests and live subscriptions) and unread
# replies; web3's 500 would evict a live subscription's record under load.
CACHE_SIZE = 20_000


class _SignallingProcessor(RequestProcessor):
    """Wakes the provider's waiting requests whenever a reply is cached."""

    def __init__(self, provider: MultiplexProvider, **kwargs: Any) -> None:
        super().__init__(provider, **kwargs)
        self._multiplex = provider
        self._request_response_cache = SimpleCache(CACHE_SIZE)

    async def cache_raw_response(self, raw_response: Any, subscription: bool = False) -> None:
        await super().cache_raw_response(raw_response, subscription=subscription)
        if not subscription:
            self._multiplex.wake_waiters()


class MultiplexProvider(WebSocketProvider):
    """One WebSocket for requests and every subscription (see module doc)."""

    def __init__(
        self,
        endpoint_uri: str,
        *,
        request_timeout: float = 30.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 20.0,
    ) -> None:
        super().__init__(
            endpoint_uri,
            websocket_kwargs={
                "max_size": MAX_MESSAGE_BYTES,
                "ping_interval": ping_interval,
                "ping_timeout": ping_timeout,
                "open_timeout": request_timeout,
                "compression": None,
                # The node is addressed directly, whatever the environment says.
                "proxy": None,
            },
            request_timeout=request_timeout,
            # Reconnecting (with backoff) is the client's job, not connect()'s.
            max_connection_retries=1,
            request_information_cache_size=CACHE_SIZE,
            subscription_response_queue_size=CACHE_SIZE,
        )
        self._request_processor = _SignallingProcessor(
            self,
            subscription_response_queue_size=CACHE_SIZE,
            request_information_cache_size=CACHE_SIZE,
        )
        self._arrived = asyncio.Event()

    def wake_waiters(self) -> None:
        """Requests waiting for a reply check again (a reply arrived, or the
        connection ended)."""
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def listening(self) -> bool:
        task = self._message_listener_task
        return task is not None and not task.done()

    def abort(self) -> None:
        """Drops the TCP connection without a closing handshake (a network
        failure, as far as both ends can tell). For tests."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    def _message_listener_callback(self, message_listener_task: asyncio.Task[None]) -> None:
        super()._message_listener_callback(message_listener_task)
        self.wake_waiters()  # waiting requests re-check and fail: nobody will answer them

    def _raise_stray_errors_from_cache(self) -> None:
        """Error replies belong to their requests, which raise them (fix 3)."""

    async def _get_response_for_request_id(
        self, request_id: RPCId | list[RPCId], timeout: float | None = None
    ) -> RPCResponse:
        timeout = self.request_timeout if timeout is None else timeout
        key = generate_cache_key(request_id)
        processor = self._request_processor
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if key in processor._request_response_cache:
                        response: RPCResponse = await processor.pop_raw_response(cache_key=key)
                        return response
                    self._handle_listener_task_exceptions()
                    if not self.listening():
                        raise ProviderConnectionError(
                            f"connection to {self.endpoint_uri} closed before the reply "
                            f"to request {request_id}"
                        )
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeExhausted(
                f"no reply to request {request_id} from {self.endpoint_uri} within {timeout} s"
            ) from None
