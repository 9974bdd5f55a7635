"""MultiplexProvider's fixes to web3's WebSocketProvider."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from web3.exceptions import ProviderConnectionError
from websockets.asyncio.server import ServerConnection, serve

from mecfed.chain.anvil import Anvil
from mecfed.chain.provider import MultiplexProvider

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_waiting_for_a_reply_does_not_spin() -> None:
    """Stock web3 polls for the reply with sleep(0): a reply that takes 1 s
    costs 1 s of CPU. Here the wait is an event."""
    async with Anvil() as node:
        assert node.pid is not None
        provider = MultiplexProvider(node.ws_url)
        await provider.connect()
        try:
            os.kill(node.pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(0.8, os.kill, node.pid, signal.SIGCONT)
            cpu, wall = time.process_time(), time.monotonic()
            reply: Any = await provider.make_request("eth_blockNumber", [])  # type: ignore[arg-type]
            assert time.monotonic() - wall >= 0.7 and "result" in reply
            # Spinning would cost about the whole 0.8 s stall; the bound leaves
            # room for whatever else the process does meanwhile (GC, threads).
            assert time.process_time() - cpu < 0.4
        finally:
            os.kill(node.pid, signal.SIGCONT)
            await provider.disconnect()


async def test_a_clean_close_fails_the_waiting_request_at_once() -> None:
    """A node that closes the connection properly while a request waits: the
    request fails now, not after the request timeout."""

    async def close_without_reply(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close()

    async with serve(close_without_reply, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        provider = MultiplexProvider(f"ws://127.0.0.1:{port}", request_timeout=30)
        await provider.connect()
        try:
            start = time.monotonic()
            with pytest.raises(ProviderConnectionError):
                await provider.make_request("eth_blockNumber", [])  # type: ignore[arg-type]
            assert time.monotonic() - start < 2
        finally:
            await provider.disconnect()
