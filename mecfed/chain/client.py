"""The MEF's Ethereum client, on web3.py.

One :class:`ChainClient` is one account on one node over ONE persistent
WebSocket (web3's ``AsyncWeb3`` + a :class:`~mecfed.chain.provider.MultiplexProvider`)
that carries every request and every subscription. Contract calls, gas
estimates, transaction building, log and receipt decoding are web3's; on top
of it sit the parts stock web3 lacks, each in its module, which the client
composes:

* :mod:`mecfed.chain.connection`: the connection, supervised: reconnects
  with backoff, dispatches subscription notifications, retries idempotent
  requests across a reconnect;
* :mod:`mecfed.chain.subscriptions`: log streams that replay what they
  missed after a reconnect, exactly once, and head streams;
* :mod:`mecfed.chain.transactions`: local signing and
  ``eth_sendRawTransaction`` (Besu nodes hold no keys), a nonce manager for
  many concurrent senders on one account, reverts raised decoded at gas
  estimation, receipts awaited on new heads, dropped transactions sent
  again, mined failures explained;
* :mod:`mecfed.chain.decoders`: an ABI's error and event decoders.

Only standard JSON-RPC methods (those Besu documents) are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
from collections.abc import Sequence
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, TimeExhausted, Web3RPCError

from mecfed.chain.connection import Connection, open_web3
from mecfed.chain.decoders import Codecs
from mecfed.chain.events import Abi, Event, Head, TopicFilter, address_topic, log_filter
from mecfed.chain.provider import TRANSPORT_ERRORS, MultiplexProvider
from mecfed.chain.revert import StatusFor
from mecfed.chain.subscriptions import GETLOGS_CHUNK, HeadStream, LogStream
from mecfed.chain.transactions import Receipt, Transactions
from mecfed.errors import FailedPrecondition, Unavailable

__all__ = ["ChainClient", "Event", "Head", "Receipt", "address_topic"]


class ChainClient:
    """One account on one node. Create with :meth:`connect`, end with :meth:`close`.

    ``status_for`` maps custom error names to domain error classes; a revert
    raised here is then both that class and :class:`ContractRevert`.
    """

    # Estimated gas x margin (+ 10k) is a transaction's gas limit (read when
    # the client is made).
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
        self._codecs = Codecs(w3)
        self._transactions = Transactions(
            self._connection,
            self._codecs,
            account,
            chain_id,
            status_for=status_for,
            receipt_timeout=receipt_timeout,
            gas_margin=self.gas_margin,
        )

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

    # -- state ----------------------------------------------------------------

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

    @property
    def receipt_timeout(self) -> float:
        """How long a transaction may take to be mined (default of ``transact``)."""
        return self._transactions.receipt_timeout

    @receipt_timeout.setter
    def receipt_timeout(self, seconds: float) -> None:
        self._transactions.receipt_timeout = seconds

    @property
    def status_for(self) -> StatusFor | None:
        """Domain error class by custom error name (None: all unmapped)."""
        return self._transactions.status_for

    @status_for.setter
    def status_for(self, status_for: StatusFor | None) -> None:
        self._transactions.status_for = status_for

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
        return await self._transactions.transact(fn, value, gas=gas, timeout=timeout)

    async def deploy(self, abi: Abi, bytecode: str, *args: Any) -> tuple[str, Receipt]:
        """Deploys a contract; returns its address and the receipt."""
        return await self._transactions.deploy(abi, bytecode, *args)

    async def transfer(self, to: str, wei: int) -> Receipt:
        """A plain value transfer (funding accounts)."""
        return await self._transactions.transfer(to, wei)

    async def resync_nonce(self) -> None:
        """Forgets the next nonce: the next send reads the account's pending
        transaction count from the node (after a reorg rewound it, or when
        another wallet sent from this account)."""
        await self._transactions.resync_nonce()
