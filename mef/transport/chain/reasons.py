"""Honest reasons for an auction that got no offer, as far as the chain can tell."""

from __future__ import annotations

from mecfed.chain.federation import FederationContract
from mecfed.errors import DeadlineExceeded, MecfedError
from mecfed.model import ServiceNeed

# A provider sees the announcement in a block and bids in a later one: a
# round that closes fewer blocks than this after its announcement could not
# have had a bid.
MIN_BIDDING_BLOCKS = 2


async def no_bid(
    contract: FederationContract, need: ServiceNeed, window: int, blocks: int
) -> MecfedError:
    """Why an auction got no bid, as far as the chain can tell."""
    if blocks < MIN_BIDDING_BLOCKS:
        return DeadlineExceeded(
            f"no offer: the bidding window of {window} s ended {blocks} block(s) after the "
            f"announcement; providers need {MIN_BIDDING_BLOCKS} blocks to bid (raise "
            "offer_timeout_ms)"
        )
    others = await contract.total_members() - 1
    if others <= 0:
        return DeadlineExceeded("no offer: no other member of the federation could bid")
    return DeadlineExceeded(
        f"no offer: none of the {others} other members bid at or below max_price "
        f"{need.requirements.max_price} within the {window} s bidding window ({blocks} "
        "blocks): each is at capacity, declined, or prices above max_price (the chain "
        "does not say which)"
    )


__all__ = ["MIN_BIDDING_BLOCKS", "no_bid"]
