"""Receipts of a :class:`~mecfed.chain.client.ChainClient`'s transactions:
decoded events, and mined failures explained."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from eth_utils import to_checksum_address
from web3.exceptions import ContractLogicError, Web3Exception

from mecfed.chain.decoders import Codec
from mecfed.chain.events import Event
from mecfed.chain.revert import ContractRevert, StatusFor, revert_class_for
from mecfed.errors import DeadlineExceeded, FailedPrecondition, MecfedError

log = logging.getLogger(__name__)


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


class NotMined(DeadlineExceeded):
    """No receipt within the timeout: the transaction may still be mined (it
    stays journalled as pending and is reconciled: sent again if the node
    lost it, replaced by a no-op once past its ``valid_until``). Wait again
    with :meth:`Transactions.wait_receipt`."""

    def __init__(self, message: str, tx_hash: str, nonce: int, purpose: str) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.nonce = nonce
        self.purpose = purpose


@dataclass(frozen=True)
class Pending:
    """A sent transaction: what is needed to resend or explain it."""

    tx_hash: str
    nonce: int
    raw: bytes  # the signed transaction, resent as is if the node drops it
    call: dict[str, Any]  # from/to/data/value, to re-run it at its block
    gas: int
    codec: Codec
    address: str | None  # whose logs to decode (None: the contract it creates)
    context: str


def receipt_of(raw: Mapping[str, Any], pending: Pending) -> Receipt:
    """The :class:`Receipt` of mined ``pending`` (its events decoded)."""
    address = pending.address or raw.get("contractAddress") or raw.get("to")
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


async def explain_failure(
    receipt: Receipt, pending: Pending, request: Any, w3: Any, status_for: StatusFor | None
) -> ContractRevert:
    """Why mined ``pending`` failed: out of gas, or its revert re-run at its block."""
    unknown = revert_class_for(None)
    if receipt.gas_used >= pending.gas:
        return unknown(
            "OutOfGas",
            {},
            f"{pending.context}: out of gas ({pending.gas})",
            tx_hash=receipt.tx_hash,
        )
    if not pending.call:  # not known here (waited for by hash): nothing to re-run
        return unknown(
            "Unknown",
            {},
            f"{pending.context}: transaction {receipt.tx_hash} reverted",
            tx_hash=receipt.tx_hash,
        )
    # Re-run the call at the receipt's block to obtain the revert data.
    try:
        await request(
            lambda: w3.eth.call(
                cast(Any, {**pending.call, "gas": pending.gas}),
                block_identifier=receipt.block_number,
            ),
            "eth_call",
        )
    except ContractLogicError as exc:
        return pending.codec.revert(exc, status_for, pending.context, receipt.tx_hash)
    except (MecfedError, Web3Exception) as exc:
        log.debug("cannot re-run %s: %s", pending.tx_hash, exc)
    return unknown(
        "Unknown",
        {},
        f"{pending.context}: transaction {receipt.tx_hash} reverted (reason not reproducible)",
        tx_hash=receipt.tx_hash,
    )


__all__ = ["NotMined", "Pending", "Receipt", "explain_failure", "receipt_of"]
