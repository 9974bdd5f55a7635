"""The chain Mff transport (the Federation contract as the market):
:mod:`.codec`, :mod:`.auction` (consumer), :mod:`.bidder` (provider),
:mod:`.gate`, composed by :mod:`.transport`. The names below load on first
use, so importing the codec does not load the chain client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mef.transport.chain.transport import ChainTransport, connect_chain_transport


def __getattr__(name: str) -> Any:
    if name in ("ChainTransport", "connect_chain_transport"):
        return getattr(importlib.import_module("mef.transport.chain.transport"), name)
    raise AttributeError(f"module 'mef.transport.chain' has no attribute {name!r}")


__all__ = ["ChainTransport", "connect_chain_transport"]
