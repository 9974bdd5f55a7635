"""The chain Mff transport (the Federation contract as the market)."""

from mef.transport.chain.transport import ChainTransport, connect_chain_transport

__all__ = ["ChainTransport", "connect_chain_transport"]
