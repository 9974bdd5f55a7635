"""Chain node faults against a real anvil: restarts that keep the chain (and
lose the pool), a reset chain, lost and stale transactions, receipt
timeouts, a wedged account. Each test has its own node (they restart it,
turn automine off, drop transactions)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mecfed.chain.anvil import Anvil, free_port
from mecfed.chain.client import ChainClient, NotMined
from mecfed.chain.journal import MINED, REPLACED
from mecfed.errors import FailedPrecondition
from mecfed.storage import Database
from tests.chain.conftest import rpc
from tests.chain.test_subscriptions import Collector
from tests.polling import until

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Node:
    """An anvil on a fixed port with its chain in ``state`` (dumped every
    second), restartable as the testbed's node is."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.state = tmp / "state.json"
        self.anvil: Anvil | None = None

    async def start(self, *, keep_state: bool = True) -> Anvil:
        args = ["--state", str(self.state), "--state-interval", "1"] if keep_state else []
        self.anvil = await Anvil(port=self.port, extra_args=args).start()
        return self.anvil

    async def stop(self, *, kill: bool = False) -> None:
        assert self.anvil is not None and self.anvil.pid is not None
        if kill:
            os.kill(self.anvil.pid, signal.SIGKILL)
        await self.anvil.stop()

    async def restart(self, *, kill: bool = False, keep_state: bool = True) -> Anvil:
        await self.stop(kill=kill)
        return await self.start(keep_state=keep_state)


@pytest_asyncio.fixture(loop_scope="session")
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    await n.start()
    try:
        yield n
    finally:
        if n.anvil is not None:
            await n.anvil.stop()


async def _connect(node: Node, db: Database | None = None, **kwargs: Any) -> ChainClient:
    assert node.anvil is not None
    return await ChainClient.connect(node.anvil.ws_url, node.anvil.dev_accounts[0], db=db, **kwargs)


async def _until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0) -> None:
    await until(check, timeout)


async def _dump_wait() -> None:
    await asyncio.sleep(1.5)  # > --state-interval: the node's last dump is recent


async def _not_mined(client: ChainClient, fn: Any, **kwargs: Any) -> NotMined:
    with pytest.raises(NotMined) as caught:
        await client.transact(fn, timeout=0.3, **kwargs)
    return caught.value


async def _take(stream: Any, n: int, timeout: float = 10.0) -> list[int]:
    return [(await asyncio.wait_for(anext(stream), timeout)).args["tag"] for _ in range(n)]


async def _deploy(client: ChainClient, artifact: dict[str, Any]) -> Any:
    address, _ = await client.deploy(artifact["abi"], artifact["bytecode"])
    return client.contract(address, artifact["abi"])


# -- restarts that keep the chain ---------------------------------------------


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_node_restart_keeps_the_chain_and_misses_no_event(
    node: Node, counter_artifact: dict[str, Any], tmp_path: Path, kill: bool
) -> None:
    """The node stops (SIGTERM) or crashes (SIGKILL, after its last state
    dump) and comes back on the same port with its chain: the client
    reconnects (its identity check passes), and a named stream delivers
    every event once across it; a second client on the same journal (the
    MEF restarted) resumes after the last event taken."""
    db = Database(tmp_path / "mef.db")
    client = await _connect(node, db)
    try:
        counter = await _deploy(client, counter_artifact)
        await client.expect_code(counter.address)
        stream = client.logs(counter.address, None, 0, counter.abi, name="bumps")
        for tag in (1, 2):
            await client.transact(counter.functions.bump(tag))
        assert await _take(stream, 2) == [1, 2]
        await _dump_wait()
        await node.restart(kill=kill)
        for tag in (3, 4):
            await client.transact(counter.functions.bump(tag))  # after the reconnection
        assert await _take(stream, 2, timeout=20) == [3, 4]
        assert client.health() is None
        await stream.close()  # the consumer took 4 and asked for no more: 4 is not committed
    finally:
        await client.close()
    restarted = await _connect(node, db)
    try:
        assert restarted.health() is None
        again = Collector(restarted.logs(counter.address, None, 0, counter.abi, name="bumps"))
        await restarted.transact(restarted.contract(counter.address, counter.abi).functions.bump(5))
        # 1..3 were taken and handled; 4 was taken but never acknowledged.
        assert await again.tags(2) == [4, 5]
        await asyncio.sleep(0.2)
        assert again.queue.empty()
        await again.close()
    finally:
        await restarted.close()


async def test_transaction_lost_by_a_restart_is_sent_again(
    node: Node, counter_artifact: dict[str, Any], tmp_path: Path
) -> None:
    """A restart keeps the chain but empties the pool: the transaction whose
    receipt wait already gave up would leave a nonce gap that every later
    transaction of the account queues behind. After the reconnection the
    journal sends it again (the same signed bytes) and both are mined."""
    client = await _connect(node, Database(tmp_path / "mef.db"))
    try:
        counter = await _deploy(client, counter_artifact)
        await rpc(client, "evm_setAutomine", False)
        lost = await _not_mined(client, counter.functions.bump(1), purpose="bump one")
        assert "may still be" in lost.message and lost.purpose == "bump one"
        await _dump_wait()
        await node.restart()  # automine again, and an empty pool
        receipt = await asyncio.wait_for(client.transact(counter.functions.bump(2)), 20)
        # The journal learns on its next pass that the lost one was mined.
        await _until(lambda: client.journal.get(lost.tx_hash).state == MINED)  # type: ignore[union-attr]
        entry = client.journal.get(lost.tx_hash)
        assert entry is not None and entry.state == MINED
        assert entry.block_number is not None and entry.block_number <= receipt.block_number
        assert await client.call(counter.functions.count()) == 2
        assert client.pending_transactions() == [] and client.health() is None
    finally:
        await client.close()


async def test_restarted_client_fills_the_gap_of_its_previous_run(
    node: Node, counter_artifact: dict[str, Any], tmp_path: Path
) -> None:
    """The MEF and the node both restart: the new client reads the journal
    on start and sends the lost transaction again before anything else."""
    db = Database(tmp_path / "mef.db")
    client = await _connect(node, db)
    counter = await _deploy(client, counter_artifact)
    await rpc(client, "evm_setAutomine", False)
    lost = await _not_mined(client, counter.functions.bump(7))
    await client.close()
    await _dump_wait()
    await node.restart()
    client = await _connect(node, db)
    counter = client.contract(counter.address, counter.abi)
    try:
        await client.wait_receipt(lost.tx_hash, 10)
        assert await client.call(counter.functions.count()) == 1
        await client.transact(counter.functions.bump(8))  # no nonce conflict
        assert await client.call(counter.functions.count()) == 2
    finally:
        await client.close()


# -- a reset chain --------------------------------------------------------------


async def test_reset_chain_is_refused(
    node: Node, counter_artifact: dict[str, Any], tmp_path: Path
) -> None:
    """The node comes back without its state: a new genesis and no code at
    the contract's address. The client refuses to read or send (a clear
    FailedPrecondition), health() says why, and so does a client started
    afterwards on the same journal."""
    db = Database(tmp_path / "mef.db")
    client = await _connect(node, db)
    try:
        counter = await _deploy(client, counter_artifact)
        assert await client.expect_code(counter.address) is None
        reconnects = client.reconnects
        # anvil stamps blocks in whole seconds: a chain rebuilt within the
        # same second, with the same transactions, is the same chain.
        await asyncio.sleep(1.1)
        await node.restart(keep_state=False)
        await _until(lambda: client.reconnects > reconnects and client.connected)
        reason = client.health()
        assert reason is not None and "chain was reset" in reason
        with pytest.raises(FailedPrecondition, match="refused: the chain was reset"):
            await client.transact(counter.functions.inc())
        with pytest.raises(FailedPrecondition, match="refused"):
            await client.call(counter.functions.count())
    finally:
        await client.close()
    # The same account deploys at the same address again: the code matches,
    # the genesis does not.
    assert node.anvil is not None
    async with await ChainClient.connect(node.anvil.ws_url, node.anvil.dev_accounts[0]) as other:
        address, _ = await other.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
        assert address == counter.address
    restarted = await _connect(node, db, expect_code={counter.address: None})
    try:
        reason = restarted.health()
        assert reason is not None and "the chain was reset" in reason
        with pytest.raises(FailedPrecondition):
            await restarted.transact(
                restarted.contract(counter.address, counter.abi).functions.inc()
            )
    finally:
        await restarted.close()


async def test_missing_contract_code_is_refused(node: Node) -> None:
    client = await _connect(node, expect_code={"0x" + "12" * 20: None})
    try:
        reason = client.health()
        assert reason is not None and "no contract code at" in reason
    finally:
        await client.close()


# -- stale, lost and maybe-sent transactions ------------------------------------


@pytest.mark.parametrize("by", ["valid_until", "valid_for"])
async def test_stale_transaction_in_the_pool_is_replaced_by_a_noop(
    node: Node, counter_artifact: dict[str, Any], by: str
) -> None:
    """Not mined before its valid_until (given, or the client's valid_for of
    the function: e.g. an announcement whose bidding window passed):
    replaced at its nonce by a 0-value self-transfer with higher fees, so it
    never executes; a waiter is told so."""
    client = await _connect(node, valid_for={"bump": 0.5} if by == "valid_for" else None)
    try:
        counter = await _deploy(client, counter_artifact)
        await rpc(client, "evm_setAutomine", False)
        until = {"valid_until": time.time() + 0.5} if by == "valid_until" else {}
        stale = await _not_mined(client, counter.functions.bump(1), purpose="announce x", **until)
        await asyncio.sleep(0.6)
        await client.reconciler.reconcile()
        entry = client.journal.get(stale.tx_hash)
        assert entry is not None and entry.state == REPLACED and entry.replaced_by
        await rpc(client, "evm_mine")
        noop = await client.wait_receipt(entry.replaced_by, 5)
        tx = await client.w3.eth.get_transaction(noop.tx_hash)  # type: ignore[arg-type]
        assert tx["to"] == client.address and tx["value"] == 0 and tx["nonce"] == stale.nonce
        assert await client.call(counter.functions.count()) == 0  # never executed
        with pytest.raises(FailedPrecondition, match="replaced"):
            await client.wait_receipt(stale.tx_hash, 1)
        await rpc(client, "evm_setAutomine", True)
        await client.transact(counter.functions.inc())
        assert await client.call(counter.functions.count()) == 1
    finally:
        await client.close()


async def test_dropped_transactions_fill_the_gap(
    node: Node, counter_artifact: dict[str, Any]
) -> None:
    """Two transactions leave the pool (anvil_dropTransaction) while a third
    queues behind them: the valid one is sent again, the stale one replaced
    by a no-op, and the queued one is mined after them."""
    client = await _connect(node)
    try:
        counter = await _deploy(client, counter_artifact)
        await rpc(client, "evm_setAutomine", False)
        valid = await _not_mined(client, counter.functions.bump(1))
        stale = await _not_mined(client, counter.functions.bump(2), valid_until=time.time() + 0.4)
        for tx_hash in (valid.tx_hash, stale.tx_hash):
            await rpc(client, "anvil_dropTransaction", tx_hash)
        await asyncio.sleep(0.5)
        queued = asyncio.create_task(client.transact(counter.functions.bump(3)))
        await _until(lambda: len(client.pending_transactions()) == 3)
        await client.reconciler.reconcile()
        await rpc(client, "evm_mine")
        receipt = await asyncio.wait_for(queued, 10)
        assert receipt.event("Bumped").args["tag"] == 3
        tags = [
            e.args["tag"]
            for e in await client.get_logs(counter.address, None, 0, "latest", counter.abi)
        ]
        assert tags == [1, 3]
        await client.reconciler.reconcile()
        assert client.journal.get(valid.tx_hash).state == MINED  # type: ignore[union-attr]
        assert client.journal.get(stale.tx_hash).state == REPLACED  # type: ignore[union-attr]
    finally:
        await rpc(client, "evm_setAutomine", True)
        await client.close()


async def test_gap_nobody_journalled_is_filled_with_a_noop(
    node: Node, counter_artifact: dict[str, Any]
) -> None:
    """A nonce below the client's next one that the node does not hold and
    the journal does not know (it was lost) gets a no-op."""
    client = await _connect(node)
    try:
        counter = await _deploy(client, counter_artifact)
        await rpc(client, "evm_setAutomine", False)
        gone = await _not_mined(client, counter.functions.bump(1))
        await rpc(client, "anvil_dropTransaction", gone.tx_hash)
        client.journal.db.execute("DELETE FROM chain_tx WHERE tx_hash = ?", (gone.tx_hash,))
        await client.reconciler.reconcile()
        (noop,) = client.pending_transactions()
        assert noop.nonce == gone.nonce and noop.purpose.startswith("no-op")
        await rpc(client, "evm_setAutomine", True)
        await client.transact(counter.functions.bump(2))
        assert await client.call(counter.functions.count()) == 1
    finally:
        await client.close()


async def test_receipt_timeout_is_maybe_sent_and_reconciled(
    node: Node, counter_artifact: dict[str, Any]
) -> None:
    """A receipt wait that times out raises NotMined, not "lost": the
    transaction stays journalled, is mined later, and the journal (and a
    later wait by hash, with its events) says so."""
    client = await _connect(node)
    try:
        counter = await _deploy(client, counter_artifact)
        await rpc(client, "evm_setAutomine", False)
        maybe = await _not_mined(client, counter.functions.bump(9))
        assert [e.tx_hash for e in client.pending_transactions()] == [maybe.tx_hash]
        await rpc(client, "evm_mine")
        receipt = await client.wait_receipt(maybe.tx_hash, 5, counter.abi)
        assert receipt.event("Bumped").args["tag"] == 9
        assert client.journal.get(maybe.tx_hash).state == MINED  # type: ignore[union-attr]
        assert client.pending_transactions() == []
    finally:
        await rpc(client, "evm_setAutomine", True)
        await client.close()


async def test_health_reports_a_wedged_client(node: Node, counter_artifact: dict[str, Any]) -> None:
    """A transaction pending for longer than wedged_after while nothing of
    the account is mined (here: the node mines nothing) makes health()
    report the wedge, with the transaction's purpose; ready again once it
    is mined."""
    client = await _connect(node, wedged_after=1.0)
    try:
        counter = await _deploy(client, counter_artifact)
        await rpc(client, "evm_setAutomine", False)
        stuck = await _not_mined(client, counter.functions.bump(1), purpose="announce fed-1")
        assert client.health() is None  # not yet
        await _until(lambda: client.health() is not None, timeout=10)
        reason = client.health()
        assert reason is not None and "wedged" in reason and "announce fed-1" in reason
        assert stuck.tx_hash in reason
        await rpc(client, "evm_mine")
        await client.reconciler.reconcile()
        assert client.health() is None
    finally:
        await rpc(client, "evm_setAutomine", True)
        await client.close()


async def test_health_reports_a_node_that_is_down(node: Node) -> None:
    client = await _connect(node)
    try:
        assert client.health() is None
        await node.stop()
        await _until(lambda: client.health() is not None)
        assert "not connected" in (client.health() or "")
        await node.start()
        await _until(lambda: client.health() is None)
    finally:
        await client.close()
