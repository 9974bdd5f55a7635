"""Announce / bid / award / consumer endpoint / confirm / reopen / terminate guards."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from .conftest import (
    AWARDED,
    CANCELLED,
    DEPLOYED,
    NONE,
    OPEN,
    PRICE,
    REQ,
    TERMINATED,
    Setup,
    announce,
    make_actor,
    place_bid,
    seal,
    service,
)

MAXP = 10 * PRICE


def test_announce_stores_escrows_and_emits(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons = setup.members[0]
    sid, rcpt = announce(setup, cons, max_price=MAXP, k=3, bidding=600, confirm=300)
    (ev,) = c.events(fed, rcpt, "ServiceAnnounced")
    ts = c.w3.eth.get_block(rcpt.blockNumber)["timestamp"]
    assert ev.args.consumer == cons.address
    assert (ev.args.maxPrice, ev.args.k, ev.args.biddingDeadline) == (MAXP, 3, ts + 600)
    assert ev.args.requirements == REQ
    v = service(setup, sid)
    assert v["consumer"] == cons.address and v["maxPrice"] == MAXP and v["k"] == 3
    assert v["state"] == OPEN and v["bidCount"] == 0 and v["deadline"] == ts + 600
    assert v["winner"] == "0x" + "00" * 20 and v["bestPrice"] == 0 and v["confirmDeadline"] == 0
    assert c.balance(fed.address) == MAXP
    assert fed.functions.stateOf(b"\x00" * 32).call() == NONE


def test_announce_guards(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons = setup.members[0]
    f = fed.functions.announce
    c.reverts("NotMember", f(MAXP, 1, 60, 60, b""), setup.outsider, value=MAXP)
    c.reverts("EscrowMismatch", f(MAXP, 1, 60, 60, b""), cons, value=MAXP - 1)
    c.reverts("EscrowMismatch", f(MAXP, 1, 60, 60, b""), cons, value=MAXP + 1)
    c.reverts("EscrowMismatch", f(MAXP, 1, 60, 60, b""), cons)
    c.reverts("PriceOutOfRange", f(0, 1, 60, 60, b""), cons)
    c.reverts("InvalidK", f(MAXP, 0, 60, 60, b""), cons, value=MAXP)
    c.reverts("InvalidWindow", f(MAXP, 1, 0, 60, b""), cons, value=MAXP)
    c.reverts("InvalidWindow", f(MAXP, 1, 60, 0, b""), cons, value=MAXP)
    c.reverts("InvalidWindow", f(MAXP, 1, 30 * 86400 + 1, 60, b""), cons, value=MAXP)
    c.reverts("InvalidWindow", f(MAXP, 1, 60, 30 * 86400 + 1, b""), cons, value=MAXP)
    c.reverts("RequirementsTooLong", f(MAXP, 1, 60, 60, b"r" * 1025), cons, value=MAXP)
    c.send(f(MAXP, 1, 60, 60, b"r" * 1024), cons, value=MAXP)


def test_ids_unique_and_not_collidable(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    a, b = setup.members[0], setup.members[1]
    assert fed.functions.nonceOf(a.address).call() == 0
    id_a0, _ = announce(setup, a)
    id_a1, _ = announce(setup, a)
    id_b0, _ = announce(setup, b)  # same nonce (0) as id_a0, other consumer
    assert len({id_a0, id_a1, id_b0}) == 3
    assert fed.functions.nonceOf(a.address).call() == 2
    chain_id = c.w3.eth.chain_id

    def expect(consumer: str, nonce: int, contract: str = fed.address) -> bytes:
        return keccak(
            encode(
                ["uint256", "address", "address", "uint256"], [chain_id, contract, consumer, nonce]
            )
        )

    assert id_a0 == expect(a.address, 0) and id_a1 == expect(a.address, 1)
    assert id_b0 == expect(b.address, 0)
    # the consumer cannot reuse/squat an id: a second announce never overwrites the first
    assert service(setup, id_a0)["consumer"] == a.address
    # another deployment (same consumer, same nonce) yields another id
    other = c.deploy(None, 0, [a.address])
    c.send(other.functions.register("a", a.pubkey), a)
    rcpt = c.send(other.functions.announce(MAXP, 1, 60, 60, b""), a, value=MAXP)
    (ev,) = c.events(other, rcpt, "ServiceAnnounced")
    assert ev.args.id == expect(a.address, 0, other.address) != id_a0


def test_bid_guards(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[0], setup.members[1], setup.members[2]
    sid, _ = announce(setup, cons, k=5)
    ep = seal(cons)
    bid = fed.functions.bid
    c.reverts("NotMember", bid(sid, PRICE, ep), setup.outsider)
    c.reverts("OwnService", bid(sid, PRICE, ep), cons)
    c.reverts("PriceOutOfRange", bid(sid, 0, ep), p1)
    c.reverts("PriceOutOfRange", bid(sid, MAXP + 1, ep), p1)
    c.reverts("UnknownService", bid(b"\x01" * 32, PRICE, ep), p1)
    c.reverts("PayloadTooLong", bid(sid, PRICE, b"e" * 257), p1)
    c.send(bid(sid, MAXP, b"e" * 256), p1)  # price == maxPrice and 256-byte payload accepted
    c.reverts("BidNotLower", bid(sid, MAXP, ep), p1)
    c.reverts("BidNotLower", bid(sid, MAXP + 0, ep), p1)
    rcpt = c.send(bid(sid, 3 * PRICE, ep), p1)  # strictly lower replaces
    (ev,) = c.events(fed, rcpt, "BidPlaced")
    assert (ev.args.id, ev.args.provider, ev.args.consumer) == (sid, p1.address, cons.address)
    assert ev.args.price == 3 * PRICE and ev.args.sealedEndpoint == ep
    c.reverts("BidNotLower", bid(sid, 4 * PRICE, ep), p1)
    assert fed.functions.bidOf(sid, p1.address).call() == [3 * PRICE, 0, True, False]
    v = service(setup, sid)
    assert v["bidCount"] == 1 and v["bestPrice"] == 3 * PRICE and v["winner"] == p1.address
    # deadline boundary: bidding open strictly before the deadline
    c.set_next_timestamp(v["deadline"] - 1)
    c.send(bid(sid, 5 * PRICE, ep), p2)
    c.set_next_timestamp(v["deadline"])
    c.reverts_mined("BiddingClosed", bid(sid, PRICE, ep), setup.members[3])


def test_bid_after_deadline_refused(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    sid, _ = announce(setup, setup.members[0], k=2, bidding=60)
    c.advance(61)
    c.reverts("BiddingClosed", fed.functions.bid(sid, PRICE, b"x"), setup.members[1])


def test_lowest_wins_ties_go_to_earliest(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3 = setup.members[:4]
    sid, _ = announce(setup, cons, k=3)
    place_bid(setup, p1, sid, 5 * PRICE)
    place_bid(setup, p2, sid, 5 * PRICE)  # tie: p1 stays best
    assert service(setup, sid)["winner"] == p1.address
    rcpt = place_bid(setup, p3, sid, 7 * PRICE)  # k-th distinct bidder closes
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price, aw.args.consumer) == (
        p1.address,
        5 * PRICE,
        cons.address,
    )
    # a later, strictly lower bid wins
    sid2, _ = announce(setup, cons, k=3)
    place_bid(setup, p1, sid2, 5 * PRICE)
    place_bid(setup, p2, sid2, 4 * PRICE)
    rcpt = place_bid(setup, p3, sid2, 4 * PRICE)
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price) == (p2.address, 4 * PRICE)
    # the k-th bidder itself can be the winner
    sid3, _ = announce(setup, cons, k=2)
    place_bid(setup, p1, sid3, 5 * PRICE)
    rcpt = place_bid(setup, p2, sid3, 2 * PRICE)
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price) == (p2.address, 2 * PRICE)


def test_auto_award_on_kth_bid(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3 = setup.members[:4]
    sid, _ = announce(setup, cons, k=2, bidding=600, confirm=300)
    place_bid(setup, p1, sid, 6 * PRICE)
    place_bid(setup, p1, sid, 5 * PRICE)  # a re-bid is not a new distinct bidder
    v = service(setup, sid)
    assert v["state"] == OPEN and v["bidCount"] == 1
    rcpt = place_bid(setup, p2, sid, 8 * PRICE)
    ts = c.w3.eth.get_block(rcpt.blockNumber)["timestamp"]
    assert len(c.events(fed, rcpt, "BidPlaced")) == 1
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.id, aw.args.provider, aw.args.price) == (sid, p1.address, 5 * PRICE)
    v = service(setup, sid)
    assert v["state"] == AWARDED and v["bidCount"] == 2
    assert v["deadline"] == ts and v["confirmDeadline"] == ts + 300
    c.reverts("WrongState", fed.functions.bid(sid, PRICE, b"x"), p3)
    c.reverts("WrongState", fed.functions.bid(sid, PRICE, b"x"), p2)


def test_lazy_award_winner_confirms_without_award_tx(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    sid, _ = announce(setup, cons, k=5, bidding=120, confirm=300)
    place_bid(setup, p1, sid, 7 * PRICE)
    place_bid(setup, p2, sid, 4 * PRICE)
    assert fed.functions.stateOf(sid).call() == OPEN
    c.advance(121)
    assert fed.functions.stateOf(sid).call() == AWARDED
    v = service(setup, sid)
    assert v["state"] == AWARDED and v["winner"] == p2.address
    assert v["confirmDeadline"] == v["deadline"] + 300
    c.reverts("NotWinner", fed.functions.confirmDeployment(sid, b"e"), p1)
    c.reverts("WrongState", fed.functions.cancel(sid), cons)  # no longer cancellable
    rcpt = c.send(fed.functions.confirmDeployment(sid, seal(cons)), p2)
    (ev,) = c.events(fed, rcpt, "DeploymentConfirmed")
    assert (ev.args.consumer, ev.args.provider) == (cons.address, p2.address)
    assert fed.functions.stateOf(sid).call() == DEPLOYED
    assert fed.functions.credits(p2.address).call() == 4 * PRICE
    assert fed.functions.credits(cons.address).call() == MAXP - 4 * PRICE


def test_explicit_award(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=3, bidding=100)
    empty, _ = announce(setup, cons, k=3, bidding=100)
    place_bid(setup, p1, sid, 3 * PRICE)
    c.reverts("DeadlineNotPassed", fed.functions.award(sid), cons)
    c.reverts("NotConsumer", fed.functions.award(sid), p1)
    c.reverts("UnknownService", fed.functions.award(b"\x02" * 32), cons)
    c.advance(101)
    c.reverts("NotConsumer", fed.functions.award(sid), p1)
    c.reverts("NoBids", fed.functions.award(empty), cons)
    rcpt = c.send(fed.functions.award(sid), cons)
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price, aw.args.consumer) == (
        p1.address,
        3 * PRICE,
        cons.address,
    )
    assert fed.functions.stateOf(sid).call() == AWARDED
    c.reverts("WrongState", fed.functions.award(sid), cons)


def test_consumer_endpoint(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    sid, _ = announce(setup, cons, k=2)
    ep = seal(p1)
    f = fed.functions.sendConsumerEndpoint
    c.reverts("WrongState", f(sid, ep), cons)  # not awarded yet
    place_bid(setup, p1, sid, 2 * PRICE)
    place_bid(setup, p2, sid, 3 * PRICE)
    c.reverts("NotConsumer", f(sid, ep), p1)
    c.reverts("NotConsumer", f(sid, ep), setup.outsider)
    c.reverts("PayloadTooLong", f(sid, b"e" * 257), cons)
    rcpt = c.send(f(sid, ep), cons)
    (ev,) = c.events(fed, rcpt, "ConsumerEndpoint")
    assert (ev.args.id, ev.args.consumer, ev.args.provider) == (sid, cons.address, p1.address)
    assert ev.args.sealedEndpoint == ep
    c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
    c.reverts("WrongState", f(sid, ep), cons)  # deployed


def test_confirm_guards_and_payout(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    sid, _ = announce(setup, cons, k=2, confirm=300)
    conf = fed.functions.confirmDeployment
    c.reverts("WrongState", conf(sid, b"e"), p1)  # Open
    c.reverts("UnknownService", conf(b"\x03" * 32, b"e"), p1)
    place_bid(setup, p1, sid, 4 * PRICE)
    place_bid(setup, p2, sid, 6 * PRICE)
    c.reverts("NotWinner", conf(sid, b"e"), p2)
    c.reverts("NotWinner", conf(sid, b"e"), cons)
    c.reverts("NotMember", conf(sid, b"e"), setup.outsider)
    c.reverts("PayloadTooLong", conf(sid, b"e" * 257), p1)
    # confirm exactly at the confirm deadline is still in time
    c.set_next_timestamp(service(setup, sid)["confirmDeadline"])
    c.send(conf(sid, seal(cons)), p1)
    c.reverts("WrongState", conf(sid, b"e"), p1)
    assert fed.functions.credits(p1.address).call() == 4 * PRICE
    assert fed.functions.credits(cons.address).call() == MAXP - 4 * PRICE
    # winner that left cannot confirm
    sid2, _ = announce(setup, cons, k=1)
    place_bid(setup, p2, sid2, PRICE)
    c.send(fed.functions.leave(), p2)
    c.reverts("NotMember", conf(sid2, b"e"), p2)


def test_confirm_window_over_then_reopen(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3, p4 = setup.members[:5]
    sid, _ = announce(setup, cons, k=3, bidding=600, confirm=300)
    place_bid(setup, p1, sid, 3 * PRICE)
    place_bid(setup, p2, sid, 5 * PRICE)
    place_bid(setup, p3, sid, 6 * PRICE)  # auto award to p1
    c.reverts("DeadlineNotPassed", fed.functions.reopen(sid, 600), cons)
    c.advance(301)
    c.reverts("ConfirmWindowOver", fed.functions.confirmDeployment(sid, b"e"), p1)
    c.reverts("NotConsumer", fed.functions.reopen(sid, 600), p2)
    c.reverts("InvalidWindow", fed.functions.reopen(sid, 0), cons)
    c.reverts("InvalidWindow", fed.functions.reopen(sid, 30 * 86400 + 1), cons)
    c.reverts("UnknownService", fed.functions.reopen(b"\x06" * 32, 600), cons)
    rcpt = c.send(fed.functions.reopen(sid, 600), cons)
    (ev,) = c.events(fed, rcpt, "ServiceReopened")
    assert (ev.args.excluded, ev.args.round, ev.args.consumer) == (p1.address, 1, cons.address)
    v = service(setup, sid)
    assert v["state"] == OPEN and v["round"] == 1 and v["bidCount"] == 0 and v["bestPrice"] == 0
    assert fed.functions.bidOf(sid, p1.address).call() == [3 * PRICE, 0, False, True]
    c.reverts("WrongState", fed.functions.reopen(sid, 600), cons)  # Open again
    bid = fed.functions.bid
    c.reverts("NotEligible", bid(sid, PRICE, b"e"), p1)  # excluded failed winner
    c.reverts("NotEligible", bid(sid, PRICE, b"e"), p4)  # did not bid before
    c.reverts("OwnService", bid(sid, PRICE, b"e"), cons)
    # new round: any price up to max, count restarts; its quorum is the 2 eligible bidders
    assert service(setup, sid)["quorum"] == 2 and service(setup, sid)["k"] == 3
    place_bid(setup, p3, sid, 8 * PRICE)
    c.reverts("BidNotLower", bid(sid, 8 * PRICE, b"e"), p3)
    v = service(setup, sid)
    assert (v["bidCount"], v["winner"], v["state"]) == (1, p3.address, OPEN)
    rcpt = place_bid(setup, p2, sid, 7 * PRICE)  # the last eligible bidder closes the round
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price) == (p2.address, 7 * PRICE)
    ts = c.w3.eth.get_block(rcpt.blockNumber)["timestamp"]
    v = service(setup, sid)
    assert (v["bidCount"], v["state"], v["deadline"], v["confirmDeadline"]) == (
        2,
        AWARDED,
        ts,
        ts + 300,
    )
    c.reverts("WrongState", bid(sid, 6 * PRICE, b"e"), p2)
    c.reverts("NotWinner", fed.functions.confirmDeployment(sid, b"e"), p1)
    c.send(fed.functions.confirmDeployment(sid, b"e"), p2)
    assert fed.functions.credits(p2.address).call() == 7 * PRICE
    assert fed.functions.credits(p1.address).call() == 0
    assert fed.functions.credits(cons.address).call() == MAXP - 7 * PRICE
    # the round-0 history of p1 and p3 is kept
    assert fed.functions.bidOf(sid, p1.address).call() == [3 * PRICE, 0, False, True]
    assert fed.functions.bidOf(sid, p2.address).call() == [7 * PRICE, 1, True, False]
    assert fed.functions.bidOf(sid, p3.address).call() == [8 * PRICE, 1, True, False]


def test_new_round_closes_at_deadline_without_its_quorum(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3 = setup.members[:4]
    sid, _ = announce(setup, cons, k=3, bidding=600, confirm=60)
    for i, p in enumerate((p1, p2, p3)):
        place_bid(setup, p, sid, (3 + i) * PRICE)
    c.advance(61)
    c.send(fed.functions.reopen(sid, 100), cons)
    place_bid(setup, p3, sid, 9 * PRICE)  # 1 of the 2 eligible bidders
    c.advance(101)
    assert fed.functions.stateOf(sid).call() == AWARDED
    v = service(setup, sid)
    assert (v["winner"], v["bestPrice"], v["bidCount"]) == (p3.address, 9 * PRICE, 1)
    c.send(fed.functions.confirmDeployment(sid, b"e"), p3)


def test_reopen_twice_keeps_exclusions(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2, p3 = setup.members[:4]
    sid, _ = announce(setup, cons, k=3, bidding=600, confirm=60)
    place_bid(setup, p1, sid, 1 * PRICE)
    place_bid(setup, p2, sid, 2 * PRICE)
    place_bid(setup, p3, sid, 3 * PRICE)
    c.advance(61)
    c.send(fed.functions.reopen(sid, 600), cons)
    place_bid(setup, p2, sid, 2 * PRICE)
    c.advance(601 + 61)  # lazily awarded to p2, confirm window over
    c.send(fed.functions.reopen(sid, 600), cons)
    c.reverts("NotEligible", fed.functions.bid(sid, PRICE, b"e"), p1)
    c.reverts("NotEligible", fed.functions.bid(sid, PRICE, b"e"), p2)
    assert service(setup, sid)["quorum"] == 1  # p3 is the only eligible bidder left
    # a round-0 bidder that skipped round 1 is still eligible; as the last one it closes
    rcpt = place_bid(setup, p3, sid, 9 * PRICE)
    (aw,) = c.events(fed, rcpt, "ServiceAwarded")
    assert (aw.args.provider, aw.args.price) == (p3.address, 9 * PRICE)
    v = service(setup, sid)
    assert (v["round"], v["state"], v["winner"]) == (2, AWARDED, p3.address)


def test_cancel(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=2, bidding=100)
    c.reverts("NotConsumer", fed.functions.cancel(sid), p1)
    c.reverts("UnknownService", fed.functions.cancel(b"\x04" * 32), cons)
    rcpt = c.send(fed.functions.cancel(sid), cons)
    assert [e.args.id for e in c.events(fed, rcpt, "ServiceCancelled")] == [sid]
    assert fed.functions.stateOf(sid).call() == CANCELLED
    assert fed.functions.credits(cons.address).call() == MAXP
    c.reverts("WrongState", fed.functions.cancel(sid), cons)
    c.reverts("WrongState", fed.functions.bid(sid, PRICE, b"e"), p1)
    # deadline passed without bids: still cancellable
    sid2, _ = announce(setup, cons, k=2, bidding=100)
    c.advance(101)
    assert fed.functions.stateOf(sid2).call() == OPEN
    c.send(fed.functions.cancel(sid2), cons)
    assert fed.functions.credits(cons.address).call() == 2 * MAXP
    # awarded: not cancellable while the winner may still confirm (until its deadline)...
    sid3, _ = announce(setup, cons, k=1, confirm=300)
    place_bid(setup, p1, sid3, PRICE)
    c.reverts("WrongState", fed.functions.cancel(sid3), cons)
    c.set_next_timestamp(service(setup, sid3)["confirmDeadline"])
    c.reverts_mined("WrongState", fed.functions.cancel(sid3), cons)
    # ...but once the confirm deadline passed unconfirmed, the consumer may cancel directly
    # (the same outcome as reopen + cancel, also when no round is left)
    c.advance(1)
    rcpt = c.send(fed.functions.cancel(sid3), cons)
    assert [e.args.id for e in c.events(fed, rcpt, "ServiceCancelled")] == [sid3]
    assert fed.functions.stateOf(sid3).call() == CANCELLED
    assert fed.functions.credits(cons.address).call() == 3 * MAXP
    assert fed.functions.credits(p1.address).call() == 0
    c.reverts("WrongState", fed.functions.confirmDeployment(sid3, b"e"), p1)
    c.reverts("WrongState", fed.functions.reopen(sid3, 60), cons)
    # deployed: not cancellable
    sid4, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid4, PRICE)
    c.send(fed.functions.confirmDeployment(sid4, b"e"), p1)
    c.reverts("WrongState", fed.functions.cancel(sid4), cons)


def test_terminate(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    ids = []
    for _ in range(2):
        sid, _ = announce(setup, cons, k=1)
        c.reverts("WrongState", fed.functions.terminate(sid), cons)  # Open
        place_bid(setup, p1, sid, PRICE)
        c.reverts("WrongState", fed.functions.terminate(sid), p1)  # Awarded
        c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
        ids.append(sid)
    c.reverts("UnknownService", fed.functions.terminate(b"\x05" * 32), cons)
    for sid, who in zip(ids, [cons, p1], strict=True):
        c.reverts("NotParty", fed.functions.terminate(sid), p2)
        c.reverts("NotParty", fed.functions.terminate(sid), setup.outsider)
        rcpt = c.send(fed.functions.terminate(sid), who)
        (ev,) = c.events(fed, rcpt, "ServiceTerminated")
        assert (ev.args.id, ev.args.by) == (sid, who.address)
        assert fed.functions.stateOf(sid).call() == TERMINATED
        c.reverts("WrongState", fed.functions.terminate(sid), who)


def test_non_member_outsider_can_only_read(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    o = setup.outsider
    sid, _ = announce(setup, cons, k=1)
    c.reverts("NotMember", fed.functions.bid(sid, PRICE, b"e"), o)
    c.reverts("NotConsumer", fed.functions.cancel(sid), o)
    c.reverts("NotConsumer", fed.functions.award(sid), o)
    c.reverts("NotConsumer", fed.functions.reopen(sid, 60), o)
    place_bid(setup, p1, sid, PRICE)
    c.reverts("NotConsumer", fed.functions.sendConsumerEndpoint(sid, b"e"), o)
    c.reverts("NotMember", fed.functions.confirmDeployment(sid, b"e"), o)
    c.reverts("NotMember", fed.functions.leave(), o)
    c.reverts("NothingToWithdraw", fed.functions.withdraw(), o)
    stranger = make_actor("stranger")
    c.fund(stranger.address)
    c.reverts("NotAllowed", fed.functions.register("s", stranger.pubkey), stranger)
    assert service(setup, sid)["state"] == AWARDED


def test_limits_view(setup: Setup) -> None:
    assert setup.fed.functions.limits().call() == [64, 1024, 256, 30 * 86400]
