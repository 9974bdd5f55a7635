"""Is the node still serving the chain this client acts on?

Checked on every (re)connect, before the connection counts as up: the chain
id, the hashes of the genesis block and of block 1, and the code hash of
every contract the caller expects. What was seen first is recorded in the
journal, so a restarted process notices too. A node restarted without its
state (a reset chain) has no code at the contract's address, and a new
genesis and block 1 (anvil stamps blocks with the wall clock, in seconds:
a genesis made in the same second can match, block 1 of a chain that was
used cannot), even if the contract was deployed again at the same address.
A mismatch makes the client refuse every request until a later connection
matches again (:attr:`Identity.error`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from mecfed.chain.journal import Journal

log = logging.getLogger(__name__)


class Identity:
    """The identity ``journal`` recorded (or records at the first check),
    and ``expect_code``: contract address -> keccak of its runtime code
    (0x-hex), or None for "whatever code is there at the first check"."""

    def __init__(
        self,
        journal: Journal,
        expect_code: Mapping[str, str | None] | None = None,
        chain_id: int | None = None,
    ) -> None:
        self._journal = journal
        self._chain_id = chain_id
        self._codes: dict[str, str | None] = {}
        for address, code_hash in (expect_code or {}).items():
            self.expect(address, code_hash)
        self.error: str | None = None  # why the last check failed; None: it passed

    def expect(self, address: str, code_hash: str | None = None) -> None:
        self._codes[to_checksum_address(address)] = (
            HexBytes(code_hash).to_0x_hex() if code_hash else None
        )

    async def check(self, w3: Any) -> str | None:
        """Compares the node's chain with the expected one; the reason of a
        mismatch (also kept in :attr:`error`), None when it is the chain.
        Transport errors pass through (the connection is not usable)."""
        reason = await self._mismatch(w3)
        if reason is not None and reason != self.error:
            log.error("refusing to act on the chain at %s: %s", w3.provider.endpoint_uri, reason)
        elif reason is None and self.error is not None:
            log.warning("chain identity matches again; acting on the chain again")
        self.error = reason
        return reason

    async def _mismatch(self, w3: Any) -> str | None:
        chain_id = int(await w3.eth.chain_id)
        genesis = HexBytes((await w3.eth.get_block(0))["hash"]).to_0x_hex()
        if self._chain_id is not None and chain_id != self._chain_id:
            return f"chain id is {chain_id}, expected {self._chain_id}"
        recorded = self._journal.identity()
        if recorded is None:
            self._journal.record_identity(chain_id, genesis)
        elif recorded != (chain_id, genesis):
            return (
                f"the chain was reset or replaced: chain id {chain_id}, genesis {genesis}; "
                f"expected chain id {recorded[0]}, genesis {recorded[1]}"
            )
        anchor = self._journal.anchor()
        if int(await w3.eth.block_number) >= 1:
            first = HexBytes((await w3.eth.get_block(1))["hash"]).to_0x_hex()
            if anchor is None:
                self._journal.record_anchor(first)
            elif first != anchor:
                return f"the chain was reset or replaced: block 1 is {first}, expected {anchor}"
        elif anchor is not None:
            return "the chain was reset: it has no block 1 any more"
        for address, expected in self._codes.items():
            code = bytes(await w3.eth.get_code(address))
            if not code:
                return f"no contract code at {address} (chain reset, or a wrong address)"
            code_hash = HexBytes(keccak(code)).to_0x_hex()
            wanted = expected or self._journal.code_hash(address)
            if wanted is None:
                self._journal.record_code(address, code_hash)
            elif code_hash != wanted:
                return f"the code at {address} has hash {code_hash}, expected {wanted}"
        return None


__all__ = ["Identity"]
