"""Reorgs against a real anvil (anvil_reorg, anvil_rollback): removals of
delivered logs (confirmation depth 0), logs held until confirmed (depth 1),
a transaction whose block was rolled back sent again; and the reorg
detector and dedup memory on their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient
from mecfed.chain.events import Head
from mecfed.chain.journal import MINED, PENDING
from mecfed.chain.reorgs import Canonical, Delivered
from tests.chain.conftest import rpc
from tests.chain.test_subscriptions import Collector

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def node() -> AsyncIterator[Anvil]:
    async with Anvil() as n:
        yield n


@pytest_asyncio.fixture(loop_scope="session")
async def chain(node: Anvil) -> AsyncIterator[ChainClient]:
    async with await ChainClient.connect(node.ws_url, node.dev_accounts[0]) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def bumper(chain: ChainClient, counter_artifact: dict[str, Any]) -> Any:
    address, _ = await chain.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
    return chain.contract(address, counter_artifact["abi"])


async def test_rollback_delivers_the_removal_depth_0(chain: ChainClient, bumper: Any) -> None:
    """anvil_rollback drops the last block and pushes nothing; the next head
    at the same height (another hash) reveals it: the stream delivers the
    removal of the dropped block's log, and later logs as usual."""
    got = Collector(
        chain.logs(bumper.address, None, None, bumper.abi, confirmations=0, removals=True)
    )
    try:
        await got.stream.wait_live()
        for tag in (1, 2):
            await chain.transact(bumper.functions.bump(tag))
        assert await got.tags(2) == [1, 2]
        await rpc(chain, "anvil_rollback", 1)
        await rpc(chain, "evm_mine")  # a new block at the rolled-back height
        (removed,) = await got.take(1)
        assert removed.removed and removed.args["tag"] == 2
        await chain.resync_nonce()  # the rollback rewound the account's nonce
        await chain.transact(bumper.functions.bump(3))
        (event,) = await got.take(1)
        assert event.args["tag"] == 3 and not event.removed
        await asyncio.sleep(0.2)
        assert got.queue.empty()
    finally:
        await got.close()


async def test_removals_off_forgets_the_replaced_log(chain: ChainClient, bumper: Any) -> None:
    """The client's default (for consumers that do not look at
    ``removed``): no removal is delivered, the replacing log is."""
    got = Collector(chain.logs(bumper.address, None, None, bumper.abi))
    try:
        await got.stream.wait_live()
        await chain.transact(bumper.functions.bump(1))
        assert await got.tags(1) == [1]
        await rpc(chain, "anvil_rollback", 1)
        await chain.resync_nonce()
        await chain.transact(bumper.functions.bump(2))  # at the same position
        (event,) = await got.take(1)
        assert event.args["tag"] == 2 and not event.removed
        await asyncio.sleep(0.2)
        assert got.queue.empty()
    finally:
        await got.close()


async def test_depth_1_holds_logs_until_confirmed(chain: ChainClient, bumper: Any) -> None:
    """With one confirmation a log is delivered once a block is on top of
    its block; one whose block is reorged out before that is never
    delivered (so there is nothing to undo)."""
    got = Collector(
        chain.logs(bumper.address, None, None, bumper.abi, confirmations=1, removals=True)
    )
    try:
        await got.stream.wait_live()
        await chain.transact(bumper.functions.bump(1))
        await asyncio.sleep(0.3)
        assert got.queue.empty()  # its block has no confirmation yet
        await rpc(chain, "evm_mine")
        assert await got.tags(1) == [1]
        await chain.transact(bumper.functions.bump(2))
        await rpc(chain, "anvil_reorg", 1, [])  # bump(2)'s block replaced (empty)
        await chain.resync_nonce()
        for _ in range(2):
            await rpc(chain, "evm_mine")
        await chain.transact(bumper.functions.bump(3))
        await rpc(chain, "evm_mine")
        (event,) = await got.take(1)
        assert event.args["tag"] == 3 and not event.removed
        await asyncio.sleep(0.2)
        assert got.queue.empty()  # bump(2) never delivered, so never removed
    finally:
        await got.close()


async def test_depth_1_removal_of_a_deeper_reorg(chain: ChainClient, bumper: Any) -> None:
    """A reorg deeper than the confirmation depth: the confirmed log is
    delivered as removed."""
    got = Collector(
        chain.logs(bumper.address, None, None, bumper.abi, confirmations=1, removals=True)
    )
    try:
        await got.stream.wait_live()
        await chain.transact(bumper.functions.bump(7))
        await rpc(chain, "evm_mine")
        assert await got.tags(1) == [7]
        await rpc(chain, "anvil_reorg", 2, [])
        (removed,) = await got.take(1)
        assert removed.removed and removed.args["tag"] == 7
        await chain.resync_nonce()
    finally:
        await got.close()


async def test_rolled_back_transaction_is_sent_again(chain: ChainClient, bumper: Any) -> None:
    """A transaction journalled as mined whose block is gone (a node that
    lost its last blocks in a crash; here anvil_rollback) is pending again
    and sent again by the reconciler."""
    count = await chain.call(bumper.functions.count())
    receipt = await chain.transact(bumper.functions.bump(5))
    assert chain.journal.get(receipt.tx_hash).state == MINED  # type: ignore[union-attr]
    await rpc(chain, "anvil_rollback", 1)
    assert await chain.call(bumper.functions.count()) == count
    await chain.reconciler.reconcile()  # un-mined: pending again, sent again (automine)
    entry = chain.journal.get(receipt.tx_hash)
    assert entry is not None and entry.state == PENDING and "un-mined" in entry.note
    await chain.wait_receipt(receipt.tx_hash, 5)
    assert await chain.call(bumper.functions.count()) == count + 1


# -- the parts on their own ---------------------------------------------------------


def _head(number: int, hash_: str, parent: str) -> Head:
    return Head(number, 0, "0x" + hash_ * 32, "0x" + parent * 32)


async def test_canonical_finds_the_fork_point() -> None:
    canonical_now = {1: "0x" + "a1" * 32, 2: "0x" + "b2" * 32, 3: "0x" + "b3" * 32}

    async def hash_at(n: int) -> str | None:
        return canonical_now.get(n)

    heads = Canonical()
    assert await heads.advance(_head(1, "a1", "00"), hash_at) is None
    assert await heads.advance(_head(2, "a2", "a1"), hash_at) is None
    assert await heads.advance(_head(3, "a3", "a2"), hash_at) is None
    # A head at height 2 again, another block: 2 and 3 were replaced.
    assert await heads.advance(_head(2, "b2", "a1"), hash_at) == 2
    assert await heads.advance(_head(3, "b3", "b2"), hash_at) is None
    assert await heads.advance(_head(3, "b3", "b2"), hash_at) is None  # seen
    # A head whose parent is not the block seen below it.
    canonical_now.update({3: "0x" + "c3" * 32, 4: "0x" + "c4" * 32})
    assert await heads.advance(_head(4, "c4", "c3"), hash_at) == 3
    # After a reconnect: the top is checked against the node.
    canonical_now[4] = "0x" + "d4" * 32
    assert await heads.verify(hash_at) == 4


def _raw(block: int, index: int, block_hash: str = "33") -> dict[str, Any]:
    return {
        "address": "0x" + "11" * 20,
        "topics": [bytes.fromhex("22" * 32)],
        "data": b"",
        "blockNumber": block,
        "blockHash": bytes.fromhex(block_hash * 32),
        "logIndex": index,
        "transactionIndex": 0,
        "transactionHash": bytes.fromhex("44" * 32),
    }


async def test_delivered_unwinds_the_replaced_blocks() -> None:
    delivered = Delivered(from_block=1)
    for raw in (_raw(5, 0), _raw(6, 0, "66"), _raw(6, 1, "66"), _raw(7, 0, "77")):
        assert delivered.admit(raw)
    assert delivered.conflicts(_raw(6, 0, "99"))  # another block at a delivered height
    assert delivered.conflicts(_raw(5, 3, "55"))  # a new log below delivered ones
    assert not delivered.conflicts(_raw(8, 0, "88"))
    canonical = {7: "0x" + "70" * 32, 6: "0x" + "99" * 32, 5: "0x" + "33" * 32}
    gone = delivered.unwind(canonical)
    assert [(r["blockNumber"], r["logIndex"]) for r in gone] == [(7, 0), (6, 1), (6, 0)]
    assert delivered.heights(0) == [5]
    assert delivered.admit(_raw(6, 0, "99"))  # the replacement is new
