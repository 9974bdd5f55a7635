"""Ethereum client layer on web3.py: one multiplexed WebSocket per client,
local signing with a concurrent nonce manager, decoded reverts, log streams
that replay across reconnects, the typed Federation contract facade, key
files, ECIES sealing and an anvil launcher."""

from mecfed.chain.client import ChainClient, Event, Head, Receipt
from mecfed.chain.federation import (
    Announced,
    FederationContract,
    Member,
    MembershipPolicy,
    ServiceState,
    ServiceView,
    Windows,
    auction_closed,
)
from mecfed.chain.revert import ContractRevert
from mecfed.chain.subscriptions import HeadStream, LogStream

__all__ = [
    "Announced",
    "ChainClient",
    "ContractRevert",
    "Event",
    "FederationContract",
    "Head",
    "HeadStream",
    "LogStream",
    "Member",
    "MembershipPolicy",
    "Receipt",
    "ServiceState",
    "ServiceView",
    "Windows",
    "auction_closed",
]
