"""Log subscriptions: node-side topic filters, back-fill, reconnect + replay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from mecfed.chain import subscriptions
from mecfed.chain.anvil import Anvil, free_port
from mecfed.chain.client import ChainClient, address_topic, event_topic, uint_topic
from mecfed.chain.subscriptions import LogStream

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Collector:
    """Drains a stream in the background into a queue."""

    def __init__(self, stream: LogStream) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.stream:
            await self.queue.put(event)

    async def take(self, n: int, timeout: float = 10.0) -> list[Any]:
        return [await asyncio.wait_for(self.queue.get(), timeout) for _ in range(n)]

    async def close(self) -> None:
        await self.stream.close()
        await asyncio.wait_for(self.task, 5)


@pytest_asyncio.fixture(loop_scope="session")
async def other(anvil: Anvil) -> AsyncIterator[ChainClient]:
    c = await ChainClient.connect(anvil.ws_url, anvil.dev_accounts[2])
    try:
        yield c
    finally:
        await c.close()


async def test_filter_by_indexed_topic(
    client: ChainClient, other: ChainClient, counter: Any
) -> None:
    bumped = event_topic(counter.abi, "Bumped")
    start = await client.block_number() + 1
    # Only tag 42 from `other`: both indexed arguments filtered on the node.
    stream = client.subscribe_logs(
        counter.address,
        [bumped, address_topic(other.address), uint_topic(42)],
        from_block=start,
        abi=counter.abi,
    )
    got = Collector(stream)
    mine = other.contract(counter.address, counter.abi)
    try:
        await client.transact(counter.functions.bump(42))  # wrong sender
        await other.transact(mine.functions.bump(1))  # wrong tag
        await other.transact(mine.functions.bump(42))
        await other.transact(mine.functions.inc())  # tag 0
        await other.transact(mine.functions.bump(42))
        events = await got.take(2)
        assert [e["event"] for e in events] == ["Bumped", "Bumped"]
        assert all(e["args"]["tag"] == 42 and e["args"]["by"] == other.address for e in events)
        await other.transact(mine.functions.bump(42))  # sentinel: nothing else queued before
        (sentinel,) = await got.take(1)
        assert sentinel["args"]["count"] == events[1]["args"]["count"] + 1
        assert got.queue.empty()
    finally:
        await got.close()


async def test_backfill_then_live(client: ChainClient, counter: Any) -> None:
    first = await client.transact(counter.functions.bump(1))
    await client.transact(counter.functions.bump(2))
    await client.transact(counter.functions.bump(3))
    stream = client.subscribe_logs(counter.address, from_block=first.block_number, abi=counter.abi)
    got = Collector(stream)
    try:
        past = await got.take(3)
        assert [e["args"]["tag"] for e in past] == [1, 2, 3]
        await client.transact(counter.functions.bump(4))
        (live,) = await got.take(1)
        assert live["args"]["tag"] == 4
        assert stream.connects == 1
    finally:
        await got.close()


async def test_reconnect_replays_gap_exactly_once(
    client: ChainClient, counter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = client.subscribe_logs(counter.address, from_block=None, abi=counter.abi)
    got = Collector(stream)
    try:
        await stream.wait_live()  # from_block=None: only events from now on
        await client.transact(counter.functions.bump(1))
        assert [e["args"]["tag"] for e in await got.take(1)] == [1]

        # Hold reconnects until the gap has events in it.
        gate = asyncio.Event()
        real_connect = subscriptions.RpcConnection.connect

        async def gated_connect(self: Any, *args: Any, **kwargs: Any) -> None:
            await gate.wait()
            await real_connect(self, *args, **kwargs)

        monkeypatch.setattr(subscriptions.RpcConnection, "connect", gated_connect)
        await stream.drop_connection()
        for tag in (2, 3, 4):  # emitted while the stream is disconnected
            await client.transact(counter.functions.bump(tag))
        await asyncio.sleep(0.2)
        assert got.queue.empty() and stream.connects == 1
        gate.set()

        await client.transact(counter.functions.bump(5))
        tags = [e["args"]["tag"] for e in await got.take(4)]
        assert tags == [2, 3, 4, 5]
        await client.transact(counter.functions.bump(6))  # no duplicate before it
        assert [e["args"]["tag"] for e in await got.take(1)] == [6]
        assert got.queue.empty()
        assert stream.connects == 2
    finally:
        await got.close()


async def test_survives_node_restart(counter_artifact: dict[str, Any], tmp_path: Any) -> None:
    """A real dropped socket: anvil stops (state saved) and comes back on the
    same port; events emitted before the stream reconnects are replayed."""
    state = str(tmp_path / "state.json")
    port = free_port("127.0.0.1")
    node = await Anvil(port=port, extra_args=["--state", state]).start()
    client = await ChainClient.connect(node.ws_url, node.dev_accounts[0])
    try:
        counter, _ = await client.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
        stream = client.subscribe_logs(counter.address, from_block=0, abi=counter.abi)
        got = Collector(stream)
        await client.transact(counter.functions.bump(1))
        assert [e["args"]["tag"] for e in await got.take(1)] == [1]
        await node.stop()
        node = await Anvil(port=port, extra_args=["--state", state]).start()
        for tag in (2, 3):
            await client.transact(counter.functions.bump(tag))  # client reconnects too
        assert [e["args"]["tag"] for e in await got.take(2, timeout=20)] == [2, 3]
        assert stream.connects >= 2
        await client.transact(counter.functions.bump(4))
        assert [e["args"]["tag"] for e in await got.take(1)] == [4]
        assert got.queue.empty()
        await got.close()
    finally:
        await client.close()
        await node.stop()
