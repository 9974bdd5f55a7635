"""Waiting for chain time: deadlines in the contract are block timestamps
and block numbers, so the transport waits for blocks, not for wall time."""

from __future__ import annotations

from mecfed.chain.client import ChainClient, Head
from mecfed.errors import Unavailable


async def wait_chain_time(client: ChainClient, timestamp: int) -> Head:
    """Until a block at or past ``timestamp`` exists; that block."""
    heads = client.heads()
    try:
        head = await client.head()
        if head.timestamp >= timestamp:
            return head
        async for head in heads:
            if head.timestamp >= timestamp:
                return head
    finally:
        await heads.close()
    raise Unavailable("the chain client stopped delivering blocks")


async def wait_block_after(client: ChainClient, number: int) -> Head:
    """Until a block after ``number`` exists (e.g. the end of a closing block)."""
    heads = client.heads()
    try:
        head = await client.head()
        if head.number > number:
            return head
        async for head in heads:
            if head.number > number:
                return head
    finally:
        await heads.close()
    raise Unavailable("the chain client stopped delivering blocks")


__all__ = ["wait_block_after", "wait_chain_time"]
