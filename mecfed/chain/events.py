"""Decoded contract logs and block heads, and log filters.

Logs are decoded by web3 (``ContractEvent.process_log``) with the events of
a contract ABI, chosen by topic0, and handed out as plain :class:`Event`
values: argument names as in the ABI, ``bytes32`` as ``bytes``, addresses as
checksummed ``str``, integers as ``int``, ``bytes``/``string`` as such.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from eth_utils import to_checksum_address
from hexbytes import HexBytes

if TYPE_CHECKING:
    from web3 import AsyncWeb3

log = logging.getLogger(__name__)

Abi = Sequence[Mapping[str, Any]]
# One entry per topic position: a value, any of several values, or None (any).
TopicFilter = Sequence[str | bytes | Sequence[str | bytes] | None]


@dataclass(frozen=True)
class Event:
    """A decoded contract log. ``removed``: the log was delivered before and
    its block is no longer part of the chain (a reorg): undo what it caused.
    ``(block_hash, log_index)`` identifies a log."""

    name: str
    args: Mapping[str, Any]
    address: str
    block_number: int
    log_index: int
    tx_hash: str
    block_hash: str = ""
    removed: bool = False


@dataclass(frozen=True)
class Head:
    """A block header: its number, timestamp (seconds), hash and its
    parent's hash (0x-hex)."""

    number: int
    timestamp: int
    hash: str
    parent_hash: str = ""

    @classmethod
    def of(cls, block: Mapping[str, Any]) -> Head:
        parent = block.get("parentHash")
        return cls(
            int(block["number"]),
            int(block["timestamp"]),
            _hex(block["hash"]),
            _hex(parent) if parent is not None else "",
        )


class EventDecoder:
    """The events of one ABI, by topic0, decoded through web3."""

    def __init__(self, w3: AsyncWeb3[Any], abi: Abi) -> None:
        contract = w3.eth.contract(abi=list(abi))
        self._by_topic = {
            bytes(HexBytes(event.topic)): event
            for event in contract.all_events()
            if not event.abi.get("anonymous")
        }
        self._by_name = {event.abi["name"]: event for event in self._by_topic.values()}

    def topic(self, name: str) -> str:
        """topic0 of the event ``name`` (0x-hex)."""
        try:
            return HexBytes(self._by_name[name].topic).to_0x_hex()
        except KeyError:
            raise ValueError(f"the ABI has no event {name}") from None

    def __call__(self, raw: Mapping[str, Any]) -> Event | None:
        """``raw`` (a log as web3 formats it) decoded; None if it is not one of
        this ABI's events or doesn't decode (logged)."""
        topics = raw.get("topics") or ()
        event = self._by_topic.get(bytes(HexBytes(topics[0]))) if topics else None
        if event is None:
            return None
        try:
            data = event.process_log(cast(Any, raw))
        except Exception as exc:  # MismatchedABI, LogTopicError, InsufficientDataBytes...
            log.warning(
                "undecodable %s log in block %s: %s", event.abi["name"], raw.get("blockNumber"), exc
            )
            return None
        return Event(
            name=data["event"],
            args=dict(data["args"]),
            address=to_checksum_address(data["address"]),
            block_number=int(data["blockNumber"]),
            log_index=int(data["logIndex"]),
            tx_hash=_hex(data["transactionHash"]),
            block_hash=_hex(data["blockHash"]),
            removed=bool(raw.get("removed")),
        )


def address_topic(address: str) -> str:
    """An address as a 32-byte topic (indexed ``address`` arguments)."""
    return "0x" + "0" * 24 + to_checksum_address(address)[2:].lower()


def log_filter(address: str | Sequence[str] | None, topics: TopicFilter | None) -> dict[str, Any]:
    """A JSON-RPC log filter (``address``, ``topics``) with normalised values."""
    query: dict[str, Any] = {}
    if address is not None:
        query["address"] = (
            to_checksum_address(address)
            if isinstance(address, str)
            else [to_checksum_address(a) for a in address]
        )
    if topics:
        normal = [_topic(t) for t in topics]
        while normal and normal[-1] is None:
            normal.pop()  # trailing wildcards say nothing
        if normal:
            query["topics"] = normal
    return query


def _topic(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_topic(v) for v in value]
    return HexBytes(value).to_0x_hex()


def _hex(value: Any) -> str:
    return HexBytes(value).to_0x_hex()
