"""Log streams on the client's one connection: node-side filters, back-fill,
reconnect + replay (exactly once), reorgs, and unsubscribing at scale."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any, cast

import psutil
import pytest

from mecfed.chain.anvil import Anvil, free_port
from mecfed.chain.client import ChainClient
from mecfed.chain.events import Event, EventDecoder, address_topic
from mecfed.chain.provider import MultiplexProvider
from mecfed.chain.subscriptions import Delivered, LogStream
from tests.chain.conftest import rpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Collector:
    """Drains a stream in the background into a queue."""

    def __init__(self, stream: LogStream) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.stream:
            await self.queue.put(event)

    async def take(self, n: int, timeout: float = 10.0) -> list[Event]:
        return [await asyncio.wait_for(self.queue.get(), timeout) for _ in range(n)]

    async def tags(self, n: int, timeout: float = 10.0) -> list[int]:
        return [e.args["tag"] for e in await self.take(n, timeout)]

    async def close(self) -> None:
        await self.stream.close()
        await asyncio.wait_for(self.task, 5)


def _topic(client: ChainClient, counter: Any, event: str) -> str:
    return EventDecoder(client.w3, counter.abi).topic(event)


def _provider(client: ChainClient) -> MultiplexProvider:
    return cast(MultiplexProvider, client.w3.provider)


def _uint(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


async def _disconnected(client: ChainClient) -> None:
    for _ in range(500):
        if not client.connected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the client did not notice the drop")


def _connections(port: int) -> int:
    """TCP connections of this process to ``port``."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def test_filter_by_indexed_topic(
    client: ChainClient, other: ChainClient, counter: Any
) -> None:
    bumped = _topic(client, counter, "Bumped")
    start = await client.w3.eth.block_number + 1
    # Only tag 42 from `other`: both indexed arguments filtered on the node.
    stream = client.logs(
        counter.address, [bumped, address_topic(other.address), _uint(42)], start, counter.abi
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
        assert [e.name for e in events] == ["Bumped", "Bumped"]
        assert all(e.args["tag"] == 42 and e.args["by"] == other.address for e in events)
        await other.transact(mine.functions.bump(42))  # sentinel: nothing else queued before
        (sentinel,) = await got.take(1)
        assert sentinel.args["count"] == events[1].args["count"] + 1
        assert got.queue.empty()
    finally:
        await got.close()


async def test_backfill_then_live(client: ChainClient, counter: Any) -> None:
    first = await client.transact(counter.functions.bump(1))
    await client.transact(counter.functions.bump(2))
    await client.transact(counter.functions.bump(3))
    stream = client.logs(counter.address, None, first.block_number, counter.abi)
    got = Collector(stream)
    try:
        assert await got.tags(3) == [1, 2, 3]
        await client.transact(counter.functions.bump(4))
        assert await got.tags(1) == [4]
        assert stream.connects == 1
        past = await client.get_logs(
            counter.address, None, first.block_number, "latest", counter.abi
        )
        assert [e.args["tag"] for e in past] == [1, 2, 3, 4]
    finally:
        await got.close()


async def test_one_connection_carries_every_stream(
    client: ChainClient, counter: Any, anvil: Anvil
) -> None:
    assert anvil.port is not None
    before = _connections(anvil.port)
    streams = [client.logs(counter.address, None, None, counter.abi) for _ in range(5)]
    heads = [client.heads() for _ in range(3)]
    for stream in streams:
        await stream.wait_live()
    assert _connections(anvil.port) == before  # no socket per stream
    await client.transact(counter.functions.bump(7))
    for stream in streams:
        assert (await asyncio.wait_for(stream.__anext__(), 5)).args["tag"] == 7
    for head in heads:
        await asyncio.wait_for(head.__anext__(), 5)
        await head.close()
    for stream in streams:
        await stream.close()
    assert len(client.w3.subscription_manager.subscriptions) == 1  # the shared heads


async def test_reconnect_replays_the_gap_exactly_once(
    client: ChainClient, other: ChainClient, counter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket drops (no closing handshake); events are emitted while the
    client is down; after the reconnection every stream on the connection
    delivers each of them once, and a request made meanwhile completes."""
    mine = other.contract(counter.address, counter.abi)
    bumped = _topic(client, counter, "Bumped")
    everything = Collector(client.logs(counter.address, None, None, counter.abi))
    tag3 = Collector(client.logs(counter.address, [bumped, None, _uint(3)], None, counter.abi))
    by_other = Collector(
        client.logs(counter.address, [bumped, address_topic(other.address)], None, counter.abi)
    )
    heads = client.heads()
    collectors = (everything, tag3, by_other)
    try:
        for c in collectors:
            await c.stream.wait_live()  # from_block None: only events from now on
        await other.transact(mine.functions.bump(1))
        assert await everything.tags(1) == [1] and await by_other.tags(1) == [1]

        gate = asyncio.Event()
        provider = _provider(client)
        real_connect = provider._provider_specific_connect

        async def gated() -> None:
            await gate.wait()
            await real_connect()

        monkeypatch.setattr(provider, "_provider_specific_connect", gated)
        reconnects = client.reconnects
        provider.abort()
        await _disconnected(client)
        waiting = asyncio.create_task(client.call(counter.functions.count()))
        for tag in (2, 3, 4):  # emitted while the client is disconnected
            await other.transact(mine.functions.bump(tag))
        await asyncio.sleep(0.2)
        assert all(c.queue.empty() and c.stream.connects == 1 for c in collectors)
        assert not waiting.done()
        gate.set()

        await other.transact(mine.functions.bump(5))
        assert await everything.tags(4) == [2, 3, 4, 5]
        assert await by_other.tags(4) == [2, 3, 4, 5]
        assert await tag3.tags(1) == [3]
        assert await asyncio.wait_for(waiting, 10) >= 4  # answered after the reconnection
        await other.transact(mine.functions.bump(6))  # no duplicate before it
        assert await everything.tags(1) == [6] and await by_other.tags(1) == [6]
        assert all(c.queue.empty() and c.stream.connects == 2 for c in collectors)
        assert tag3.queue.empty()
        assert client.reconnects == reconnects + 1  # one new connection
        # The heads stream lives on across the reconnection.
        receipt = await client.transact(counter.functions.inc())
        head = await asyncio.wait_for(heads.__anext__(), 5)
        while head.number < receipt.block_number:
            head = await asyncio.wait_for(heads.__anext__(), 5)
    finally:
        for c in collectors:
            await c.close()
        await heads.close()


async def test_survives_node_restart(counter_artifact: dict[str, Any], tmp_path: Any) -> None:
    """A real outage: anvil stops (state saved) and comes back on the same
    port; events emitted before the stream reconnects are replayed."""
    state = str(tmp_path / "state.json")
    port = free_port("127.0.0.1")
    node = await Anvil(port=port, extra_args=["--state", state]).start()
    client = await ChainClient.connect(node.ws_url, node.dev_accounts[0])
    try:
        address, _ = await client.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
        counter = client.contract(address, counter_artifact["abi"])
        stream = client.logs(address, None, 0, counter.abi)
        got = Collector(stream)
        await client.transact(counter.functions.bump(1))
        assert await got.tags(1) == [1]
        await node.stop()
        node = await Anvil(port=port, extra_args=["--state", state]).start()
        for tag in (2, 3):
            await client.transact(counter.functions.bump(tag))  # waits for the reconnection
        assert await got.tags(2, timeout=20) == [2, 3]
        assert stream.connects >= 2
        await client.transact(counter.functions.bump(4))
        assert await got.tags(1) == [4]
        assert got.queue.empty()
        await got.close()
    finally:
        await client.close()
        await node.stop()


async def test_reorg_delivers_the_new_canonical_logs(anvil: Anvil, counter: Any) -> None:
    """anvil_reorg replaces the last blocks; anvil pushes no removed logs
    but does push the new blocks' logs, which sit at positions already seen
    (same block number and log index, another block hash): the replaced
    logs are delivered as removals (newest first), then the new ones, and
    a replay after a reconnect does not repeat them."""
    async with await ChainClient.connect(
        anvil.ws_url, anvil.dev_accounts[4], removals=True
    ) as client:
        mine = client.contract(counter.address, counter.abi)
        stream = client.logs(counter.address, None, None, counter.abi)
        got = Collector(stream)
        try:
            await stream.wait_live()
            receipts = [await client.transact(mine.functions.bump(t)) for t in (1, 2, 3)]
            assert await got.tags(3) == [1, 2, 3]
            # Blocks of bumps 2 and 3 replaced by one block with bump(99).
            replaced = await client.w3.eth.get_transaction(receipts[1].tx_hash)  # type: ignore[arg-type]
            tx = await mine.functions.bump(99).build_transaction(
                {
                    "from": client.address,
                    "nonce": replaced["nonce"],
                    "gas": 200_000,
                    "chainId": client.chain_id,
                    "maxFeePerGas": 10**11,
                    "maxPriorityFeePerGas": 1,
                }
            )
            tx.pop("from")
            raw = client.account.sign_transaction(tx).raw_transaction.to_0x_hex()
            await rpc(client, "anvil_reorg", 2, [[raw, 1]])
            gone = await got.take(2)
            assert [(e.args["tag"], e.removed) for e in gone] == [(3, True), (2, True)]
            assert gone[0].block_hash != "" and gone[0].tx_hash == receipts[2].tx_hash
            (event,) = await got.take(1)
            assert event.args["tag"] == 99 and event.block_number == receipts[2].block_number
            assert not event.removed
            await client.resync_nonce()  # the reorg rewound the account's nonce
            _provider(client).abort()  # replay overlaps the reorged blocks: no repeats
            await client.transact(mine.functions.bump(100))
            # bump(3)'s block was reorged out: the journal sends it again
            # (as a node puts a reorged-out transaction back in its pool).
            assert sorted(await got.tags(2)) == [3, 100]
            await asyncio.sleep(0.2)
            assert got.queue.empty() and stream.connects == 2
        finally:
            await got.close()


async def test_many_streams_open_and_close(client: ChainClient, counter: Any) -> None:
    """Unsubscribing does not wedge web3's subscription manager (stock
    ``unsubscribe()`` hangs after 500)."""
    start = time.monotonic()
    closed: list[weakref.ref[LogStream]] = []
    for _ in range(40):
        streams = [client.logs(counter.address, None, None, counter.abi) for _ in range(15)]
        for stream in streams:
            await stream.wait_live()
        await asyncio.gather(*(s.close() for s in streams))
        closed += [weakref.ref(s) for s in streams]
    del streams, stream
    assert time.monotonic() - start < 30
    assert len(client.w3.subscription_manager.subscriptions) == 1
    gc.collect()
    assert [r for r in closed if r() is not None] == []  # the client keeps no closed stream


def _raw(block: int, index: int, block_hash: str = "33", removed: bool = False) -> dict[str, Any]:
    return {
        "address": "0x" + "11" * 20,
        "topics": [bytes.fromhex("22" * 32)],
        "data": b"",
        "blockNumber": block,
        "blockHash": bytes.fromhex(block_hash * 32),
        "logIndex": index,
        "transactionIndex": 0,
        "transactionHash": bytes.fromhex("44" * 32),
        "removed": removed,
    }


async def test_dedup_by_position_and_block_hash() -> None:
    delivered = Delivered(from_block=1)
    logs = [
        _raw(5, 0),
        _raw(5, 0),  # duplicate
        _raw(5, 1, removed=True),  # reorged out
        _raw(5, 1),
        _raw(5, 1, "55"),  # the same position in a replacing block
        _raw(5, 0, "33", removed=True),  # removed: forgotten...
        _raw(5, 0),  # ...so it is new if it comes back
        _raw(0, 0),  # before from_block
    ]
    admitted = [(raw["blockNumber"], raw["logIndex"]) for raw in logs if delivered.admit(raw)]
    assert admitted == [(5, 0), (5, 1), (5, 1), (5, 0)]
    assert delivered.cursor == 5
