"""Async Ethereum client for the MEF: local signing, a concurrency-safe
nonce manager, fast revert reporting, and reconnecting log subscriptions.

Transactions are signed here and sent with ``eth_sendRawTransaction`` so the
node (Besu in production) never needs to hold keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes

from mecfed.chain.abi import Contract, ContractFunction, EventDecoder, constructor_data
from mecfed.chain.revert import ContractRevert, ErrorDecoder, StatusFor, is_revert_error
from mecfed.chain.revert import revert_data_of as _revert_data_of
from mecfed.chain.rpc import RpcConnection, RpcError, to_hex, to_int
from mecfed.chain.subscriptions import HeadStream, LogStream, TopicFilter
from mecfed.errors import DeadlineExceeded, FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

# Receipts are re-checked on every new head; this bounds the wait if a head
# notification is lost (e.g. while the head stream reconnects).
RECEIPT_RECHECK_S = 1.0
# Revert context kept for transactions sent with send() and not yet waited for.
MAX_PENDING = 10_000


@dataclass(frozen=True)
class Receipt:
    """The parts of a transaction receipt the MEF uses (``raw`` has all)."""

    tx_hash: str
    block_number: int
    status: int
    gas_used: int
    contract_address: str | None
    logs: list[dict[str, Any]]
    raw: dict[str, Any]


@dataclass
class _Pending:
    """What is needed to explain a revert after the fact."""

    call: dict[str, Any]
    gas: int
    decoder: ErrorDecoder
    context: str


class ChainClient:
    """One account on one node. Create with :meth:`connect`, end with :meth:`close`.

    ``status_for`` maps custom error names to domain error classes; the
    raised exception is then both that class and :class:`ContractRevert`.
    """

    def __init__(
        self,
        conn: RpcConnection,
        account: LocalAccount,
        chain_id: int,
        *,
        status_for: StatusFor | None = None,
        gas_margin: float = 1.25,
        receipt_timeout: float = 60.0,
        extra_error_abis: Sequence[Sequence[dict[str, Any]]] = (),
    ) -> None:
        self._conn = conn
        self.account = account
        self.address = account.address
        self.chain_id = chain_id
        self.status_for = status_for
        self.gas_margin = gas_margin
        self.receipt_timeout = receipt_timeout
        self._extra_error_abis = list(extra_error_abis)
        self._nonce: int | None = None
        self._nonce_lock = asyncio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._streams: set[LogStream | HeadStream] = set()
        self._heads_seen = 0
        self._head_cond = asyncio.Condition()
        self._head_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        ws_url: str,
        account: LocalAccount,
        *,
        status_for: StatusFor | None = None,
        gas_margin: float = 1.25,
        receipt_timeout: float = 60.0,
        request_timeout: float = 30.0,
        connect_attempts: int = 5,
        extra_error_abis: Sequence[Sequence[dict[str, Any]]] = (),
    ) -> ChainClient:
        conn = RpcConnection(ws_url, request_timeout=request_timeout)
        await conn.connect(attempts=connect_attempts)
        try:
            chain_id = to_int(await conn.request("eth_chainId", []))
        except BaseException:
            await conn.close()
            raise
        client = cls(
            conn,
            account,
            chain_id,
            status_for=status_for,
            gas_margin=gas_margin,
            receipt_timeout=receipt_timeout,
            extra_error_abis=extra_error_abis,
        )
        client._head_task = asyncio.create_task(client._watch_heads(), name="chain-heads")
        return client

    async def close(self) -> None:
        if self._head_task is not None:
            self._head_task.cancel()
            try:
                await self._head_task
            except asyncio.CancelledError:
                pass
            self._head_task = None
        for stream in list(self._streams):
            await stream.close()
        self._streams.clear()
        await self._conn.close()

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def ws_url(self) -> str:
        return self._conn.ws_url

    def contract(self, address: str, abi: Sequence[dict[str, Any]]) -> Contract:
        return Contract(address, abi)

    async def request(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC request (idempotent methods only: it may be retried)."""
        return await self._conn.request(method, params)

    async def block_number(self) -> int:
        return to_int(await self._conn.request("eth_blockNumber", []))

    async def balance(self, address: str | None = None) -> int:
        who = to_checksum_address(address or self.address)
        return to_int(await self._conn.request("eth_getBalance", [who, "latest"]))

    # -- transactions -------------------------------------------------------

    async def transact(
        self,
        fn: ContractFunction,
        value: int = 0,
        *,
        gas: int | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Sends ``fn`` and waits for its receipt; a revert raises at once."""
        return await self.wait(await self.send(fn, value, gas=gas), timeout=timeout)

    async def send(self, fn: ContractFunction, value: int = 0, *, gas: int | None = None) -> str:
        """Signs and sends ``fn`` without waiting; returns the tx hash.

        A call that would revert (gas estimation fails) raises
        :class:`ContractRevert` here, before anything is sent. An explicit
        ``gas`` limit skips estimation.
        """
        decoder = self._decoder_for(fn.contract_abi)
        call = {
            "from": self.address,
            "to": to_checksum_address(fn.address),
            "data": fn.calldata(),
            "value": hex(value),
        }
        return await self._send_call(call, decoder, context=f"{fn.fn_name}()", gas=gas)

    async def transfer(self, to: str, wei: int) -> Receipt:
        """Plain value transfer (funding accounts)."""
        call = {"from": self.address, "to": to_checksum_address(to), "value": hex(wei)}
        return await self.wait(await self._send_call(call, ErrorDecoder(), context="transfer"))

    async def deploy(
        self, abi: Sequence[dict[str, Any]], bytecode: str, *args: Any
    ) -> tuple[Contract, Receipt]:
        """Deploys a contract; returns it and the receipt."""
        data = constructor_data(abi, bytecode, *args)
        call = {"from": self.address, "data": data, "value": "0x0"}
        decoder = self._decoder_for(abi)
        receipt = await self.wait(await self._send_call(call, decoder, context="deploy"))
        if not receipt.contract_address:
            raise FailedPrecondition("deployment receipt has no contract address")
        return self.contract(receipt.contract_address, abi), receipt

    async def call(
        self, fn: ContractFunction, *, block: int | str = "latest", value: int = 0
    ) -> Any:
        """A read-only call whose reverts raise decoded :class:`ContractRevert`."""
        decoder = self._decoder_for(fn.contract_abi)
        call = {
            "from": self.address,
            "to": to_checksum_address(fn.address),
            "data": fn.calldata(),
            "value": hex(value),
        }
        try:
            result = await self._conn.request("eth_call", [call, _block_id(block)])
        except RpcError as exc:
            raise self._revert_from(exc, decoder, f"{fn.fn_name}()") from exc
        return fn.decode_output(HexBytes(result))

    async def _send_call(
        self, call: dict[str, Any], decoder: ErrorDecoder, context: str, gas: int | None = None
    ) -> str:
        # Gas and fees are computed outside the nonce lock so concurrent
        # senders only serialise on nonce assignment + submission.
        if gas is None:
            gas = await self._estimate_gas(call, decoder, context)
        fees = await self._fees()
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "gas": gas,
            "value": to_int(call.get("value", "0x0")),
            "data": call.get("data", b""),
            **fees,
        }
        if call.get("to"):
            tx["to"] = call["to"]
        tx_hash = await self._submit(tx)
        if len(self._pending) >= MAX_PENDING:  # sent but never waited for
            self._pending.pop(next(iter(self._pending)))
        self._pending[tx_hash] = _Pending(call, gas, decoder, context)
        return tx_hash

    async def _estimate_gas(self, call: dict[str, Any], decoder: ErrorDecoder, context: str) -> int:
        try:
            estimate = to_int(await self._conn.request("eth_estimateGas", [call]))
        except RpcError as exc:
            raise self._revert_from(exc, decoder, context) from exc
        return int(estimate * self.gas_margin) + 10_000

    def _revert_from(self, exc: RpcError, decoder: ErrorDecoder, context: str) -> Exception:
        if not is_revert_error(exc.error):
            return FailedPrecondition(f"{context}: node refused: {exc.rpc_message}")
        data = _revert_data_of(exc.error) or b""
        return decoder.to_exception(
            data, self.status_for, context=context, fallback_message=exc.rpc_message
        )

    async def _fees(self) -> dict[str, int]:
        latest = await self._conn.request("eth_getBlockByNumber", ["latest", False])
        base_fee = latest.get("baseFeePerGas") if latest else None
        if base_fee is None:
            # Pre-London chain: legacy pricing (0 on zero-gas Besu networks).
            return {"gasPrice": to_int(await self._conn.request("eth_gasPrice", []))}
        try:
            tip = to_int(await self._conn.request("eth_maxPriorityFeePerGas", []))
        except RpcError:
            tip = 0  # not supported (free-gas networks): no tip needed
        return {"maxFeePerGas": 2 * to_int(base_fee) + tip, "maxPriorityFeePerGas": tip}

    async def _submit(self, tx: dict[str, Any]) -> str:
        """Assigns a nonce, signs and sends; retries once after a resync.

        A nonce is only consumed when the node holds the transaction. If the
        send failed but the node knows the hash anyway (reply lost, "already
        known"), that counts as sent, so the same call is never submitted
        twice under two nonces.
        """
        async with self._nonce_lock:
            last_error: Exception | None = None
            for attempt in (0, 1):
                if self._nonce is None:
                    self._nonce = await self._pending_nonce()
                nonce = self._nonce
                signed = self.account.sign_transaction({**tx, "nonce": nonce})
                tx_hash = to_hex(signed.hash)
                try:
                    await self._conn.request(
                        "eth_sendRawTransaction", [to_hex(signed.raw_transaction)], retry=False
                    )
                    self._nonce = nonce + 1
                    return tx_hash
                except (RpcError, Unavailable) as exc:
                    last_error = exc
                    log.info("send with nonce %d failed (attempt %d): %s", nonce, attempt, exc)
                self._nonce = None  # resync from the node before any further send
                if await self._node_knows(tx_hash):
                    self._nonce = nonce + 1
                    return tx_hash
            assert last_error is not None
            if isinstance(last_error, Unavailable):
                raise last_error
            raise FailedPrecondition(f"transaction rejected by node: {last_error}")

    async def _pending_nonce(self) -> int:
        return to_int(
            await self._conn.request("eth_getTransactionCount", [self.address, "pending"])
        )

    async def _node_knows(self, tx_hash: str) -> bool:
        try:
            return await self._conn.request("eth_getTransactionByHash", [tx_hash]) is not None
        except (RpcError, Unavailable):
            return False

    # -- receipts -----------------------------------------------------------

    async def wait(self, tx_hash: str, *, timeout: float | None = None) -> Receipt:
        """The receipt of ``tx_hash``; raises :class:`ContractRevert` if it
        failed and :class:`DeadlineExceeded` if not mined within ``timeout``."""
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            seen = self._heads_seen
            raw = await self._conn.request("eth_getTransactionReceipt", [tx_hash])
            if raw is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(f"transaction {tx_hash} not mined within {timeout:.0f} s")
            async with self._head_cond:
                try:
                    await asyncio.wait_for(
                        self._head_cond.wait_for(lambda s=seen: self._heads_seen > s),
                        timeout=min(remaining, RECEIPT_RECHECK_S),
                    )
                except TimeoutError:
                    pass  # re-check anyway (a head notification may be lost)
        receipt = _receipt_of(tx_hash, raw)
        pending = self._pending.pop(tx_hash, None)
        if receipt.status == 0:
            raise await self._explain_failure(receipt, pending)
        return receipt

    async def _explain_failure(self, receipt: Receipt, pending: _Pending | None) -> ContractRevert:
        if pending is None:
            return ContractRevert("Unknown", (), f"transaction {receipt.tx_hash} reverted")
        if receipt.gas_used >= pending.gas:
            return ContractRevert(
                "OutOfGas",
                (),
                f"{pending.context}: out of gas ({pending.gas})",
                tx_hash=receipt.tx_hash,
            )
        # Re-run the call at the receipt's block to obtain the revert data.
        try:
            await self._conn.request(
                "eth_call", [{**pending.call, "gas": hex(pending.gas)}, hex(receipt.block_number)]
            )
        except RpcError as exc:
            if is_revert_error(exc.error):
                err = pending.decoder.to_exception(
                    _revert_data_of(exc.error) or b"",
                    self.status_for,
                    context=pending.context,
                    tx_hash=receipt.tx_hash,
                    fallback_message=exc.rpc_message,
                )
                return err
        return ContractRevert(
            "Unknown",
            (),
            f"{pending.context}: transaction {receipt.tx_hash} reverted (reason not reproducible)",
            tx_hash=receipt.tx_hash,
        )

    async def _watch_heads(self) -> None:
        stream = HeadStream(self.ws_url)
        self._streams.add(stream)
        try:
            async for _head in stream:
                async with self._head_cond:
                    self._heads_seen += 1
                    self._head_cond.notify_all()
        finally:
            self._streams.discard(stream)
            await stream.close()

    # -- subscriptions ------------------------------------------------------

    def subscribe_logs(
        self,
        address: str | Sequence[str] | None,
        topics: TopicFilter | None = None,
        from_block: int | None = None,
        *,
        abi: Sequence[dict[str, Any]] | None = None,
    ) -> LogStream:
        """Logs matching ``address``/``topics`` (node-side filter; ``None``
        entries are wildcards), decoded with ``abi`` events when given.

        Iterate with ``async for``; ``await stream.close()`` ends it (the
        client closes its streams too). Back-fills from ``from_block``
        (``None``: only logs from the next block on) and survives reconnects
        without loss or duplicates — see :mod:`mecfed.chain.subscriptions`.
        """
        self._prune_streams()
        stream = LogStream(
            self.ws_url,
            address,
            topics,
            from_block,
            EventDecoder(abi) if abi else None,
            request_timeout=self._conn.request_timeout,
        )
        self._streams.add(stream)
        return stream

    def new_heads(self) -> HeadStream:
        """New block headers as they arrive (reconnecting)."""
        self._prune_streams()
        stream = HeadStream(self.ws_url, request_timeout=self._conn.request_timeout)
        self._streams.add(stream)
        return stream

    def _prune_streams(self) -> None:
        self._streams = {s for s in self._streams if not s.closed}

    def _decoder_for(self, abi: Sequence[dict[str, Any]]) -> ErrorDecoder:
        return ErrorDecoder([*self._extra_error_abis, abi])


def event_topic(abi: Sequence[dict[str, Any]], event_name: str) -> str:
    """topic0 of ``event_name`` in ``abi`` (for ``subscribe_logs`` filters)."""
    return EventDecoder(abi).topic_of(event_name)


def address_topic(address: str) -> str:
    """An address as a 32-byte topic (indexed ``address`` arguments)."""
    return "0x" + bytes(HexBytes(to_checksum_address(address))).rjust(32, b"\0").hex()


def uint_topic(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _block_id(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


def _receipt_of(tx_hash: str, raw: dict[str, Any]) -> Receipt:
    return Receipt(
        tx_hash=tx_hash,
        block_number=to_int(raw["blockNumber"]),
        status=to_int(raw.get("status", "0x1")),
        gas_used=to_int(raw["gasUsed"]),
        contract_address=(
            to_checksum_address(raw["contractAddress"]) if raw.get("contractAddress") else None
        ),
        logs=list(raw.get("logs", [])),
        raw=dict(raw),
    )
