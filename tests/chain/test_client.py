"""ChainClient against a real anvil: nonces, reverts, fees, receipts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient
from mecfed.chain.revert import ContractRevert
from mecfed.chain.rpc import to_int
from mecfed.errors import FailedPrecondition, InvalidArgument, PermissionDenied

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _nonce_of(client: ChainClient, tx_hash: str) -> int:
    tx = await client.request("eth_getTransactionByHash", [tx_hash])
    return to_int(tx["nonce"])


async def test_concurrent_transacts_get_distinct_nonces(client: ChainClient, counter: Any) -> None:
    before = await client.call(counter.functions.count())
    receipts = await asyncio.gather(*(client.transact(counter.functions.inc()) for _ in range(20)))
    assert all(r.status == 1 for r in receipts)
    nonces = [await _nonce_of(client, r.tx_hash) for r in receipts]
    assert len(set(nonces)) == 20
    assert sorted(nonces) == list(range(min(nonces), min(nonces) + 20))
    assert await client.call(counter.functions.count()) == before + 20


async def test_recovers_from_stale_nonce(client: ChainClient, counter: Any) -> None:
    await client.transact(counter.functions.inc())
    expected = to_int(await client.request("eth_getTransactionCount", [client.address, "pending"]))
    client._nonce = 0  # sabotage: the node rejects "nonce too low"
    receipt = await client.transact(counter.functions.inc())
    assert receipt.status == 1
    assert await _nonce_of(client, receipt.tx_hash) == expected
    assert client._nonce == expected + 1


async def test_recovers_from_dropped_connection(client: ChainClient, counter: Any) -> None:
    await client._conn.disconnect()  # the socket goes away under the client
    receipt = await client.transact(counter.functions.inc())
    assert receipt.status == 1


async def test_estimate_revert_is_fast_and_decoded(client: ChainClient, counter: Any) -> None:
    start = time.monotonic()
    with pytest.raises(ContractRevert) as info:
        await client.transact(counter.functions.failWith(7))
    assert time.monotonic() - start < 2.0
    assert info.value.error_name == "TooBig"
    assert info.value.revert_args == (7, client.address)
    assert "TooBig(value=7, caller=0x" in info.value.message


async def test_status_mapping_hook(anvil: Anvil, counter: Any) -> None:
    mapping = {"Forbidden": PermissionDenied, "TooBig": InvalidArgument}
    client = await ChainClient.connect(anvil.ws_url, anvil.dev_accounts[1], status_for=mapping.get)
    try:
        c = client.contract(counter.address, counter.abi)
        with pytest.raises(PermissionDenied) as info:
            await client.transact(c.functions.failWith(0))
        assert isinstance(info.value, ContractRevert)
        assert info.value.error_name == "Forbidden"
        with pytest.raises(InvalidArgument):
            await client.call(c.functions.failWith(9))
        with pytest.raises(ContractRevert) as plain:  # unmapped: FailedPrecondition
            await client.call(c.functions.failWith(1))
        assert plain.value.error_name == "Error"
        assert plain.value.revert_args == ("plain reason",)
        assert plain.value.code == FailedPrecondition.code  # unmapped reverts
        with pytest.raises(ContractRevert) as panic:
            await client.call(c.functions.failWith(2))
        assert panic.value.error_name == "Panic"
        assert panic.value.revert_args == (1,)
    finally:
        await client.close()


async def test_mined_revert_is_explained_without_timeout(client: ChainClient, counter: Any) -> None:
    """The second transaction fails only when mined (explicit gas: no estimate)."""
    limit = await client.call(counter.functions.count()) + 1
    await client.request("evm_setAutomine", [False])
    try:
        first = await client.send(counter.functions.incUntil(limit), gas=200_000)
        second = await client.send(counter.functions.incUntil(limit), gas=200_000)
        await client.request("evm_mine", [])
    finally:
        await client.request("evm_setAutomine", [True])
    assert (await client.wait(first)).status == 1
    start = time.monotonic()
    with pytest.raises(ContractRevert) as info:
        await client.wait(second)
    assert time.monotonic() - start < 2.0
    assert info.value.error_name == "TooBig"
    assert info.value.tx_hash == second


async def test_send_then_wait_pipelines(client: ChainClient, counter: Any) -> None:
    hashes = [await client.send(counter.functions.bump(i)) for i in range(5)]
    receipts = [await client.wait(h) for h in hashes]
    assert [r.status for r in receipts] == [1] * 5
    assert receipts[-1].block_number >= receipts[0].block_number


async def test_eip1559_fees_by_default(client: ChainClient, counter: Any) -> None:
    receipt = await client.transact(counter.functions.inc())
    tx = await client.request("eth_getTransactionByHash", [receipt.tx_hash])
    assert to_int(tx["type"]) == 2
    assert to_int(tx["maxFeePerGas"]) >= to_int(tx["maxPriorityFeePerGas"])


async def test_legacy_fees_on_pre_london_zero_gas_chain(counter_artifact: dict[str, Any]) -> None:
    # Like Besu with --min-gas-price=0 and no London fork: no baseFeePerGas.
    async with Anvil(extra_args=["--hardfork", "berlin", "--gas-price", "0"]) as node:
        client = await ChainClient.connect(node.ws_url, node.dev_accounts[0])
        try:
            latest = await client.request("eth_getBlockByNumber", ["latest", False])
            assert latest.get("baseFeePerGas") is None
            balance = await client.balance()
            counter, _ = await client.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
            r = await client.transact(counter.functions.inc())
            tx = await client.request("eth_getTransactionByHash", [r.tx_hash])
            assert to_int(tx["type"]) == 0
            assert to_int(tx["gasPrice"]) == 0
            assert await client.balance() == balance  # free gas
        finally:
            await client.close()


async def test_transfer_and_fund(anvil: Anvil, client: ChainClient) -> None:
    target = "0x000000000000000000000000000000000000bEEF"
    before = await client.balance(target)
    await anvil.fund(target, 12345)
    assert await client.balance(target) == before + 12345


async def test_new_heads(client: ChainClient, counter: Any) -> None:
    heads = client.new_heads()
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def consume() -> None:
        async for head in heads:
            await got.put(head)

    task = asyncio.create_task(consume())
    try:
        # The stream connects lazily: keep producing blocks until one is seen.
        for _ in range(20):
            receipt = await client.transact(counter.functions.inc())
            try:
                head = await asyncio.wait_for(got.get(), 0.5)
                break
            except TimeoutError:
                continue
        assert head["number"] >= receipt.block_number - 1
    finally:
        await heads.close()
        await asyncio.wait_for(task, 5)
