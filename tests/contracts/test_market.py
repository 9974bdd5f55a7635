"""The auction on a real node (anvil), where what forge cannot show is real: transactions of
several senders in one block, ordered by their fees; the order window against the chain's
clock; the price released only by the consumer's acknowledgement (or after the challenge
window); bonds; windows bounded and carried in the announcement."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak

from .conftest import (
    ACKNOWLEDGED,
    AWARDED,
    CANCELLED,
    CHALLENGE,
    CLOSING,
    DEPLOY,
    DEPLOYED,
    ORDER,
    PRICE,
    REQ,
    TERMINATED,
    Actor,
    Setup,
    announce,
    bond_due,
    place_bid,
    service,
)

MAXP = 10 * PRICE
GWEI = 10**9


def _same_block(setup: Setup, txs: list[tuple[Actor, Any, int, int]]) -> list[Any]:
    """Sends (sender, call, value, priority fee) with automine off, then mines them in one
    block (anvil orders a block's transactions by their fee, highest first)."""
    c = setup.chain
    c.rpc("evm_setAutomine", [False])
    try:
        hashes = [
            call.transact(
                {
                    "from": who.address,
                    "value": value,
                    "gas": 300_000,
                    "maxPriorityFeePerGas": tip,
                    "maxFeePerGas": 200 * GWEI + tip,
                }
            )
            for who, call, value, tip in txs
        ]
        c.rpc("evm_mine")
    finally:
        c.rpc("evm_setAutomine", [True])
    return [c.w3.eth.wait_for_transaction_receipt(h) for h in hashes]


def test_announce_bounds_windows_and_carries_them(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons = setup.members[0]
    sid, rcpt = announce(setup, cons, max_price=MAXP, k=3, bidding=600)
    (ev,) = c.events(fed, rcpt, "ServiceAnnounced")
    ts = c.w3.eth.get_block(rcpt.blockNumber)["timestamp"]
    assert (ev.args.maxPrice, ev.args.k, ev.args.biddingDeadline) == (MAXP, 3, ts + 600)
    assert (ev.args.orderWindow, ev.args.deployWindow, ev.args.challengeWindow) == (
        ORDER,
        DEPLOY,
        CHALLENGE,
    )
    assert ev.args.bond == MAXP // 10 and ev.args.requirements == REQ
    assert service(setup, sid)["state"] == 1
    # the "1-second confirm window" and its kin are refused
    for windows in [(1, 60, 60, 60), (600, 1, 60, 60), (600, 60, 1, 60), (600, 60, 60, 1)]:
        c.reverts(
            "InvalidWindow",
            fed.functions.announce(MAXP, 1, *windows, b""),
            cons,
            value=MAXP,
        )
    c.reverts("InvalidK", fed.functions.announce(MAXP, 256, 60, 60, 60, 60, b""), cons, MAXP)


def test_a_higher_fee_in_the_closing_block_does_not_decide_the_winner(setup: Setup) -> None:
    """The front-running of the k-th bid: p2's k-th bid and p3's worse bid with a far higher
    fee land in the same block; p3's bid is mined first, yet the best bid of the block wins."""
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3 = setup.members[:4]
    sid, _ = announce(setup, cons, max_price=MAXP, k=2)
    place_bid(setup, p1, sid, 6 * PRICE)
    bond = bond_due(setup, p2, sid)
    honest, front = _same_block(
        setup,
        [
            (p2, fed.functions.bid(sid, 3 * PRICE, b"x"), bond, 1 * GWEI),  # the k-th bid
            (p3, fed.functions.bid(sid, 5 * PRICE, b"x"), bond, 100 * GWEI),  # front-runner
        ],
    )
    assert honest.status == front.status == 1, "both bids of the closing block count"
    assert honest.blockNumber == front.blockNumber and front.transactionIndex == 0
    v = service(setup, sid)
    assert v["closeBlock"] == honest.blockNumber and v["bidCount"] == 3
    assert v["winner"] == p2.address and v["bestPrice"] == 3 * PRICE
    assert v["state"] in (CLOSING, AWARDED)  # read from the mined block: final
    c.advance(1)
    assert service(setup, sid)["state"] == AWARDED
    c.reverts("BiddingClosed", fed.functions.bid(sid, PRICE, b"x"), setup.members[4], bond)


def test_ties_in_one_block_follow_the_hash_rule_not_the_fee(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    sid, _ = announce(setup, cons, max_price=MAXP, k=2)
    bond = bond_due(setup, p1, sid)
    expected = min((p1, p2), key=lambda p: keccak(encode(["bytes32", "address"], [sid, p.address])))
    other = p2 if expected is p1 else p1
    # the loser of the hash rule pays the higher fee and is mined first
    _same_block(
        setup,
        [
            (other, fed.functions.bid(sid, 4 * PRICE, b"x"), bond, 100 * GWEI),
            (expected, fed.functions.bid(sid, 4 * PRICE, b"x"), bond, 1 * GWEI),
        ],
    )
    c.advance(1)
    assert service(setup, sid)["winner"] == expected.address


def test_order_after_the_order_deadline_is_refused(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, 4 * PRICE)
    c.rpc("evm_mine")  # the end of the closing block (calls run in the latest block's context)
    v = service(setup, sid)
    assert v["orderDeadline"] == v["deadline"] + ORDER
    assert v["confirmDeadline"] == v["orderDeadline"] + DEPLOY
    c.set_next_timestamp(v["orderDeadline"] + 1)
    c.reverts_mined("OrderWindowOver", fed.functions.sendConsumerEndpoint(sid, b"o"), cons)


def test_price_only_after_acknowledgement_then_withdrawn(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, 4 * PRICE)
    c.rpc("evm_mine")  # the end of the closing block (calls run in the latest block's context)
    c.send(fed.functions.sendConsumerEndpoint(sid, b"o"), cons)
    c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
    assert service(setup, sid)["state"] == DEPLOYED
    assert fed.functions.credits(p1.address).call() == 0, "the confirmation pays nothing"
    rcpt = c.send(fed.functions.acknowledge(sid), cons)
    (ev,) = c.events(fed, rcpt, "ServiceAcknowledged")
    assert (ev.args.provider, ev.args.price) == (p1.address, 4 * PRICE)
    assert service(setup, sid)["state"] == ACKNOWLEDGED
    assert fed.functions.credits(p1.address).call() == 4 * PRICE + MAXP // 10
    c.send(fed.functions.withdraw(), p1)
    c.send(fed.functions.withdraw(), cons)
    c.send(fed.functions.terminate(sid), cons)
    assert service(setup, sid)["state"] == TERMINATED
    assert c.balance(fed.address) == 0


@pytest.mark.parametrize("complain", [True, False])
def test_challenge_window(setup: Setup, complain: bool) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, 4 * PRICE)
    c.rpc("evm_mine")  # the end of the closing block (calls run in the latest block's context)
    c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
    if complain:
        rcpt = c.send(fed.functions.terminate(sid), cons)
        (ev,) = c.events(fed, rcpt, "ServiceTerminated")
        assert ev.args.refunded
        assert fed.functions.credits(cons.address).call() == MAXP
        assert fed.functions.credits(p1.address).call() == MAXP // 10  # bond back, no price
        return
    c.reverts("DeadlineNotPassed", fed.functions.settle(sid), p1)
    c.advance(CHALLENGE + 1)
    assert service(setup, sid)["state"] == ACKNOWLEDGED
    c.send(fed.functions.settle(sid), p1)
    assert fed.functions.credits(p1.address).call() == 4 * PRICE + MAXP // 10


def test_k1_griefing_with_a_1_wei_bid(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, griefer, honest = setup.members[:3]
    sid, _ = announce(setup, cons, k=1)
    bond = bond_due(setup, griefer, sid)
    place_bid(setup, griefer, sid, 1)  # closes the auction (k = 1) at 1 wei
    c.rpc("evm_mine")
    c.reverts("BiddingClosed", fed.functions.bid(sid, 4 * PRICE, b"x"), honest, bond)
    c.send(fed.functions.sendConsumerEndpoint(sid, b"o"), cons)
    c.advance(ORDER + DEPLOY + 1)  # the griefer never confirms
    rcpt = c.send(fed.functions.reopen(sid, 60), cons)
    (ev,) = c.events(fed, rcpt, "BondForfeited")
    assert (ev.args.provider, ev.args.bond) == (griefer.address, bond)
    assert fed.functions.credits(cons.address).call() == bond
    c.reverts("NotEligible", fed.functions.bid(sid, 1, b"x"), griefer)
    place_bid(setup, honest, sid, 4 * PRICE)  # never bid before: eligible in the new round
    c.advance(1)
    v = service(setup, sid)
    assert (v["state"], v["winner"], v["round"]) == (AWARDED, honest.address, 1)


def test_cancel_before_confirmation_returns_escrow_and_bond(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, 4 * PRICE)
    c.rpc("evm_mine")  # the end of the closing block (calls run in the latest block's context)
    c.send(fed.functions.sendConsumerEndpoint(sid, b"o"), cons)
    c.send(fed.functions.cancel(sid), cons)  # before the deadline: the winner is not at fault
    assert service(setup, sid)["state"] == CANCELLED
    assert fed.functions.credits(cons.address).call() == MAXP
    c.send(fed.functions.reclaimBond(sid), p1)
    assert fed.functions.credits(p1.address).call() == MAXP // 10
    c.reverts("NoBond", fed.functions.reclaimBond(sid), p1)
