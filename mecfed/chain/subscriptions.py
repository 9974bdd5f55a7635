"""Reconnecting ``eth_subscribe`` streams: contract logs and new heads.

Each stream owns its own WebSocket connection, so a dropped socket only
affects that stream and reconnecting never races with the client's requests.

Log streams never miss or repeat an event across reconnects:

1. subscribe first (the node starts buffering live logs for us), then
2. back-fill with ``eth_getLogs(fromBlock=cursor, toBlock=head)``, then
3. drain live logs.

Every delivered log advances ``last = (blockNumber, logIndex)``; anything at
or before ``last`` is dropped, which removes the overlap between back-fill
and the live buffer. After a drop the stream reconnects with backoff and
replays from ``last.blockNumber`` (inclusive, deduplicated by log index), so
logs emitted while disconnected are delivered exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes

from mecfed.chain.abi import AttrDict
from mecfed.chain.rpc import TRANSPORT_ERRORS, Backoff, RpcConnection, RpcError, to_hex, to_int
from mecfed.errors import Unavailable

log = logging.getLogger(__name__)

TopicFilter = Sequence[str | bytes | Sequence[str | bytes] | None]


def normalize_log(raw: Any) -> dict[str, Any]:
    """One canonical shape for logs from ``eth_getLogs`` and subscriptions."""
    return {
        "address": to_checksum_address(to_hex(raw["address"])),
        "topics": [HexBytes(t) for t in raw["topics"]],
        "data": HexBytes(raw["data"]),
        "blockNumber": to_int(raw["blockNumber"]),
        "blockHash": HexBytes(raw["blockHash"]),
        "logIndex": to_int(raw["logIndex"]),
        "transactionIndex": to_int(raw["transactionIndex"]),
        "transactionHash": HexBytes(raw["transactionHash"]),
        "removed": bool(raw.get("removed", False)),
    }


def _topic_param(topic: Any) -> Any:
    if topic is None:
        return None
    if isinstance(topic, list | tuple):
        return [_topic_param(t) for t in topic]
    return to_hex(topic) if isinstance(topic, bytes | bytearray) else topic


class _Stream:
    """Reconnect loop shared by log and head streams."""

    kind = "stream"

    def __init__(self, ws_url: str, *, request_timeout: float = 30.0) -> None:
        self.ws_url = ws_url
        self.request_timeout = request_timeout
        self.connects = 0  # successful (re)subscriptions, for tests and metrics
        self._conn: RpcConnection | None = None
        self._closed = False
        self._stop = asyncio.Event()  # wakes the reconnect backoff on close()
        self._live = asyncio.Event()  # set while subscribed and past back-fill

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._run()

    async def close(self) -> None:
        """Ends iteration (from any task) and releases the connection."""
        self._closed = True
        self._stop.set()
        if self._conn is not None:
            await self._conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_live(self, timeout: float = 10.0) -> None:
        """Waits until the stream is subscribed and has caught up (it connects
        when first iterated); events after this are delivered live."""
        await asyncio.wait_for(self._live.wait(), timeout)

    async def drop_connection(self) -> None:
        """Closes the socket but keeps the stream (it reconnects and replays).
        For tests and for forcing a fresh connection after suspected staleness."""
        if self._conn is not None:
            await self._conn.disconnect()

    async def _session(self, conn: RpcConnection) -> AsyncIterator[Any]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def _run(self) -> AsyncIterator[Any]:
        backoff = Backoff()
        failures = 0  # consecutive failed attempts; only the first is a warning
        while not self._closed:
            conn = RpcConnection(self.ws_url, request_timeout=self.request_timeout)
            self._conn = conn
            connects = self.connects
            try:
                await conn.connect()
                async for item in self._session(conn):
                    yield item
                reason: object = "stream ended"
            except (*TRANSPORT_ERRORS, Unavailable) as exc:
                reason = repr(exc)
            finally:
                self._live.clear()
                await conn.close()
            if self.connects > connects:  # it was subscribed: a fresh outage
                backoff.reset()
                failures = 0
            if not self._closed:
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "%s on %s lost (%s); reconnecting", self.kind, self.ws_url, reason)
                failures += 1
                await backoff.wait(self._stop)


class LogStream(_Stream):
    """Decoded logs of ``address`` matching ``topics``, from ``from_block``
    (``None``: from the next block), surviving reconnects."""

    kind = "log subscription"

    def __init__(
        self,
        ws_url: str,
        address: str | Sequence[str] | None,
        topics: TopicFilter | None = None,
        from_block: int | None = None,
        decoder: Callable[[dict[str, Any]], Any] | None = None,
        *,
        request_timeout: float = 30.0,
        getlogs_chunk: int = 5000,
    ) -> None:
        super().__init__(ws_url, request_timeout=request_timeout)
        self.filter: dict[str, Any] = {}
        if address is not None:
            self.filter["address"] = (
                to_checksum_address(address)
                if isinstance(address, str)
                else [to_checksum_address(a) for a in address]
            )
        if topics:
            self.filter["topics"] = [_topic_param(t) for t in topics]
        self.decoder = decoder
        self.getlogs_chunk = getlogs_chunk
        self.cursor = from_block  # first block not yet fully delivered
        self.last: tuple[int, int] | None = None  # last delivered (block, logIndex)

    def _accept(self, raw: Any) -> Any | None:
        entry = normalize_log(raw)
        if entry["removed"]:
            return None  # reorged out; the canonical version arrives separately
        key = (entry["blockNumber"], entry["logIndex"])
        if self.last is not None and key <= self.last:
            return None  # already delivered (back-fill / live overlap, replay)
        self.last = key
        self.cursor = key[0]
        return self.decoder(entry) if self.decoder else AttrDict(entry)

    async def _session(self, conn: RpcConnection) -> AsyncIterator[Any]:
        # Subscribe before reading the head so no block falls between the two.
        await conn.subscribe("logs", dict(self.filter))
        head = to_int(await conn.request("eth_blockNumber", []))
        if self.cursor is None:
            self.cursor = head + 1
        self.connects += 1
        start = self.cursor
        while start <= head:
            end = min(head, start + self.getlogs_chunk - 1)
            query = {**self.filter, "fromBlock": hex(start), "toBlock": hex(end)}
            try:
                logs = await conn.request("eth_getLogs", [query], retry=False)
            except RpcError as exc:
                raise Unavailable(f"eth_getLogs back-fill failed: {exc}") from exc
            for raw in sorted(
                logs, key=lambda r: (to_int(r["blockNumber"]), to_int(r["logIndex"]))
            ):
                item = self._accept(raw)
                if item is not None:
                    yield item
            start = end + 1
        self._live.set()
        async for message in conn.notifications():
            item = self._accept(message["result"])
            if item is not None:
                yield item


class HeadStream(_Stream):
    """New block headers (``number``, ``hash``, ``timestamp``, ...) as dicts
    with int quantities. Reconnects; heads missed while disconnected are not
    replayed (callers use heads as wake-ups, not as a ledger)."""

    kind = "newHeads subscription"

    async def _session(self, conn: RpcConnection) -> AsyncIterator[Any]:
        await conn.subscribe("newHeads")
        self.connects += 1
        self._live.set()
        async for message in conn.notifications():
            head = dict(message["result"])
            for key in ("number", "timestamp", "gasUsed", "gasLimit", "baseFeePerGas"):
                if head.get(key) is not None:
                    head[key] = to_int(head[key])
            yield head
