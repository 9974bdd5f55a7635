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
* :mod:`mecfed.chain.decoders`: an ABI's error and event decoders;
* :mod:`mecfed.chain.identity`: the chain's identity (chain id, genesis,
  contract code) checked on every (re)connect; a reset chain is refused;
* :mod:`mecfed.chain.journal` and :mod:`mecfed.chain.nonces`: every
  transaction journalled (durably, given the process's database) and
  reconciled on start, after a reconnect and periodically: nonce gaps
  filled, stale transactions replaced by no-ops, wedges reported;
* :mod:`mecfed.chain.reorgs`: removals of reorged logs, confirmation depth.

:meth:`ChainClient.health` says why the client is not ready (None: it is).
Only standard JSON-RPC methods (those Besu documents) are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, TimeExhausted, Web3RPCError

from mecfed.chain.connection import Connection, open_web3
from mecfed.chain.decoders import Codecs
from mecfed.chain.events import Abi, Event, Head, TopicFilter, address_topic, log_filter
from mecfed.chain.identity import Identity
from mecfed.chain.journal import Entry, Journal
from mecfed.chain.nonces import Reconciler
from mecfed.chain.provider import TRANSIENT_ERRORS, TRANSPORT_ERRORS, MultiplexProvider
from mecfed.chain.receipts import NotMined
from mecfed.chain.revert import StatusFor
from mecfed.chain.subscriptions import GETLOGS_CHUNK, HeadStream, LogStream
from mecfed.chain.transactions import Receipt, Transactions
from mecfed.errors import FailedPrecondition, MecfedError, Unavailable
from mecfed.storage import Database

__all__ = ["ChainClient", "Event", "Head", "NotMined", "Receipt", "address_topic"]

log = logging.getLogger(__name__)

_RECONCILE_ERRORS: tuple[type[BaseException], ...] = (MecfedError, *TRANSIENT_ERRORS)


class ChainClient:
    """One account on one node. Create with :meth:`connect`, end with :meth:`close`.

    ``status_for`` maps custom error names to domain error classes; a revert
    raised here is then both that class and :class:`ContractRevert`.

    ``db``: the process's database, for the durable journal (transactions,
    chain identity, stream cursors); None keeps it in memory. ``expect_code``:
    contract address -> keccak of its runtime code, or None for "as first
    seen" (recorded in the journal). ``confirmations``: the default depth of
    log streams (0: instant finality such as QBFT; >= 1 for Clique).
    ``wedged_after``: seconds a transaction may stay pending while none is
    mined before :meth:`health` reports the client wedged. ``removals``: the
    default of log streams for reorged logs: delivered as ``Event.removed``
    (consumers must undo them), or (False, the default, for consumers that
    do not look at ``removed``) forgotten and logged. ``valid_for``:
    contract function name -> seconds after sending that a call of it stays
    wanted, the default ``valid_until`` of ``transact`` (e.g. ``{"announce":
    120}``: an announcement not mined within 2 minutes is replaced by a no-op).
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
        db: Database | None = None,
        expect_code: Mapping[str, str | None] | None = None,
        confirmations: int = 0,
        wedged_after: float = 60.0,
        removals: bool = False,
        valid_for: Mapping[str, float] | None = None,
    ) -> None:
        self.w3 = w3
        self.journal = Journal(db)
        self.identity = Identity(self.journal, expect_code, chain_id)
        self._connection = Connection(w3, request_timeout=request_timeout, identity=self.identity)
        self.url = self._connection.url
        self.account = account
        self.address: ChecksumAddress = account.address
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.removals = removals
        self._codecs = Codecs(w3)
        self._transactions = Transactions(
            self._connection,
            self._codecs,
            account,
            chain_id,
            status_for=status_for,
            receipt_timeout=receipt_timeout,
            gas_margin=self.gas_margin,
            journal=self.journal,
            valid_for=valid_for,
        )
        self.reconciler = Reconciler(self._transactions, wedged_after=wedged_after)
        self._connection.on_connect(self.reconciler.wake)
        self._reconciling: asyncio.Task[None] | None = None

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
        db: Database | None = None,
        expect_code: Mapping[str, str | None] | None = None,
        confirmations: int = 0,
        wedged_after: float = 60.0,
        removals: bool = False,
        valid_for: Mapping[str, float] | None = None,
    ) -> ChainClient:
        """Connects, checks the chain's identity and reconciles the journal
        (a previous run's pending transactions) before returning. A chain
        that does not match is not an error here: the client refuses to act
        and :meth:`health` says why."""
        w3 = await open_web3(url, request_timeout=request_timeout, attempts=connect_attempts)
        client: ChainClient | None = None
        try:
            chain_id = await w3.eth.chain_id
            journalled = Journal(db).identity()
            client = cls(
                w3,
                account,
                journalled[0] if journalled else chain_id,
                status_for=status_for,
                request_timeout=request_timeout,
                receipt_timeout=receipt_timeout,
                db=db,
                expect_code=expect_code,
                confirmations=confirmations,
                wedged_after=wedged_after,
                removals=removals,
                valid_for=valid_for,
            )
            await client._connection.start()
            await client._start_reconciling()
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

    async def _start_reconciling(self) -> None:
        if self._connection.refused is None:
            try:
                self.journal.prune()
                await self.reconciler.reconcile()
            except _RECONCILE_ERRORS as exc:
                log.warning("reconciling the transaction journal: %r (retried)", exc)
        self._reconciling = asyncio.create_task(
            self.reconciler.run(), name=f"chain journal {self.address}"
        )

    async def close(self) -> None:
        """Ends every stream and the connection (bounded)."""
        if self._reconciling is not None:
            self._reconciling.cancel()
            await asyncio.wait({self._reconciling}, timeout=5)
        await self._connection.close()

    def health(self) -> str | None:
        """Why the client is not ready to act on the chain, None when it is:
        the node's chain is not the expected one (reset, replaced, no
        contract code), the node is unreachable, or the account is wedged."""
        refused = self._connection.refused
        if refused is not None:
            return f"refusing to act on the chain: {refused}"
        if not self._connection.connected:
            return f"not connected to the chain node at {self.url}"
        return self.reconciler.health()

    async def expect_code(self, address: str, code_hash: str | None = None) -> str | None:
        """Adds a contract the chain must hold (``code_hash``: keccak of its
        runtime code; None: as first seen) and checks now; the mismatch, if
        any (also in :meth:`health`)."""
        self.identity.expect(address, code_hash)
        return await self.check_identity()

    async def check_identity(self) -> str | None:
        """Checks the chain's identity now (it is checked on every connect
        anyway); the mismatch, None if it is the expected chain."""
        await self._connection.wait_connected(self.request_timeout)
        return await asyncio.wait_for(self.identity.check(self.w3), self.request_timeout)

    def pending_transactions(self) -> list[Entry]:
        """The journalled transactions not known to be mined, by nonce."""
        return self.journal.pending(self.address)

    async def wait_receipt(
        self, tx_hash: str, timeout: float | None = None, abi: Abi | None = None
    ) -> Receipt:
        """The receipt of a journalled transaction (e.g. after NotMined)."""
        return await self._transactions.wait_receipt(tx_hash, timeout, abi)

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
        *,
        confirmations: int | None = None,
        name: str | None = None,
        removals: bool | None = None,
    ) -> LogStream:
        """Logs of ``address`` matching ``topics`` (filtered on the node;
        ``None`` entries are wildcards) from ``from_block`` (``None``: from
        the next block), decoded with ``abi``. Subscribes at once; survives
        reconnects without loss or duplicates, delivers reorged logs as
        removals. ``confirmations``: blocks on top before a log is delivered
        (None: the client's default). ``name``: a durable cursor in the
        journal; a stream of that name resumes after the last event its
        consumer took, whatever ``from_block`` says. ``removals``: deliver
        reorged logs as ``Event.removed`` (None: the client's default)."""
        decoder = self._codecs.of(abi).events
        assert decoder is not None
        return self._connection.log_stream(
            log_filter(address, topics),
            from_block,
            decoder,
            confirmations=self.confirmations if confirmations is None else confirmations,
            name=name,
            journal=self.journal,
            removals=self.removals if removals is None else removals,
        )

    # -- transactions ---------------------------------------------------------

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
        ``purpose`` is journalled with it (default: the function's name);
        ``valid_until`` (wall-clock seconds): not mined by then, it is
        replaced by a no-op so that it never executes. No receipt within
        ``timeout`` raises :class:`NotMined` (a DeadlineExceeded): maybe
        sent, still reconciled.
        """
        return await self._transactions.transact(
            fn, value, gas=gas, timeout=timeout, purpose=purpose, valid_until=valid_until
        )

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
