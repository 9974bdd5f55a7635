"""Gas budget, measured on anvil with realistic payloads and asserted. Run with -s to see the table.

Payloads: sealed endpoints as the MEF produces them (mecfed/chain/sealing.py: compact ECIES of
`MEF_ENDPOINT`, 94 bytes), exactly 100 random bytes, and eciespy's default format (111 bytes);
requirements ~150 bytes (app spec + W3C traceparent).

Budgets (contracts/README.md): every bid <= 75k (first, k-th closing, re-bid) and a whole
federation (announce + 2 bids + sendConsumerEndpoint + confirmDeployment + acknowledge) <= 400k,
for each payload. A first bid costs at least 21,000 intrinsic + ~2.3k calldata + 4 cold slot reads
(member, service head, auction word, bid slot: 8,400) + the fresh (service, provider) bid slot
(20,000) + rewriting the auction word (2,900) + LOG4 with the sealed endpoint (~3.4-3.7k) =
~58k; the plain-Solidity body (dispatch, ABI decoding, struct (un)packing) adds ~3-4k.
"""

from __future__ import annotations

import os

from .conftest import MEF_ENDPOINT, PRICE, REQ, Setup, announce, bond_due, make_actor, seal

BID_BUDGET = 75_000  # every bid: first, k-th (auto-award), re-bid; any payload above
FEDERATION_BUDGET = 400_000  # announce + 2 bids + order + confirm + acknowledge
BIDS = (
    "bid: first",
    "bid: k-th, closing, winner elsewhere",
    "bid: k-th, closing, bidder is best",
    "bid: re-bid lower",
)
BLOCK = 16_000_000


def _federation(setup: Setup, payload) -> dict[str, int]:  # type: ignore[no-untyped-def]
    c, fed = setup.chain, setup.fed
    cons, p1, p2 = setup.members[:3]
    sid, rcpt_a = announce(setup, cons, max_price=10 * PRICE, k=2)
    r_b1 = place(setup, p1, sid, 4 * PRICE + 12345, payload(cons))
    r_b2 = place(setup, p2, sid, 5 * PRICE + 54321, payload(cons))  # k-th: closing
    assert c.events(fed, r_b2, "ServiceClosing")
    c.rpc("evm_mine")  # the closing block ends (anvil runs calls in the latest block)
    r_ce = c.send(fed.functions.sendConsumerEndpoint(sid, payload(p1)), cons)
    r_cf = c.send(fed.functions.confirmDeployment(sid, payload(cons)), p1)
    r_ack = c.send(fed.functions.acknowledge(sid), cons)
    r_rc = c.send(fed.functions.reclaimBond(sid), p2)  # the loser's bond
    # k-th bid that is also the new best; a strictly lower re-bid
    sid2, _ = announce(setup, cons, max_price=10 * PRICE, k=2)
    place(setup, p1, sid2, 5 * PRICE + 1, payload(cons))
    r_b2best = place(setup, p2, sid2, 4 * PRICE + 1, payload(cons))
    c.rpc("evm_mine")
    sid3, _ = announce(setup, cons, max_price=10 * PRICE, k=3)
    place(setup, p1, sid3, 5 * PRICE + 1, payload(cons))
    r_rebid = place(setup, p1, sid3, 4 * PRICE + 1, payload(cons))
    r_wd = c.send(fed.functions.withdraw(), p1)
    # the winner of sid2 (p2) declines: new round; then the consumer cancels it
    r_decline = c.send(fed.functions.decline(sid2), p2)
    r_cancel = c.send(fed.functions.cancel(sid2), cons)
    g = {
        "announce (150-byte requirements)": rcpt_a.gasUsed,
        "bid: first": r_b1.gasUsed,
        "bid: k-th, closing, winner elsewhere": r_b2.gasUsed,
        "bid: k-th, closing, bidder is best": r_b2best.gasUsed,
        "bid: re-bid lower": r_rebid.gasUsed,
        "sendConsumerEndpoint": r_ce.gasUsed,
        "confirmDeployment": r_cf.gasUsed,
        "acknowledge": r_ack.gasUsed,
        "reclaimBond": r_rc.gasUsed,
        "withdraw": r_wd.gasUsed,
        "decline (winner; new round)": r_decline.gasUsed,
        "cancel": r_cancel.gasUsed,
    }
    g["FEDERATION (announce+2 bids+CE+confirm+ack)"] = (
        g["announce (150-byte requirements)"]
        + g["bid: first"]
        + g["bid: k-th, closing, winner elsewhere"]
        + g["sendConsumerEndpoint"]
        + g["confirmDeployment"]
        + g["acknowledge"]
    )
    return g


def place(setup: Setup, provider, sid: bytes, price: int, sealed: bytes):  # type: ignore[no-untyped-def]
    return setup.chain.send(
        setup.fed.functions.bid(sid, price, sealed), provider, value=bond_due(setup, provider, sid)
    )


def test_gas_federation_with_two_bids(setup: Setup) -> None:
    assert 100 <= len(REQ) <= 200
    payloads = {
        "mef94": lambda who: seal(who, MEF_ENDPOINT, compact=True),
        "raw100": lambda who: os.urandom(100),
        "ecies111": lambda who: seal(who, b"10.0.0.11:50051"),
    }
    assert len(payloads["mef94"](setup.members[0])) == 94
    assert len(payloads["ecies111"](setup.members[0])) == 112
    results = {}
    for name, payload in payloads.items():
        snap = setup.chain.rpc("evm_snapshot")
        results[name] = _federation(setup, payload)
        setup.chain.rpc("evm_revert", [snap])
    print("\n  gas used (tx gasUsed)" + "".join(f"{n:>10s}" for n in results))
    for row in results["mef94"]:
        print(f"  {row:42s}" + "".join(f"{r[row]:>10,}" for r in results.values()))
    for name, r in results.items():
        for row in BIDS:
            assert r[row] <= BID_BUDGET, (name, row, r[row])
        total = r["FEDERATION (announce+2 bids+CE+confirm+ack)"]
        assert total <= FEDERATION_BUDGET, (name, total)


def test_gas_round_of_24_announcements_fits_one_block(setup: Setup) -> None:
    """24 consumers each announce (k=6) and receive 6 bids; the sum must fit a 16M block."""
    c, fed = setup.chain, setup.fed
    actors = list(setup.members)
    for i in range(24 + 6 - len(actors)):
        a = make_actor(f"round-{i}")
        c.fund(a.address)
        c.send(fed.functions.allow(a.address), setup.admin)
        c.send(fed.functions.register(f"mef-r{i}", a.pubkey), a)
        actors.append(a)
    consumers = actors[:24]
    sids = []
    total_announce = total_bids = 0
    for cons in consumers:
        sid, rcpt = announce(setup, cons, max_price=10 * PRICE, k=6)
        total_announce += rcpt.gasUsed
        sids.append(sid)
    max_bid = 0
    for i, (cons, sid) in enumerate(zip(consumers, sids, strict=True)):
        providers = [a for a in actors if a is not cons][i % 7 : i % 7 + 6]
        sealed = seal(cons, MEF_ENDPOINT, compact=True)
        for j, p in enumerate(providers):
            rcpt = place(setup, p, sid, (9 - j) * PRICE + i, sealed)
            total_bids += rcpt.gasUsed
            max_bid = max(max_bid, rcpt.gasUsed)
        c.rpc("evm_mine")
        assert fed.functions.stateOf(sid).call() == 2  # closed by the 6th bid (next block)
    total = total_announce + total_bids
    print(
        f"\n  round: 24 announce {total_announce:,} + 144 bids {total_bids:,} = {total:,} gas "
        f"({100 * total / BLOCK:.1f}% of a 16M block; max single bid {max_bid:,})"
    )
    assert total <= BLOCK
