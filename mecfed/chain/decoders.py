"""The decoders of a contract ABI (its custom errors and its events), built
once per ABI object and shared by the reads, the transactions and the log
streams of a :class:`~mecfed.chain.client.ChainClient`."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from mecfed.chain.events import Abi, EventDecoder
from mecfed.chain.revert import ContractRevert, ErrorDecoder, StatusFor, revert_data_of

CACHED_ABIS = 32


@dataclass(frozen=True)
class Codec:
    """The error decoder and (None for a plain transfer) event decoder of an ABI."""

    errors: ErrorDecoder
    events: EventDecoder | None

    def revert(
        self,
        exc: ContractLogicError,
        status_for: StatusFor | None,
        context: str,
        tx_hash: str | None = None,
    ) -> ContractRevert:
        """web3's revert ``exc`` as the decoded :class:`ContractRevert`."""
        return self.errors.to_exception(
            revert_data_of(exc) or b"",
            status_for,
            context=context,
            tx_hash=tx_hash,
            fallback_message=str(exc.message or exc),
        )


class Codecs:
    """A :class:`Codec` per ABI object, the most recently used ones kept."""

    def __init__(self, w3: AsyncWeb3[Any]) -> None:
        self._w3 = w3
        self._entries: OrderedDict[int, tuple[Abi, Codec]] = OrderedDict()

    def of(self, abi: Abi) -> Codec:
        """Error and event decoders of ``abi`` (cached per ABI object)."""
        key = id(abi)
        entry = self._entries.get(key)
        if entry is None or entry[0] is not abi:
            entry = (abi, Codec(ErrorDecoder(abi), EventDecoder(self._w3, abi)))
            self._entries[key] = entry
            if len(self._entries) > CACHED_ABIS:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry[1]
