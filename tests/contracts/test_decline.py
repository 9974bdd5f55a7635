"""decline: the winner of an awarded service gives it up before confirming; a new round starts
at once for the announced bidding window (as reopen does), without the winner."""

from __future__ import annotations

from eth_abi import decode

from .conftest import (
    AWARDED,
    CANCELLED,
    DEPLOYED,
    OPEN,
    PRICE,
    TERMINATED,
    Setup,
    announce,
    auction_word,
    place_bid,
    service,
    set_auction_word,
)

MAXP = 10 * PRICE
ZERO = "0x" + "00" * 20


def _awarded(setup: Setup, k: int = 3, bidding: int = 600, confirm: int = 300):  # type: ignore[no-untyped-def]
    """k bids by members 1..k (member 1 lowest): auto-awarded to member 1."""
    cons = setup.members[0]
    sid, _ = announce(setup, cons, k=k, bidding=bidding, confirm=confirm)
    for i, p in enumerate(setup.members[1 : k + 1]):
        place_bid(setup, p, sid, (3 + i) * PRICE)
    assert setup.fed.functions.stateOf(sid).call() == AWARDED
    return sid, cons


def test_decline_starts_new_round_for_the_announced_window(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    sid, cons = _awarded(setup, k=3, bidding=450, confirm=300)
    p1 = setup.members[1]
    assert service(setup, sid)["biddingWindow"] == 450
    rcpt = c.send(fed.functions.decline(sid), p1)
    ts = c.w3.eth.get_block(rcpt.blockNumber)["timestamp"]
    (ev,) = c.events(fed, rcpt, "ServiceReopened")
    assert (ev.args.id, ev.args.consumer, ev.args.excluded) == (sid, cons.address, p1.address)
    assert (ev.args.round, ev.args.biddingDeadline) == (1, ts + 450)
    v = service(setup, sid)
    assert (v["state"], v["round"], v["bidCount"], v["deadline"]) == (OPEN, 1, 0, ts + 450)
    assert (v["winner"], v["bestPrice"], v["confirmDeadline"]) == (ZERO, 0, 0)
    assert (v["k"], v["quorum"], v["confirmWindow"], v["maxPrice"]) == (3, 2, 300, MAXP)
    assert fed.functions.bidOf(sid, p1.address).call() == [3 * PRICE, 0, False, True]
    assert c.balance(fed.address) == MAXP  # escrow untouched


def test_decline_only_by_the_winner(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    sid, cons = _awarded(setup)
    p1, p2, p3, p4 = setup.members[1:5]
    for who in (cons, p2, p3, p4, setup.outsider):
        c.reverts("NotWinner", fed.functions.decline(sid), who)
    c.reverts("UnknownService", fed.functions.decline(b"\x07" * 32), p1)
    # a winner that left the federation may still decline (it only helps the consumer)
    c.send(fed.functions.leave(), p1)
    c.send(fed.functions.decline(sid), p1)
    assert service(setup, sid)["round"] == 1


def test_decline_only_while_awarded_and_unconfirmed(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    # Open (no bids yet / some bids, deadline not passed)
    sid, _ = announce(setup, cons, k=2, bidding=100)
    data = c.reverts("WrongState", fed.functions.decline(sid), p1)
    assert decode(["uint8", "uint8"], bytes.fromhex(data[10:])) == (AWARDED, OPEN)
    place_bid(setup, p1, sid, PRICE)
    c.reverts("WrongState", fed.functions.decline(sid), p1)
    # Open with no bid past the deadline stays Open: nothing to decline
    empty, _ = announce(setup, cons, k=2, bidding=100)
    c.advance(101)
    c.reverts("WrongState", fed.functions.decline(empty), p1)
    # Deployed, Terminated
    sid2, _ = announce(setup, cons, k=1)
    place_bid(setup, p2, sid2, PRICE)
    c.send(fed.functions.confirmDeployment(sid2, b"e"), p2)
    data = c.reverts("WrongState", fed.functions.decline(sid2), p2)
    assert decode(["uint8", "uint8"], bytes.fromhex(data[10:])) == (AWARDED, DEPLOYED)
    c.send(fed.functions.terminate(sid2), p2)
    data = c.reverts("WrongState", fed.functions.decline(sid2), p2)
    assert decode(["uint8", "uint8"], bytes.fromhex(data[10:])) == (AWARDED, TERMINATED)
    # Cancelled
    sid3, _ = announce(setup, cons, k=1)
    c.send(fed.functions.cancel(sid3), cons)
    data = c.reverts("WrongState", fed.functions.decline(sid3), p1)
    assert decode(["uint8", "uint8"], bytes.fromhex(data[10:])) == (AWARDED, CANCELLED)
    # after declining, the new round is Open: a second decline is refused
    sid4, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid4, PRICE)
    c.send(fed.functions.decline(sid4), p1)
    c.reverts("WrongState", fed.functions.decline(sid4), p1)


def test_decline_a_lazily_awarded_auction(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3 = setup.members[:4]
    sid, _ = announce(setup, cons, k=5, bidding=120, confirm=60)
    place_bid(setup, p1, sid, 7 * PRICE)
    place_bid(setup, p2, sid, 4 * PRICE)
    place_bid(setup, p3, sid, 5 * PRICE)
    c.advance(121)
    assert fed.functions.stateOf(sid).call() == AWARDED  # stored state is still Open
    assert auction_word(setup, sid)["state"] == OPEN
    c.reverts("NotWinner", fed.functions.decline(sid), p1)
    rcpt = c.send(fed.functions.decline(sid), p2)
    (ev,) = c.events(fed, rcpt, "ServiceReopened")
    assert (ev.args.excluded, ev.args.round) == (p2.address, 1)
    v = service(setup, sid)
    assert (v["state"], v["quorum"], v["k"]) == (OPEN, 2, 5)  # p1 and p3 are left
    # also after the confirm deadline (before the consumer reopened or cancelled)
    place_bid(setup, p3, sid, 6 * PRICE)
    rcpt = place_bid(setup, p1, sid, 6 * PRICE)  # the 2nd eligible bidder closes; tie -> p3
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price) == (p3.address, 6 * PRICE)
    c.advance(61)
    c.reverts("ConfirmWindowOver", fed.functions.confirmDeployment(sid, b"e"), p3)
    rcpt = c.send(fed.functions.decline(sid), p3)
    (ev,) = c.events(fed, rcpt, "ServiceReopened")
    assert (ev.args.excluded, ev.args.round) == (p3.address, 2)
    assert service(setup, sid)["quorum"] == 1


def test_declined_winner_cannot_rebid_others_can_and_the_last_rebid_awards(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    sid, cons = _awarded(setup, k=3, confirm=300)
    p1, p2, p3, p4 = setup.members[1:5]
    c.send(fed.functions.decline(sid), p1)
    bid = fed.functions.bid
    c.reverts("NotEligible", bid(sid, PRICE, b"e"), p1)  # the declined winner
    c.reverts("NotEligible", bid(sid, PRICE, b"e"), p4)  # never bid before
    c.reverts("OwnService", bid(sid, PRICE, b"e"), cons)
    c.reverts("PriceOutOfRange", bid(sid, MAXP + 1, b"e"), p2)
    place_bid(setup, p2, sid, MAXP)  # any price up to maxPrice in a new round
    place_bid(setup, p2, sid, 8 * PRICE)  # re-bid within the round: lower only
    c.reverts("BidNotLower", bid(sid, 8 * PRICE, b"e"), p2)
    assert fed.functions.stateOf(sid).call() == OPEN
    rcpt = place_bid(setup, p3, sid, 9 * PRICE)  # quorum (2 eligible) reached: awards
    ts = c.w3.eth.get_block(rcpt.blockNumber)["timestamp"]
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.consumer, aw.args.provider, aw.args.price) == (
        cons.address,
        p2.address,
        8 * PRICE,
    )
    v = service(setup, sid)
    assert (v["state"], v["winner"], v["bidCount"], v["confirmDeadline"]) == (
        AWARDED,
        p2.address,
        2,
        ts + 300,
    )
    c.reverts("NotWinner", fed.functions.confirmDeployment(sid, b"e"), p1)
    c.send(fed.functions.confirmDeployment(sid, b"e"), p2)
    assert fed.functions.credits(p2.address).call() == 8 * PRICE
    assert fed.functions.credits(cons.address).call() == MAXP - 8 * PRICE
    assert fed.functions.credits(p1.address).call() == 0


def test_escrow_recoverable_after_decline(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    # the only bidder declines: nobody is eligible in the new round, the consumer cancels
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, 4 * PRICE)
    c.send(fed.functions.decline(sid), p1)
    assert service(setup, sid)["quorum"] == 0
    c.reverts("NotEligible", fed.functions.bid(sid, PRICE, b"e"), p1)
    c.send(fed.functions.cancel(sid), cons)
    assert fed.functions.credits(cons.address).call() == MAXP
    # a new round without bids stays Open past its deadline and remains cancellable
    sid2, _ = _awarded(setup, k=2, bidding=100)
    c.send(fed.functions.decline(sid2), setup.members[1])
    c.advance(101)
    assert fed.functions.stateOf(sid2).call() == OPEN
    c.send(fed.functions.cancel(sid2), cons)
    assert fed.functions.credits(cons.address).call() == 2 * MAXP
    before = c.balance(cons.address)
    rcpt = c.send(fed.functions.withdraw(), cons)
    fee = rcpt.gasUsed * rcpt.effectiveGasPrice
    assert c.balance(cons.address) == before + 2 * MAXP - fee
    assert c.balance(fed.address) == 0


def test_too_many_rounds(setup: Setup) -> None:
    """65535 reopen/decline transactions are too many for a test: the round counter is set in
    storage (layout checked against serviceOf); then neither decline nor reopen can start
    another round, and cancel after the confirm deadline still frees the escrow."""
    c, fed = setup.chain, setup.fed
    sid, cons = _awarded(setup, k=2, confirm=60)
    p1 = setup.members[1]
    set_auction_word(setup, sid, round=0xFFFE)
    c.send(fed.functions.decline(sid), p1)
    assert service(setup, sid)["round"] == 0xFFFF
    place_bid(setup, setup.members[2], sid, PRICE)  # quorum 1: awards at once
    winner = setup.members[2]
    c.reverts("TooManyRounds", fed.functions.decline(sid), winner)
    c.advance(61)
    c.reverts("TooManyRounds", fed.functions.reopen(sid, 60), cons)
    c.reverts("TooManyRounds", fed.functions.decline(sid), winner)
    c.send(fed.functions.cancel(sid), cons)
    assert fed.functions.credits(cons.address).call() == MAXP


def test_deadline_beyond_uint40_is_refused(setup: Setup) -> None:
    """Deadlines are stored as uint40: a window that would end past 2**40 - 1 reverts
    InvalidWindow instead of wrapping (announce, reopen and decline)."""
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1, confirm=60)
    place_bid(setup, p1, sid, PRICE)
    sid2, _ = announce(setup, cons, k=1, bidding=600, confirm=60)
    place_bid(setup, p1, sid2, PRICE)
    end = 2**40 - 1
    c.set_next_timestamp(end - 100)
    c.send(fed.functions.announce(MAXP, 1, 100, 60, b""), cons, value=MAXP)  # ends at 2**40-1
    c.set_next_timestamp(end - 99)
    announce_ = fed.functions.announce(MAXP, 1, 100, 60, b"")
    c.reverts_mined("InvalidWindow", announce_, cons, value=MAXP)
    c.set_next_timestamp(end - 98)
    c.reverts_mined("InvalidWindow", fed.functions.reopen(sid, 100), cons)
    c.set_next_timestamp(end - 97)
    c.reverts_mined("InvalidWindow", fed.functions.decline(sid2), p1)
    c.set_next_timestamp(end - 96)
    c.send(fed.functions.reopen(sid, 96), cons)  # ends exactly at 2**40 - 1
    assert service(setup, sid)["deadline"] == end
