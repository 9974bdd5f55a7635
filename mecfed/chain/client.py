"""The MEF's Ethereum client, on web3.py.

One :class:`ChainClient` is one account on one node over ONE persistent
WebSocket (web3's ``AsyncWeb3`` + a :class:`~mecfed.chain.provider.MultiplexProvider`)
that carries every request and every subscription. Contract calls, gas
estimates, transaction building, log and receipt decoding are web3's; on top
of it sit the parts stock web3 lacks:

* local signing (``eth_account``) and ``eth_sendRawTransaction``: Besu nodes
  hold no keys;
* a nonce manager for many concurrent senders on one account (:meth:`_submit`);
* fast reverts: a transaction that would revert raises its decoded custom
  error at gas estimation, and a mined failure is explained by re-running
  the call at its block;
* receipts awaited on new heads (with a bounded re-check), a transaction the
  node dropped is sent again;
* a supervisor that reconnects with backoff and re-subscribes every stream,
  which then replays what it missed (:mod:`mecfed.chain.subscriptions`).

Only standard JSON-RPC methods (those Besu documents) are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    TimeExhausted,
    TransactionIndexingInProgress,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.types import RPCEndpoint

from mecfed.chain.connection import Connection, open_web3
from mecfed.chain.decoders import Codec, Codecs
from mecfed.chain.events import Abi, Event, Head, TopicFilter, address_topic, log_filter
from mecfed.chain.provider import TRANSPORT_ERRORS, MultiplexProvider
from mecfed.chain.revert import ContractRevert, ErrorDecoder, StatusFor, revert_class_for
from mecfed.chain.subscriptions import (
    GETLOGS_CHUNK,
    HeadStream,
    LogStream,
)
from mecfed.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    MecfedError,
    Unavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Receipts are re-checked on every new head; this bounds the wait when no
# head comes (a lost notification, a reconnect, a node that mines on demand).
RECEIPT_RECHECK_S = 1.0
CLOSE_TIMEOUT_S = 5.0
UNSUBSCRIBE_TIMEOUT_S = 2.0

__all__ = ["ChainClient", "Event", "Head", "Receipt", "address_topic"]


@dataclass(frozen=True)
class Receipt:
    """A mined, successful transaction and the events it emitted (decoded
    with the ABI of the contract called)."""

    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    events: tuple[Event, ...]

    def event(self, name: str) -> Event:
        """The first event called ``name``; FailedPrecondition if none."""
        for event in self.events:
            if event.name == name:
                return event
        raise FailedPrecondition(f"transaction {self.tx_hash} emitted no {name}")


@dataclass(frozen=True)
class _Pending:
    """A sent transaction: what is needed to resend or explain it."""

    tx_hash: str
    raw: bytes  # the signed transaction, resent as is if the node drops it
    call: dict[str, Any]  # from/to/data/value, to re-run it at its block
    gas: int
    codec: Codec
    address: str | None  # whose logs to decode (None: the contract it creates)
    context: str


class ChainClient:
    """One account on one node. Create with :meth:`connect`, end with :meth:`close`.

    ``status_for`` maps custom error names to domain error classes; a revert
    raised here is then both that class and :class:`ContractRevert`.
    """

    gas_margin = 1.25

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        account: LocalAccount,
        chain_id: int,
        *,
        status_for: StatusFor | None = None,
        request_timeout: float = 30.0,
        receipt_timeout: float = 60.0,
    ) -> None:
        self.w3 = w3
        self._connection = Connection(w3, request_timeout=request_timeout)
        self.url = self._connection.url
        self.account = account
        self.address: ChecksumAddress = account.address
        self.chain_id = chain_id
        self.status_for = status_for
        self.receipt_timeout = receipt_timeout
        self._nonce: int | None = None
        self._nonce_lock = asyncio.Lock()
        self._tip_supported = True
        self._codecs = Codecs(w3)

    @classmethod
    async def connect(
        cls,
        url: str,
        account: LocalAccount,
        *,
        status_for: StatusFor | None = None,
        request_timeout: float = 30.0,
        receipt_timeout: float = 60.0,
        connect_attempts: int = 5,
    ) -> ChainClient:
        w3 = await open_web3(url, request_timeout=request_timeout, attempts=connect_attempts)
        client: ChainClient | None = None
        try:
            chain_id = await w3.eth.chain_id
            client = cls(
                w3,
                account,
                chain_id,
                status_for=status_for,
                request_timeout=request_timeout,
                receipt_timeout=receipt_timeout,
            )
            await client._connection.start()
            return client
        except BaseException as exc:
            if client is not None:
                await client.close()
            else:
                with contextlib.suppress(Exception):
                    await cast(MultiplexProvider, w3.provider).disconnect()
            if isinstance(exc, (*TRANSPORT_ERRORS, TimeExhausted)):
                raise Unavailable(f"{url} does not answer: {exc!r}") from exc
            raise

    async def close(self) -> None:
        """Ends every stream and the connection (bounded)."""
        await self._connection.close()

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def contract(self, address: str, abi: Abi) -> Any:
        """A web3 contract object (struct outputs as named tuples)."""
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=list(abi), decode_tuples=True
        )

    @property
    def connected(self) -> bool:
        """Whether the connection is up (subscribed to new heads) right now."""
        return self._connection.connected

    @property
    def reconnects(self) -> int:
        """How often the connection was lost and opened again."""
        return self._connection.reconnects

    @property
    def request_timeout(self) -> float:
        """How long a request waits for the connection to be up."""
        return self._connection.request_timeout

    @request_timeout.setter
    def request_timeout(self, seconds: float) -> None:
        self._connection.request_timeout = seconds

    async def resync_nonce(self) -> None:
        """Forgets the next nonce: the next send reads the account's pending
        transaction count from the node (after a reorg rewound it, or when
        another wallet sent from this account)."""
        async with self._nonce_lock:
            self._nonce = None

    # -- reads ----------------------------------------------------------------

    async def call(self, fn: Any, *, block: int | str = "latest") -> Any:
        """A read-only call of web3 contract function ``fn``; reverts raise
        decoded :class:`ContractRevert`."""
        context = f"{fn.fn_name}()"
        try:
            return await self._connection.request(
                lambda: fn.call({"from": self.address}, block_identifier=block), context
            )
        except ContractLogicError as exc:
            raise self._codecs.of(fn.contract_abi).revert(exc, self.status_for, context) from exc
        except BadFunctionCallOutput as exc:
            raise FailedPrecondition(f"{context}: no contract answers at {fn.address}") from exc
        except Web3RPCError as exc:
            raise FailedPrecondition(f"{context}: node refused: {exc}") from exc

    async def balance(self, address: str | None = None) -> int:
        who = to_checksum_address(address or self.address)
        return int(
            await self._connection.request(lambda: self.w3.eth.get_balance(who), "eth_getBalance")
        )

    async def head(self) -> Head:
        """The latest block."""
        return await self.block("latest")

    async def block(self, number: int | str) -> Head:
        """Block ``number`` (or a tag such as ``"latest"``); e.g. for the
        timestamp of an event's block."""
        try:
            block = await self._connection.request(
                lambda: self.w3.eth.get_block(cast(Any, number)), "eth_getBlockByNumber"
            )
        except Web3RPCError as exc:  # BlockNotFound
            raise FailedPrecondition(f"no block {number}: {exc}") from exc
        return Head.of(block)

    async def block_period(self, samples: int = 6) -> float:
        """Median interval of the last ``samples`` blocks in seconds, at least
        1 (timestamps are whole seconds); 1 without history."""
        latest = await self.head()
        first = max(0, latest.number - samples)
        earlier = await asyncio.gather(*(self.block(n) for n in range(first, latest.number)))
        stamps = [h.timestamp for h in (*earlier, latest)]
        intervals = [b - a for a, b in itertools.pairwise(stamps)]
        return max(1.0, float(statistics.median(intervals))) if intervals else 1.0

    async def get_logs(
        self,
        address: str | Sequence[str] | None,
        topics: TopicFilter | None,
        from_block: int,
        to_block: int | str,
        abi: Abi,
    ) -> list[Event]:
        """Past logs (``eth_getLogs``, in chunks), decoded with ``abi``."""
        end = to_block if isinstance(to_block, int) else (await self.block(to_block)).number
        query = log_filter(address, topics)
        decoder = self._codecs.of(abi).events
        assert decoder is not None
        events: list[Event] = []
        for start in range(from_block, end + 1, GETLOGS_CHUNK):
            for raw in await self._connection.raw_logs(
                query, start, min(end, start + GETLOGS_CHUNK - 1)
            ):
                event = decoder(raw)
                if event is not None:
                    events.append(event)
        return events

    # -- streams --------------------------------------------------------------

    def heads(self) -> HeadStream:
        """New heads from now on (one shared ``newHeads`` subscription)."""
        return self._connection.head_stream()

    def logs(
        self,
        address: str | Sequence[str] | None,
        topics: TopicFilter | None,
        from_block: int | None,
        abi: Abi,
    ) -> LogStream:
        """Logs of ``address`` matching ``topics`` (filtered on the node;
        ``None`` entries are wildcards) from ``from_block`` (``None``: from
        the next block), decoded with ``abi``. Subscribes at once; survives
        reconnects without loss or duplicates."""
        decoder = self._codecs.of(abi).events
        assert decoder is not None
        return self._connection.log_stream(log_filter(address, topics), from_block, decoder)

    # -- transactions ---------------------------------------------------------

    async def transact(
        self,
        fn: Any,
        value: int = 0,
        *,
        gas: int | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Sends web3 contract function call ``fn`` and waits for its receipt.

        A call that would revert raises its decoded :class:`ContractRevert`
        at gas estimation, before anything is sent; an explicit ``gas`` limit
        skips estimation (a mined revert is then explained after the fact).
        """
        codec = self._codecs.of(fn.contract_abi)
        context = f"{fn.fn_name}()"
        call: dict[str, Any] = {"from": self.address, "value": value}
        if gas is None:
            gas = await self._estimate(lambda: fn.estimate_gas(call), codec, context)
        fees = await self._fees()
        tx = await fn.build_transaction({**call, "gas": gas, "chainId": self.chain_id, **fees})
        pending = await self._send(dict(tx), codec, fn.address, context)
        receipt, _ = await self._wait(pending, timeout)
        return receipt

    async def deploy(self, abi: Abi, bytecode: str, *args: Any) -> tuple[str, Receipt]:
        """Deploys a contract; returns its address and the receipt."""
        codec = self._codecs.of(abi)
        constructor = self.w3.eth.contract(abi=list(abi), bytecode=bytecode).constructor(*args)
        call = {"from": self.address}
        gas = await self._estimate(lambda: constructor.estimate_gas(call), codec, "deploy")
        fees = await self._fees()
        tx = await constructor.build_transaction(
            {**call, "gas": gas, "chainId": self.chain_id, **fees}
        )
        receipt, raw = await self._wait(await self._send(dict(tx), codec, None, "deploy"))
        address = raw.get("contractAddress")
        if not address:
            raise FailedPrecondition("deployment receipt has no contract address")
        return to_checksum_address(address), receipt

    async def transfer(self, to: str, wei: int) -> Receipt:
        """A plain value transfer (funding accounts)."""
        codec = Codec(ErrorDecoder(), None)
        call: dict[str, Any] = {"from": self.address, "to": to_checksum_address(to), "value": wei}
        gas = await self._estimate(
            lambda: self.w3.eth.estimate_gas(cast(Any, call)), codec, "transfer"
        )
        tx = {**call, "gas": gas, "chainId": self.chain_id, "data": b"", **await self._fees()}
        receipt, _ = await self._wait(await self._send(tx, codec, None, "transfer"))
        return receipt

    async def _estimate(
        self, estimate: Callable[[], Awaitable[int]], codec: Codec, context: str
    ) -> int:
        try:
            gas = await self._connection.request(estimate, f"eth_estimateGas {context}")
        except ContractLogicError as exc:
            raise codec.revert(exc, self.status_for, context) from exc
        except Web3RPCError as exc:  # e.g. insufficient funds for the value
            raise FailedPrecondition(f"{context}: node refused: {exc}") from exc
        return int(gas * self.gas_margin) + 10_000

    async def _fees(self) -> dict[str, int]:
        block = self._connection.latest_block
        if block is None:
            block = await self._latest_block()
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            # Pre-London chain: legacy pricing (0 on zero-gas Besu networks).
            return {
                "gasPrice": int(
                    await self._connection.request(lambda: self.w3.eth.gas_price, "gas")
                )
            }
        tip = 0
        if self._tip_supported:
            try:
                reply = await self._connection.request(
                    lambda: self.w3.manager.coro_request(
                        RPCEndpoint("eth_maxPriorityFeePerGas"), []
                    ),
                    "eth_maxPriorityFeePerGas",
                )
                tip = int(reply, 16) if isinstance(reply, str) else int(reply)
            except Web3RPCError:
                self._tip_supported = False  # free-gas networks: no tip needed
        return {"maxFeePerGas": 2 * int(base_fee) + tip, "maxPriorityFeePerGas": tip}

    async def _latest_block(self) -> Mapping[str, Any]:
        block = await self._connection.request(
            lambda: self.w3.eth.get_block("latest"), "eth_getBlockByNumber"
        )
        return cast(Mapping[str, Any], block)

    async def _send(
        self, tx: dict[str, Any], codec: Codec, address: str | None, context: str
    ) -> _Pending:
        call: dict[str, Any] = {k: tx[k] for k in ("to", "data", "value") if k in tx}
        call["from"] = self.address
        tx.pop("from", None)
        signed = await self._submit(tx)
        return _Pending(
            tx_hash=HexBytes(signed.hash).to_0x_hex(),
            raw=bytes(signed.raw_transaction),
            call=call,
            gas=int(tx["gas"]),
            codec=codec,
            address=to_checksum_address(address) if address else None,
            context=context,
        )

    async def _submit(self, tx: dict[str, Any]) -> Any:
        """Assigns a nonce, signs and sends ``tx``; the signed transaction.

        Nonces are assigned under a lock, and one is consumed only when the
        node holds the transaction. A refused send resyncs from the node's
        pending count and is retried once. If the node knows the hash anyway
        ("already known", or the reply was lost), the send counts as done;
        if the reply was lost and the node can't be asked, it counts as done
        too (the receipt wait sends the same signed bytes again if the node
        turns out not to have it). So one call is never submitted twice
        under two nonces.
        """
        async with self._nonce_lock:
            last_error: Exception | None = None
            for attempt in (0, 1):
                if self._nonce is None:
                    self._nonce = await self._pending_nonce()
                nonce = self._nonce
                signed = self.account.sign_transaction({**tx, "nonce": nonce})
                tx_hash = HexBytes(signed.hash).to_0x_hex()
                try:
                    await self._send_raw(bytes(signed.raw_transaction))
                    self._nonce = nonce + 1
                    return signed
                except Web3RPCError as exc:  # the node answered: refused
                    last_error = exc
                    log.info("send with nonce %d refused (attempt %d): %s", nonce, attempt, exc)
                    self._nonce = None  # resync before any further send
                    if await self._node_knows(tx_hash):
                        self._nonce = nonce + 1
                        return signed
                except Unavailable as exc:  # no reply: the node may hold it
                    last_error = exc
                    log.info("send with nonce %d got no reply: %s", nonce, exc)
                    if await self._node_knows(tx_hash) is not False:
                        self._nonce = nonce + 1
                        return signed
                    self._nonce = None
            assert last_error is not None
            if isinstance(last_error, Unavailable):
                raise last_error
            raise FailedPrecondition(f"transaction rejected by node: {last_error}")

    async def _send_raw(self, raw: bytes) -> None:
        await self._connection.request(
            lambda: self.w3.eth.send_raw_transaction(raw), "eth_sendRawTransaction", retry=False
        )

    async def _pending_nonce(self) -> int:
        return int(
            await self._connection.request(
                lambda: self.w3.eth.get_transaction_count(self.address, "pending"),
                "eth_getTransactionCount",
            )
        )

    async def _node_knows(self, tx_hash: str) -> bool | None:
        """Whether the node has ``tx_hash`` (pending or mined); None if it
        can't be asked right now."""
        try:
            await self._connection.request(
                lambda: self.w3.eth.get_transaction(HexStr(tx_hash)), "eth_getTransactionByHash"
            )
            return True
        except TransactionNotFound:
            return False
        except (MecfedError, Web3Exception):
            return None

    # -- receipts -------------------------------------------------------------

    async def _wait(
        self, pending: _Pending, timeout: float | None = None
    ) -> tuple[Receipt, Mapping[str, Any]]:
        """The receipt of ``pending``; raises its decoded revert if it failed
        and DeadlineExceeded if not mined within ``timeout``."""
        timeout = self.receipt_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        checks = 0
        while True:
            head = self._connection.next_head()
            raw = await self._receipt(pending.tx_hash)
            if raw is not None:
                break
            checks += 1
            if checks > 1:
                await self._keep_sent(pending)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"{pending.context}: transaction {pending.tx_hash} not mined within "
                    f"{timeout:.0f} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(head.wait(), min(remaining, RECEIPT_RECHECK_S))
        receipt = self._receipt_of(raw, pending)
        if receipt.status == 0:
            raise await self._explain_failure(receipt, pending)
        return receipt, raw

    async def _receipt(self, tx_hash: str) -> Mapping[str, Any] | None:
        try:
            return cast(
                Mapping[str, Any],
                await self._connection.request(
                    lambda: self.w3.eth.get_transaction_receipt(HexStr(tx_hash)),
                    "eth_getTransactionReceipt",
                ),
            )
        except (TransactionNotFound, TransactionIndexingInProgress):
            return None

    async def _keep_sent(self, pending: _Pending) -> None:
        """Sends ``pending`` again if the node no longer has it (dropped from
        its pool): the same signed bytes, so it can only execute once."""
        if await self._node_knows(pending.tx_hash) is not False:
            return
        if await self._receipt(pending.tx_hash) is not None:
            return  # mined meanwhile
        log.warning("%s: node dropped %s; sending it again", pending.context, pending.tx_hash)
        try:
            await self._send_raw(pending.raw)
        except Unavailable:
            return  # next round
        except Web3RPCError as exc:
            if await self._node_knows(pending.tx_hash) is not False:
                return
            await self.resync_nonce()
            raise FailedPrecondition(
                f"{pending.context}: transaction {pending.tx_hash} was dropped by the node "
                f"and cannot be sent again: {exc}"
            ) from exc

    def _receipt_of(self, raw: Mapping[str, Any], pending: _Pending) -> Receipt:
        address = pending.address or raw.get("contractAddress")
        decoder = pending.codec.events
        events: list[Event] = []
        if decoder is not None and address:
            for entry in raw.get("logs", ()):
                if to_checksum_address(entry["address"]) == to_checksum_address(address):
                    event = decoder(entry)
                    if event is not None:
                        events.append(event)
        return Receipt(
            tx_hash=pending.tx_hash,
            block_number=int(raw["blockNumber"]),
            gas_used=int(raw["gasUsed"]),
            status=int(raw.get("status", 1)),
            events=tuple(events),
        )

    async def _explain_failure(self, receipt: Receipt, pending: _Pending) -> ContractRevert:
        unknown = revert_class_for(None)
        if receipt.gas_used >= pending.gas:
            return unknown(
                "OutOfGas",
                {},
                f"{pending.context}: out of gas ({pending.gas})",
                tx_hash=receipt.tx_hash,
            )
        # Re-run the call at the receipt's block to obtain the revert data.
        try:
            await self._connection.request(
                lambda: self.w3.eth.call(
                    cast(Any, {**pending.call, "gas": pending.gas}),
                    block_identifier=receipt.block_number,
                ),
                "eth_call",
            )
        except ContractLogicError as exc:
            return pending.codec.revert(exc, self.status_for, pending.context, receipt.tx_hash)
        except (MecfedError, Web3Exception) as exc:
            log.debug("cannot re-run %s: %s", pending.tx_hash, exc)
        return unknown(
            "Unknown",
            {},
            f"{pending.context}: transaction {receipt.tx_hash} reverted (reason not reproducible)",
            tx_hash=receipt.tx_hash,
        )
