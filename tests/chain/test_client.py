"""ChainClient against a real anvil: nonces, reverts, fees, receipts, heads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient
from mecfed.chain.revert import ContractRevert
from mecfed.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from tests.chain.conftest import rpc

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _nonce_of(client: ChainClient, tx_hash: str) -> int:
    return int((await client.w3.eth.get_transaction(tx_hash))["nonce"])  # type: ignore[arg-type]


async def _pending_count(client: ChainClient) -> int:
    return await client.w3.eth.get_transaction_count(client.address, "pending")


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _lost() -> ConnectionClosedError:
    return ConnectionClosedError(None, Close(1006, "test"))


# -- the nonce manager --------------------------------------------------------


async def test_concurrent_transacts_get_distinct_nonces(client: ChainClient, counter: Any) -> None:
    before = await client.call(counter.functions.count())
    receipts = await asyncio.gather(*(client.transact(counter.functions.inc()) for _ in range(20)))
    assert all(r.status == 1 for r in receipts)
    nonces = [await _nonce_of(client, r.tx_hash) for r in receipts]
    assert sorted(nonces) == list(range(min(nonces), min(nonces) + 20))
    assert await client.call(counter.functions.count()) == before + 20


async def _next_nonce_is_known(client: ChainClient, counter: Any, nonce: int) -> None:
    """The client's next transaction gets ``nonce`` without asking the node
    (no eth_getTransactionCount): the nonce manager holds it."""
    real = client.w3.eth.get_transaction_count
    reads: list[Any] = []

    async def counted(*args: Any) -> Any:
        reads.append(args)
        return await real(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client.w3.eth, "get_transaction_count", counted)
        receipt = await client.transact(counter.functions.inc())
    assert await _nonce_of(client, receipt.tx_hash) == nonce
    assert reads == []


async def _send_behind_its_back(client: ChainClient) -> None:
    """A transaction from the client's account that the client knows nothing
    of (another wallet with the same key)."""
    tx = {
        "to": client.address,
        "value": 0,
        "gas": 21_000,
        "nonce": await _pending_count(client),
        "chainId": client.chain_id,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 1,
    }
    await client.w3.eth.send_raw_transaction(client.account.sign_transaction(tx).raw_transaction)


async def test_recovers_from_stale_nonce(client: ChainClient, counter: Any) -> None:
    await client.transact(counter.functions.inc())
    await _send_behind_its_back(client)  # the node refuses the next nonce: "nonce too low"
    expected = await _pending_count(client)
    receipt = await client.transact(counter.functions.inc())
    assert await _nonce_of(client, receipt.tx_hash) == expected
    await _next_nonce_is_known(client, counter, expected + 1)


async def test_send_that_never_arrived_is_retried_once(
    client: ChainClient, counter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket fails before the node got the transaction: the same call
    goes out again (after a resync), and only once."""
    real = client.w3.eth.send_raw_transaction
    failures = []

    async def flaky(raw: bytes) -> Any:
        if not failures:
            failures.append(raw)
            raise _lost()
        return await real(raw)

    monkeypatch.setattr(client.w3.eth, "send_raw_transaction", flaky)
    count, nonce = await client.call(counter.functions.count()), await _pending_count(client)
    receipt = await client.transact(counter.functions.inc())
    assert failures and await _nonce_of(client, receipt.tx_hash) == nonce
    assert await client.call(counter.functions.count()) == count + 1
    assert await _pending_count(client) == nonce + 1


async def test_lost_reply_is_not_sent_under_a_second_nonce(
    client: ChainClient, counter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node got the transaction but the reply was lost: it counts as sent."""
    real = client.w3.eth.send_raw_transaction
    calls = []

    async def reply_lost(raw: bytes) -> Any:
        calls.append(raw)
        await real(raw)
        raise _lost()

    monkeypatch.setattr(client.w3.eth, "send_raw_transaction", reply_lost)
    count, nonce = await client.call(counter.functions.count()), await _pending_count(client)
    receipt = await client.transact(counter.functions.inc())
    monkeypatch.undo()
    assert len(calls) == 1 and await _nonce_of(client, receipt.tx_hash) == nonce
    follow = await client.transact(counter.functions.inc())
    assert await _nonce_of(client, follow.tx_hash) == nonce + 1
    assert await client.call(counter.functions.count()) == count + 2


async def test_already_known_counts_as_sent(
    client: ChainClient, counter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = client.w3.eth.send_raw_transaction

    async def twice(raw: bytes) -> Any:
        await real(raw)
        return await real(raw)  # the node refuses: it has this one already

    monkeypatch.setattr(client.w3.eth, "send_raw_transaction", twice)
    count, nonce = await client.call(counter.functions.count()), await _pending_count(client)
    await rpc(client, "evm_setAutomine", False)
    try:
        task = asyncio.create_task(client.transact(counter.functions.inc()))
        await _until(lambda: _sent(client, nonce + 1))
        await rpc(client, "evm_mine")
        receipt = await asyncio.wait_for(task, 10)
    finally:
        await rpc(client, "evm_setAutomine", True)
    assert await _nonce_of(client, receipt.tx_hash) == nonce
    assert await client.call(counter.functions.count()) == count + 1
    monkeypatch.undo()
    await _next_nonce_is_known(client, counter, nonce + 1)


async def _sent(client: ChainClient, nonce: int) -> bool:
    return await _pending_count(client) >= nonce


async def test_transaction_dropped_by_the_node_is_sent_again(
    client: ChainClient, counter: Any
) -> None:
    """The node forgets a pending transaction (pool eviction, restart): the
    waiter notices and sends the same signed bytes again, which also unblocks
    the transactions queued behind it."""
    count, nonce = await client.call(counter.functions.count()), await _pending_count(client)
    await rpc(client, "evm_setAutomine", False)
    try:
        first = asyncio.create_task(client.transact(counter.functions.inc()))
        await _until(lambda: _sent(client, nonce + 1))
        (tx_hash,) = [h for h in await _pool(client)]
        await rpc(client, "anvil_dropTransaction", tx_hash)
        assert await _pending_count(client) == nonce
        second = asyncio.create_task(client.transact(counter.functions.inc()))
        await _until(lambda: _sent(client, nonce + 2), timeout=10)  # the first is back
        await rpc(client, "evm_mine")
        receipts = await asyncio.wait_for(asyncio.gather(first, second), 10)
    finally:
        await rpc(client, "evm_setAutomine", True)
    assert receipts[0].tx_hash == tx_hash
    assert sorted([await _nonce_of(client, r.tx_hash) for r in receipts]) == [nonce, nonce + 1]
    assert await client.call(counter.functions.count()) == count + 2


async def _pool(client: ChainClient) -> list[str]:
    content = await rpc(client, "txpool_content")
    return [
        tx["hash"]
        for by_sender in content["pending"].values()
        for tx in by_sender.values()
        if tx["from"].lower() == client.address.lower()
    ]


# -- reverts ------------------------------------------------------------------


async def test_estimate_revert_is_fast_and_decoded(client: ChainClient, counter: Any) -> None:
    nonce = await _pending_count(client)
    start = time.monotonic()
    with pytest.raises(ContractRevert) as info:
        await client.transact(counter.functions.failWith(7))
    assert time.monotonic() - start < 2.0
    assert info.value.error_name == "TooBig"
    assert info.value.error_args == {"value": 7, "caller": client.address}
    assert info.value.revert_args == (7, client.address)
    assert f"TooBig(value=7, caller={client.address})" in info.value.message
    assert isinstance(info.value, FailedPrecondition)  # unmapped
    assert await _pending_count(client) == nonce  # nothing was sent


async def test_status_mapping_hook(anvil: Anvil, counter: Any) -> None:
    mapping = {"Forbidden": PermissionDenied, "TooBig": InvalidArgument}
    async with await ChainClient.connect(
        anvil.ws_url, anvil.dev_accounts[1], status_for=mapping.get
    ) as client:
        c = client.contract(counter.address, counter.abi)
        with pytest.raises(PermissionDenied) as info:
            await client.transact(c.functions.failWith(0))
        assert isinstance(info.value, ContractRevert)
        assert info.value.error_name == "Forbidden" and info.value.http_status == 403
        with pytest.raises(InvalidArgument):
            await client.call(c.functions.failWith(9))
        with pytest.raises(ContractRevert) as plain:
            await client.call(c.functions.failWith(1))
        assert plain.value.error_name == "Error"
        assert plain.value.error_args == {"reason": "plain reason"}
        assert isinstance(plain.value, FailedPrecondition)
        with pytest.raises(ContractRevert) as panic:
            await client.call(c.functions.failWith(2))
        assert panic.value.error_name == "Panic" and panic.value.revert_args == (1,)


async def test_mined_revert_is_explained_without_timeout(client: ChainClient, counter: Any) -> None:
    """Two transactions that estimate fine but only one fits: the second
    fails when mined (explicit gas: no estimate) and is explained at once."""
    limit = await client.call(counter.functions.count()) + 1
    nonce = await _pending_count(client)
    await rpc(client, "evm_setAutomine", False)
    try:
        sends = [
            asyncio.create_task(client.transact(counter.functions.incUntil(limit), gas=200_000))
            for _ in range(2)
        ]
        await _until(lambda: _sent(client, nonce + 2))
        await rpc(client, "evm_mine")
        start = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 10)
    finally:
        await rpc(client, "evm_setAutomine", True)
    assert time.monotonic() - start < 3.0
    (failed,) = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(failed, ContractRevert) and failed.error_name == "TooBig"
    assert failed.tx_hash is not None and failed.tx_hash.startswith("0x")
    (mined,) = [r for r in results if not isinstance(r, BaseException)]
    assert mined.status == 1 and mined.event("Bumped").args["count"] == limit


# -- fees, transfers, reads ---------------------------------------------------


async def test_eip1559_fees_by_default(client: ChainClient, counter: Any) -> None:
    receipt = await client.transact(counter.functions.inc())
    tx = await client.w3.eth.get_transaction(receipt.tx_hash)  # type: ignore[arg-type]
    assert tx["type"] == 2
    assert tx["maxFeePerGas"] >= tx["maxPriorityFeePerGas"]


async def test_legacy_fees_on_pre_london_zero_gas_chain(counter_artifact: dict[str, Any]) -> None:
    # Like Besu with --min-gas-price=0 and no London fork: no baseFeePerGas.
    async with (
        Anvil(extra_args=["--hardfork", "berlin", "--gas-price", "0"]) as node,
        await ChainClient.connect(node.ws_url, node.dev_accounts[0]) as client,
    ):
        latest = await client.w3.eth.get_block("latest")
        assert latest.get("baseFeePerGas") is None
        balance = await client.balance()
        address, _ = await client.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
        counter = client.contract(address, counter_artifact["abi"])
        r = await client.transact(counter.functions.inc())
        tx = await client.w3.eth.get_transaction(r.tx_hash)  # type: ignore[arg-type]
        assert tx["type"] == 0 and tx["gasPrice"] == 0
        assert await client.balance() == balance  # free gas


async def test_transfer_and_fund(anvil: Anvil, client: ChainClient) -> None:
    target = "0x000000000000000000000000000000000000bEEF"
    before = await client.balance(target)
    await anvil.fund(target, 12345)
    receipt = await client.transfer(target, 5)
    assert receipt.status == 1 and receipt.events == ()
    assert await client.balance(target) == before + 12350


async def test_deploy_returns_address_and_receipt(
    client: ChainClient, counter_artifact: dict[str, Any]
) -> None:
    address, receipt = await client.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
    assert address.startswith("0x") and len(address) == 42
    assert receipt.status == 1 and receipt.gas_used > 0
    assert await client.w3.eth.get_code(address)  # type: ignore[arg-type]


async def test_receipt_events_are_named(client: ChainClient, counter: Any) -> None:
    receipt = await client.transact(counter.functions.bump(42))
    event = receipt.event("Bumped")
    assert event.args == {"by": client.address, "tag": 42, "count": event.args["count"]}
    assert event.address == counter.address and event.tx_hash == receipt.tx_hash
    assert event.block_number == receipt.block_number
    with pytest.raises(FailedPrecondition):
        receipt.event("Nope")


async def test_call_at_block(client: ChainClient, counter: Any) -> None:
    first = await client.transact(counter.functions.inc())
    await client.transact(counter.functions.inc())
    then = await client.call(counter.functions.count(), block=first.block_number)
    assert await client.call(counter.functions.count()) == then + 1


async def test_head_and_block_period(client: ChainClient, counter: Any) -> None:
    await client.transact(counter.functions.inc())
    head = await client.head()
    assert head.number >= 1 and head.hash.startswith("0x") and head.timestamp > 0
    assert (await client.block(head.number)) == head
    assert await client.block_period() >= 1.0


async def test_block_period_is_the_median_interval(client: ChainClient) -> None:
    stamp = (await client.head()).timestamp
    for gap in (5, 5, 7, 5, 1, 5):  # median 5; one slow and one fast block
        stamp += gap
        await rpc(client, "evm_setNextBlockTimestamp", stamp)
        await rpc(client, "evm_mine")
    assert await client.block_period(samples=6) == 5.0


async def test_heads(client: ChainClient, counter: Any) -> None:
    heads = client.heads()  # subscribed (shared) at once: no head is missed
    receipt = await client.transact(counter.functions.inc())
    head = await asyncio.wait_for(heads.__anext__(), 5)
    while head.number < receipt.block_number:
        head = await asyncio.wait_for(heads.__anext__(), 5)
    assert head.number == receipt.block_number
    await heads.close()
    with pytest.raises(StopAsyncIteration):
        await heads.__anext__()


async def test_unreachable_node_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await ChainClient.connect("ws://127.0.0.1:9", _account(), connect_attempts=2)
    with pytest.raises(InvalidArgument):
        await ChainClient.connect("http://127.0.0.1:9", _account())


async def test_close_ends_streams_and_is_bounded(anvil: Anvil, counter: Any) -> None:
    client = await ChainClient.connect(anvil.ws_url, anvil.dev_accounts[3])
    logs = client.logs(counter.address, None, None, counter.abi)
    heads = client.heads()
    await logs.wait_live()
    start = time.monotonic()
    await client.close()
    assert time.monotonic() - start < 2.0
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(logs.__anext__(), 2)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(heads.__anext__(), 2)
    with pytest.raises(Unavailable):
        await client.head()
    await client.close()  # idempotent


def _account() -> Any:
    from eth_account import Account

    return Account.create()
