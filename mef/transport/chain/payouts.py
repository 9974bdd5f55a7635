"""Pull payments of this MEF's credits in the Federation contract."""

from __future__ import annotations

import asyncio

from mecfed.chain.federation import FederationContract


class Payouts:
    """Withdraws this account's credits, one withdrawal at a time: withdraw()
    pays out every credit, so a second one sent before the first is mined
    would revert and waste its gas."""

    def __init__(self, contract: FederationContract, address: str) -> None:
        self._contract = contract
        self._address = address
        self._lock = asyncio.Lock()

    async def withdraw(self) -> None:
        async with self._lock:
            if await self._contract.credits(self._address):
                await self._contract.withdraw()


__all__ = ["Payouts"]
