"""Ethereum client layer: anvil launcher, key files, transactions with a
nonce manager and decoded reverts, reconnecting log subscriptions, ECIES."""

from mecfed.chain.client import ChainClient, Receipt, address_topic, event_topic, uint_topic
from mecfed.chain.revert import ContractRevert, ErrorDecoder

__all__ = [
    "ChainClient",
    "ContractRevert",
    "ErrorDecoder",
    "Receipt",
    "address_topic",
    "event_topic",
    "uint_topic",
]
