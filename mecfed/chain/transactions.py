"""The transaction side of a :class:`~mecfed.chain.client.ChainClient`:
sending from one account and waiting for the outcome.

* fees: EIP-1559 from the latest head's base fee (and the node's suggested
  tip, where it has one), legacy gas price on a pre-London chain;
* fast reverts: a transaction that would revert raises its decoded custom
  error at gas estimation, before anything is sent;
* local signing (``eth_account``) and ``eth_sendRawTransaction`` (Besu nodes
  hold no keys), with a nonce manager for many concurrent senders on one
  account (:meth:`Transactions._submit`);
* receipts awaited on new heads (with a bounded re-check); a transaction the
  node dropped is sent again, the same signed bytes;
* a mined failure is explained by re-running the call at its block;
* every transaction is journalled (:mod:`mecfed.chain.journal`) before it
  is sent, with its nonce, purpose and ``valid_until``; a receipt timeout
  raises :class:`NotMined` ("maybe sent": it stays journalled as pending and
  is reconciled in the background, :mod:`mecfed.chain.nonces`), never
  assumed lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import (
    ContractLogicError,
    TransactionIndexingInProgress,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.types import RPCEndpoint

from mecfed.chain.connection import Connection
from mecfed.chain.decoders import Codec, Codecs
from mecfed.chain.events import Abi
from mecfed.chain.journal import DROPPED, MINED, PENDING, REPLACED, Entry, Journal
from mecfed.chain.receipts import NotMined, Pending, Receipt, explain_failure, receipt_of
from mecfed.chain.revert import ErrorDecoder, StatusFor
from mecfed.errors import FailedPrecondition, MecfedError, Unavailable

log = logging.getLogger(__name__)

# Receipts are re-checked on every new head; this bounds the wait when no
# head comes (a lost notification, a reconnect, a node that mines on demand).
RECEIPT_RECHECK_S = 1.0


class Transactions:
    """Transactions of ``account`` over ``connection``: :meth:`transact`,
    :meth:`deploy`, :meth:`transfer`. ``codecs`` decode reverts and events;
    ``status_for`` maps custom error names to domain error classes."""

    def __init__(
        self,
        connection: Connection,
        codecs: Codecs,
        account: LocalAccount,
        chain_id: int,
        *,
        status_for: StatusFor | None = None,
        receipt_timeout: float = 60.0,
        gas_margin: float = 1.25,
        journal: Journal | None = None,
        valid_for: Mapping[str, float] | None = None,
    ) -> None:
        self.w3 = connection.w3
        self.journal = journal if journal is not None else Journal()
        # Function name -> seconds after sending that a call of it stays
        # wanted (its valid_until when the caller gives none).
        self.valid_for = dict(valid_for or {})
        self.account = account
        self.address: ChecksumAddress = account.address
        self.chain_id = chain_id
        self.status_for = status_for
        self.receipt_timeout = receipt_timeout
        self.gas_margin = gas_margin  # estimate x margin (+ 10k) is the gas limit
        self._connection = connection
        self._request = connection.request
        self._codecs = codecs
        self._nonce: int | None = None  # the next one, None: ask the node
        self._nonce_lock = asyncio.Lock()
        self._tip_supported = True
        self.last_progress = time.time()  # when one of ours was last seen mined
        self.waiting: set[str] = set()  # hashes a receipt wait looks after

    async def resync_nonce(self) -> None:
        """Forgets the next nonce: the next send reads the account's pending
        transaction count from the node."""
        async with self._nonce_lock:
            self._nonce = None

    async def transact(
        self,
        fn: Any,
        value: int = 0,
        *,
        gas: int | None = None,
        timeout: float | None = None,
        purpose: str | None = None,
        valid_until: float | None = None,
    ) -> Receipt:
        """Sends web3 contract function call ``fn`` and waits for its receipt.

        A call that would revert raises its decoded :class:`ContractRevert`
        at gas estimation, before anything is sent; an explicit ``gas`` limit
        skips estimation (a mined revert is then explained after the fact).
        ``purpose`` (default: the function's name) is journalled with it;
        ``valid_until`` (wall-clock seconds) is when executing it would
        become harmful: not mined by then, it is replaced by a no-op.
        """
        codec = self._codecs.of(fn.contract_abi)
        context = purpose or f"{fn.fn_name}()"
        if valid_until is None and fn.fn_name in self.valid_for:
            valid_until = time.time() + self.valid_for[fn.fn_name]
        call: dict[str, Any] = {"from": self.address, "value": value}
        if gas is None:
            gas = await self._estimate(lambda: fn.estimate_gas(call), codec, context)
        fees = await self._fees()
        tx = await fn.build_transaction({**call, "gas": gas, "chainId": self.chain_id, **fees})
        pending = await self._send(dict(tx), codec, fn.address, context, valid_until)
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
        receipt, raw = await self._wait(await self._send(dict(tx), codec, None, "deploy()"))
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
        receipt, _ = await self._wait(await self._send(tx, codec, None, f"transfer to {to}"))
        return receipt

    # -- sending --------------------------------------------------------------

    async def _estimate(
        self, estimate: Callable[[], Awaitable[int]], codec: Codec, context: str
    ) -> int:
        try:
            gas = await self._request(estimate, f"eth_estimateGas {context}")
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
            return {"gasPrice": int(await self._request(lambda: self.w3.eth.gas_price, "gas"))}
        tip = 0
        if self._tip_supported:
            try:
                reply = await self._request(
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
        block = await self._request(lambda: self.w3.eth.get_block("latest"), "eth_getBlockByNumber")
        return cast(Mapping[str, Any], block)

    async def _send(
        self,
        tx: dict[str, Any],
        codec: Codec,
        address: str | None,
        context: str,
        valid_until: float | None = None,
    ) -> Pending:
        call: dict[str, Any] = {k: tx[k] for k in ("to", "data", "value") if k in tx}
        call["from"] = self.address
        tx.pop("from", None)
        signed, nonce = await self._submit(tx, context, valid_until)
        return Pending(
            tx_hash=HexBytes(signed.hash).to_0x_hex(),
            nonce=nonce,
            raw=bytes(signed.raw_transaction),
            call=call,
            gas=int(tx["gas"]),
            codec=codec,
            address=to_checksum_address(address) if address else None,
            context=context,
        )

    async def _submit(
        self, tx: dict[str, Any], purpose: str = "", valid_until: float | None = None
    ) -> tuple[Any, int]:
        """Assigns a nonce, signs, journals and sends ``tx``; the signed
        transaction and its nonce.

        Nonces are assigned under a lock, and one is consumed only when the
        node holds the transaction. A refused send resyncs from the node's
        pending count and is retried once. If the node knows the hash anyway
        ("already known", or the reply was lost), the send counts as done;
        if the reply was lost and the node can't be asked, it counts as done
        too (the receipt wait sends the same signed bytes again if the node
        turns out not to have it). So one call is never submitted twice
        under two nonces. The nonce is never below one a journalled pending
        transaction holds (the node may have lost those: they are sent
        again, not overwritten).
        """
        fees: dict[str, int] = {
            k: int(tx[k]) for k in ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice") if k in tx
        }
        async with self._nonce_lock:
            last_error: Exception | None = None
            for attempt in (0, 1):
                if self._nonce is None:
                    self._nonce = max(
                        await self._pending_nonce(), self.journal.next_nonce(self.address) or 0
                    )
                nonce = self._nonce
                signed = self.account.sign_transaction({**tx, "nonce": nonce})
                tx_hash = HexBytes(signed.hash).to_0x_hex()
                raw = bytes(signed.raw_transaction)
                self.journal.record(
                    Entry(
                        tx_hash,
                        self.address,
                        nonce,
                        raw,
                        fees,
                        purpose,
                        valid_until,
                        PENDING,
                        time.time(),
                    )
                )
                try:
                    await self._send_raw(raw)
                    self._nonce = nonce + 1
                    return signed, nonce
                except Web3RPCError as exc:  # the node answered: refused
                    last_error = exc
                    log.info("send with nonce %d refused (attempt %d): %s", nonce, attempt, exc)
                    self._nonce = None  # resync before any further send
                    if await self._node_knows(tx_hash):
                        self._nonce = nonce + 1
                        return signed, nonce
                    self.journal.mark(tx_hash, DROPPED, note=f"refused by the node: {exc}")
                except Unavailable as exc:  # no reply: the node may hold it
                    last_error = exc
                    log.info("send with nonce %d got no reply: %s", nonce, exc)
                    if await self._node_knows(tx_hash) is not False:
                        self._nonce = nonce + 1
                        return signed, nonce
                    self.journal.mark(tx_hash, DROPPED, note=f"not received by the node: {exc}")
                    self._nonce = None
            assert last_error is not None
            if isinstance(last_error, Unavailable):
                raise last_error
            raise FailedPrecondition(f"transaction rejected by node: {last_error}")

    async def _send_raw(self, raw: bytes) -> None:
        await self._request(
            lambda: self.w3.eth.send_raw_transaction(raw), "eth_sendRawTransaction", retry=False
        )

    async def _pending_nonce(self) -> int:
        return await self.nonce_count("pending")

    async def nonce_count(self, block: str) -> int:
        """The account's transaction count at ``block`` ("latest": mined,
        "pending": including the node's pool)."""
        return int(
            await self._request(
                lambda: self.w3.eth.get_transaction_count(self.address, cast(Any, block)),
                "eth_getTransactionCount",
            )
        )

    async def _node_knows(self, tx_hash: str) -> bool | None:
        """Whether the node has ``tx_hash`` (pending or mined); None if it
        can't be asked right now."""
        try:
            await self._request(
                lambda: self.w3.eth.get_transaction(HexStr(tx_hash)), "eth_getTransactionByHash"
            )
            return True
        except TransactionNotFound:
            return False
        except (MecfedError, Web3Exception):
            return None

    # -- receipts -------------------------------------------------------------

    async def _wait(
        self, pending: Pending, timeout: float | None = None
    ) -> tuple[Receipt, Mapping[str, Any]]:
        """The receipt of ``pending``; raises its decoded revert if it failed
        and NotMined if not mined within ``timeout``. While it waits, the
        reconciler leaves ``pending`` to it."""
        self.waiting.add(pending.tx_hash)
        try:
            return await self._wait_once(pending, timeout)
        finally:
            self.waiting.discard(pending.tx_hash)

    async def _wait_once(
        self, pending: Pending, timeout: float | None = None
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
            self._check_journal(pending)
            checks += 1
            if checks > 1:
                await self._keep_sent(pending)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NotMined(
                    f"{pending.context}: transaction {pending.tx_hash} (nonce {pending.nonce}) "
                    f"not mined within {timeout:.0f} s; it may still be: journalled as "
                    "pending and reconciled in the background",
                    pending.tx_hash,
                    pending.nonce,
                    pending.context,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(head.wait(), min(remaining, RECEIPT_RECHECK_S))
        self.journal.mark(pending.tx_hash, MINED, block_number=int(raw["blockNumber"]))
        self.last_progress = time.time()
        receipt = receipt_of(raw, pending)
        if receipt.status == 0:
            raise await explain_failure(receipt, pending, self._request, self.w3, self.status_for)
        return receipt, raw

    async def _receipt(self, tx_hash: str) -> Mapping[str, Any] | None:
        try:
            return cast(
                Mapping[str, Any],
                await self._request(
                    lambda: self.w3.eth.get_transaction_receipt(HexStr(tx_hash)),
                    "eth_getTransactionReceipt",
                ),
            )
        except (TransactionNotFound, TransactionIndexingInProgress):
            return None

    def _check_journal(self, pending: Pending) -> None:
        """Raises if the reconciler settled ``pending`` as never to be mined."""
        entry = self.journal.get(pending.tx_hash)
        if entry is not None and entry.state in (REPLACED, DROPPED):
            raise FailedPrecondition(
                f"{pending.context}: transaction {pending.tx_hash} (nonce {pending.nonce}) "
                f"{entry.state}: {entry.note or 'its nonce went to another transaction'}"
            )

    async def _keep_sent(self, pending: Pending) -> None:
        """Sends ``pending`` again if the node no longer has it (dropped from
        its pool): the same signed bytes, so it can only execute once; once
        past its ``valid_until``, replaced by a no-op instead."""
        entry = self.journal.get(pending.tx_hash)
        if entry is None or self.repair is None:
            return
        if not entry.stale() and await self._node_knows(pending.tx_hash) is not False:
            return
        if await self._receipt(pending.tx_hash) is not None:
            return  # mined meanwhile
        async with self._nonce_lock:
            await self.repair(entry)
        self._check_journal(pending)

    # Set by the reconciler (mecfed.chain.nonces): sends a journalled
    # transaction the node lost again, or replaces it; the caller holds the
    # nonce lock.
    repair: Callable[[Entry], Awaitable[None]] | None = None

    async def wait_receipt(
        self, tx_hash: str, timeout: float | None = None, abi: Abi | None = None
    ) -> Receipt:
        """The receipt of journalled transaction ``tx_hash`` (e.g. after a
        :class:`NotMined`); its events decoded with ``abi`` if given.
        FailedPrecondition if it was replaced, NotMined if still pending."""
        entry = self.journal.get(tx_hash)
        if entry is None:
            raise FailedPrecondition(f"transaction {tx_hash} is not in the journal")
        codec = self._codecs.of(abi) if abi is not None else Codec(ErrorDecoder(), None)
        pending = Pending(
            tx_hash=entry.tx_hash,
            nonce=entry.nonce,
            raw=entry.raw,
            call={},
            gas=2**63,  # unknown: never read as "out of gas"
            codec=codec,
            address=None,
            context=entry.purpose,
        )
        receipt, _ = await self._wait(pending, timeout)
        return receipt
