"""FederationContract, the typed facade, against the real contract on anvil."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from eth_account import Account

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient
from mecfed.chain.federation import (
    Announced,
    FederationContract,
    Member,
    MembershipPolicy,
    ServiceState,
    Windows,
    auction_closed,
)
from mecfed.chain.revert import ContractRevert
from mecfed.chain.sealing import pubkey_of
from mecfed.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from tests.chain.conftest import rpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

ZERO = "0x" + "00" * 20


@dataclass
class Fed:
    admin: FederationContract
    consumer: FederationContract
    p1: FederationContract
    p2: FederationContract
    p3: FederationContract

    def of(self, client: ChainClient) -> FederationContract:
        return FederationContract(client, self.admin.address)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fed(anvil: Anvil) -> AsyncIterator[Fed]:
    # No status_for on the clients: the facade maps the contract's errors itself.
    clients = [await ChainClient.connect(anvil.ws_url, anvil.dev_accounts[i]) for i in range(5, 10)]
    try:
        admin_client, *members = clients
        admin = await FederationContract.deploy(
            admin_client, MembershipPolicy.ALLOWLIST, [c.address for c in members[:3]]
        )
        await admin.allow(members[3].address)
        handles = [FederationContract(c, admin.address) for c in members]
        for i, handle in enumerate(handles):
            await handle.ensure_member(f"mec-{i}")
        yield Fed(admin, *handles)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def _advance(client: ChainClient, seconds: int) -> None:
    await rpc(client, "evm_increaseTime", seconds)
    await rpc(client, "evm_mine")


async def _announce(fed: Fed, k: int = 2, window: int = 600, deploy: int = 600) -> Announced:
    return await fed.consumer.announce(
        100, k, Windows(window, order=30, deploy=deploy, challenge=60), b'{"app":"echo"}'
    )


async def _mine(client: ChainClient) -> None:
    """Ends the closing block: automine makes no block by itself, and calls run in the latest
    block's context, where the round is still Closing."""
    await rpc(client, "evm_mine")


# -- membership ---------------------------------------------------------------


async def test_membership(fed: Fed, anvil: Anvil) -> None:
    me = fed.p1.client
    assert await fed.p1.is_member(me.address)
    member = await fed.consumer.member(me.address)
    assert member == Member(me.address, "mec-1", pubkey_of(me.account))
    assert await fed.consumer.member(me.address) is member  # cached
    assert await fed.consumer.member(fed.admin.client.address) is None
    assert not await fed.consumer.is_member(fed.admin.client.address)
    await fed.p1.ensure_member("ignored")  # already a member: nothing sent
    with pytest.raises(PermissionDenied) as info:
        await fed.p1.allow(fed.admin.client.address)
    assert isinstance(info.value, ContractRevert) and info.value.error_name == "NotAdmin"
    with pytest.raises(InvalidArgument) as bad:
        await fed.p1.register("mec-1", b"\x01" * 64)  # not the sender's key
    assert bad.value.error_name == "BadPublicKey"  # type: ignore[attr-defined]

    stranger = Account.create()
    await fed.admin.client.transfer(stranger.address, 10**18)
    async with await ChainClient.connect(anvil.ws_url, stranger) as client:
        outsider = fed.of(client)
        with pytest.raises(PermissionDenied) as refused:
            await outsider.ensure_member("stranger")
        assert refused.value.error_name == "NotAllowed"  # type: ignore[attr-defined]
        await fed.admin.allow(stranger.address)
        await outsider.ensure_member("stranger")
        assert await outsider.is_member(stranger.address)


# -- an auction from announcement to termination ------------------------------


async def test_full_auction(fed: Fed) -> None:
    consumer, p1, p2 = fed.consumer.client, fed.p1.client, fed.p2.client
    announced = await _announce(fed)
    sid = announced.service_id
    assert re.fullmatch(r"0x[0-9a-f]{64}", sid)
    event = announced.receipt.event("ServiceAnnounced")
    assert event.args["consumer"] == consumer.address
    assert (event.args["orderWindow"], event.args["deployWindow"]) == (30, 600)
    assert announced.bond == 10 and event.args["challengeWindow"] == 60
    assert await fed.p1.state(sid) is ServiceState.OPEN
    view = await fed.p1.service(sid)
    assert (view.consumer, view.max_price, view.k, view.bid_count) == (consumer.address, 100, 2, 0)
    assert view.state is ServiceState.OPEN and view.deadline == announced.bidding_deadline
    assert (view.winner, view.best_price, view.round, view.confirm_deadline) == (ZERO, 0, 0, 0)
    assert (view.bidding_window, view.order_window, view.deploy_window) == (600, 30, 600)
    assert (view.challenge_window, view.bond, view.ordered) == (60, 10, False)
    assert view.extra == {}

    stream = fed.consumer.events(
        ["BidPlaced", "ServiceClosing"], service_id=sid, from_block=announced.block_number
    )
    await fed.p1.bid(sid, 90, b"sealed-1")  # the facade looks the bond up
    assert (await fed.p1.bid_of(sid, p1.address)).bonded
    closing = await fed.p2.bid(sid, 80, b"sealed-2", bond=announced.bond)
    assert closing.event("ServiceClosing").args["closeBlock"] == closing.block_number
    got = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(3)]
    await stream.close()
    assert [e.name for e in got] == ["BidPlaced", "BidPlaced", "ServiceClosing"]
    bid = got[0].args
    assert (bid["id"], bid["consumer"], bid["price"]) == (
        bytes.fromhex(sid[2:]),
        consumer.address,
        90,
    )
    assert bid["sealedEndpoint"] == b"sealed-1"
    view = await fed.consumer.service(sid)
    assert view.state is ServiceState.CLOSING and view.state.awarded
    await _mine(consumer)
    view = await fed.consumer.service(sid)
    assert (view.state, view.winner, view.best_price, view.bid_count) == (
        ServiceState.AWARDED,
        p2.address,
        80,
        2,
    )
    assert view.confirm_deadline == view.order_deadline + 600
    with pytest.raises(ContractRevert) as late:
        await fed.p3.bid(sid, 70, b"late")
    assert auction_closed(late.value) and isinstance(late.value, DeadlineExceeded)

    sent = await fed.consumer.send_consumer_endpoint(sid, b"consumer-endpoint")
    assert sent.event("ConsumerEndpoint").args["provider"] == p2.address
    credits_before = (
        await fed.consumer.credits(p2.address),
        await fed.consumer.credits(consumer.address),
    )
    confirmed = await fed.p2.confirm_deployment(sid, b"provider-endpoint")
    assert confirmed.event("DeploymentConfirmed").args["sealedEndpoint"] == b"provider-endpoint"
    assert await fed.p2.state(sid) is ServiceState.DEPLOYED
    assert await fed.p2.credits(p2.address) == credits_before[0], "not paid before the ack"
    acked = await fed.consumer.acknowledge(sid)
    assert acked.event("ServiceAcknowledged").args["price"] == 80
    assert await fed.p2.state(sid) is ServiceState.ACKNOWLEDGED
    assert await fed.p2.credits(p2.address) == credits_before[0] + 80 + 10  # price + bond
    assert await fed.p2.credits(consumer.address) == credits_before[1] + 20
    await fed.p1.reclaim_bond(sid)  # the loser's bond
    with pytest.raises(FailedPrecondition):  # NoBond
        await fed.p1.reclaim_bond(sid)

    balance = await p2.balance()
    withdrawn = await fed.p2.withdraw()
    assert withdrawn.event("Withdrawn").args["amount"] == credits_before[0] + 90
    assert await fed.p2.credits(p2.address) == 0 and await p2.balance() > balance - 10**15
    with pytest.raises(FailedPrecondition):  # NothingToWithdraw
        await fed.p2.withdraw()

    await fed.consumer.terminate(sid)
    assert await fed.consumer.state(sid) is ServiceState.TERMINATED
    (ended,) = await fed.p1.past_events(
        ["ServiceTerminated"], service_id=sid, from_block=announced.block_number
    )
    assert ended.args["by"] == consumer.address and not ended.args["refunded"]
    (mine,) = await fed.p1.past_events(
        ["BidPlaced"], service_id=sid, provider=p1.address, from_block=announced.block_number
    )
    assert mine.args["price"] == 90


async def test_refusals_are_domain_errors(fed: Fed) -> None:
    sid = (await _announce(fed)).service_id
    with pytest.raises(PermissionDenied):  # OwnService
        await fed.consumer.bid(sid, 50, b"x", bond=10)
    with pytest.raises(InvalidArgument) as price:
        await fed.p1.bid(sid, 101, b"x")
    assert price.value.error_name == "PriceOutOfRange"  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument):  # PayloadTooLong
        await fed.p1.bid(sid, 50, b"x" * 300)
    with pytest.raises(InvalidArgument) as bond:  # BondMismatch
        await fed.p1.bid(sid, 50, b"x", bond=0)
    assert bond.value.error_name == "BondMismatch"  # type: ignore[attr-defined]
    await fed.p1.bid(sid, 50, b"x")
    with pytest.raises(FailedPrecondition):  # BidNotLower
        await fed.p1.bid(sid, 60, b"x")
    with pytest.raises(FailedPrecondition):  # BondLocked: a live bid of an open round
        await fed.p1.reclaim_bond(sid)
    with pytest.raises(PermissionDenied):  # NotConsumer
        await fed.p1.cancel(sid)
    with pytest.raises(InvalidArgument):  # InvalidK
        await fed.consumer.announce(100, 0, Windows(60), b"")
    with pytest.raises(InvalidArgument):  # InvalidWindow: the 1-second window
        await fed.consumer.announce(100, 1, Windows(60, deploy=1), b"")
    await fed.consumer.cancel(sid)
    assert await fed.p1.state(sid) is ServiceState.CANCELLED
    with pytest.raises(FailedPrecondition) as again:
        await fed.consumer.cancel(sid)
    assert again.value.error_name == "WrongState"  # type: ignore[attr-defined]
    assert again.value.error_args == {"expected": 1, "actual": 5}  # type: ignore[attr-defined]
    await fed.p1.reclaim_bond(sid)

    unknown = "0x" + "ab" * 32
    assert await fed.p1.state(unknown) is ServiceState.NONE
    with pytest.raises(NotFound):  # UnknownService
        await fed.consumer.award(unknown)
    with pytest.raises(InvalidArgument):
        await fed.p1.state("0x1234")
    limits = await fed.p1.limits()
    assert limits["min_deploy_window"] == 30 and limits["bond_divisor"] == 10


async def test_award_after_the_deadline_then_reopen(fed: Fed) -> None:
    p1 = fed.p1.client
    sid = (await _announce(fed, window=5, deploy=30)).service_id
    await fed.p1.bid(sid, 70, b"x")
    with pytest.raises(FailedPrecondition):  # DeadlineNotPassed
        await fed.consumer.award(sid)
    await _advance(p1, 6)
    assert await fed.consumer.state(sid) is ServiceState.AWARDED  # lazily, by the deadline
    with pytest.raises(DeadlineExceeded):  # BiddingClosed
        await fed.p2.bid(sid, 60, b"x")
    awarded = await fed.consumer.award(sid)
    assert awarded.event("ServiceAwarded").args["provider"] == p1.address
    await fed.consumer.send_consumer_endpoint(sid, b"order")
    with pytest.raises(FailedPrecondition):  # DeadlineNotPassed: the winner may still confirm
        await fed.consumer.reopen(sid, 30)
    await _advance(p1, 61)
    with pytest.raises(DeadlineExceeded):  # ConfirmWindowOver
        await fed.p1.confirm_deployment(sid, b"too late")
    reopened = (await fed.consumer.reopen(sid, 30)).event("ServiceReopened")
    assert (reopened.args["excluded"], reopened.args["round"]) == (p1.address, 1)
    assert not (await fed.p1.bid_of(sid, p1.address)).bonded, "forfeited after the order"
    view = await fed.consumer.service(sid)
    assert (view.state, view.round, view.bid_count, view.ordered) == (
        ServiceState.OPEN,
        1,
        0,
        False,
    )
    with pytest.raises(PermissionDenied):  # NotEligible: the failed winner
        await fed.p1.bid(sid, 60, b"x")
    await fed.consumer.cancel(sid)


async def test_decline(fed: Fed) -> None:
    p1, p2 = fed.p1.client, fed.p2.client
    announced = await _announce(fed, window=600)
    sid = announced.service_id
    reopenings = fed.p1.events(["ServiceReopened"], consumer=fed.consumer.client.address)
    await reopenings.wait_live()
    await fed.p1.bid(sid, 90, b"x")
    await fed.p2.bid(sid, 80, b"x")
    await _mine(p1)
    with pytest.raises(PermissionDenied):  # NotWinner
        await fed.p1.decline(sid)
    receipt = await fed.p2.decline(sid)
    event = receipt.event("ServiceReopened")
    assert (event.args["excluded"], event.args["round"]) == (p2.address, 1)
    assert (await asyncio.wait_for(reopenings.__anext__(), 5)) == event
    await reopenings.close()
    await fed.p2.reclaim_bond(sid)  # no on-chain order yet: the bond is kept
    view = await fed.consumer.service(sid)
    assert (view.state, view.round, view.bid_count) == (ServiceState.OPEN, 1, 0)
    with pytest.raises(PermissionDenied):  # NotEligible: the one that declined
        await fed.p2.bid(sid, 70, b"x")
    await fed.p3.bid(sid, 88, b"x")  # never bid before: eligible in the new round
    closing = await fed.p1.bid(sid, 85, b"x")  # k-th of the new round
    assert closing.event("ServiceClosing") is not None
    await _mine(p1)
    assert (await fed.consumer.service(sid)).winner == p1.address
    await fed.p1.confirm_deployment(sid, b"ok")
    assert await fed.consumer.state(sid) is ServiceState.DEPLOYED
    refund = await fed.consumer.terminate(sid)  # inside the challenge window: a complaint
    assert refund.event("ServiceTerminated").args["refunded"]


async def test_event_filters(fed: Fed) -> None:
    p1, p2, consumer = fed.p1.client, fed.p2.client, fed.consumer.client
    sid = (await _announce(fed)).service_id
    mine = fed.p1.events(["BidPlaced"], provider=p1.address)
    to_consumer = fed.p1.events(["BidPlaced", "ServiceClosing"], service_id=sid)
    for stream in (mine, to_consumer):
        await stream.wait_live()
    await fed.p2.bid(sid, 80, b"x")
    await fed.p1.bid(sid, 90, b"x")
    bid = await asyncio.wait_for(mine.__anext__(), 5)
    assert bid.args["provider"] == p1.address and bid.args["id"] == bytes.fromhex(sid[2:])
    names = [(await asyncio.wait_for(to_consumer.__anext__(), 5)).name for _ in range(3)]
    assert names == ["BidPlaced", "BidPlaced", "ServiceClosing"]
    await mine.close()
    await to_consumer.close()

    topics = fed.p1.topics(["BidPlaced"], service_id=sid, consumer=consumer.address)
    assert topics[1] == sid and topics[2] is None
    assert topics[3] == "0x" + "0" * 24 + consumer.address[2:].lower()
    assert fed.p1.topics(["ServiceTerminated"], service_id=sid)[1:] == [sid]
    with pytest.raises(ValueError, match="no indexed 'provider'"):
        fed.p1.topics(["ServiceTerminated"], provider=p2.address)
    with pytest.raises(ValueError, match="same position"):
        fed.p1.topics(["BidPlaced", "ServiceAwarded"], provider=p2.address)
    with pytest.raises(ValueError, match="same position"):
        fed.p1.topics(["BidPlaced", "ServiceAwarded"], consumer=consumer.address)
    with pytest.raises(ValueError, match="no event"):
        fed.p1.topics(["Nope"])
    with pytest.raises(ValueError):
        fed.p1.topics("BidPlaced")
