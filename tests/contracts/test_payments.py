"""Escrow, pull payments, withdraw and its re-entrancy guard."""

from __future__ import annotations

from eth_utils import keccak

from .conftest import ETHER, PRICE, Setup, announce, make_actor, place_bid

MAXP = 10 * PRICE
BOND = MAXP // 10


def test_withdraw_pays_credits_once(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    c.reverts("NothingToWithdraw", fed.functions.withdraw(), p1)
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, 4 * PRICE)
    c.rpc("evm_mine")
    c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
    c.send(fed.functions.acknowledge(sid), cons)
    assert c.balance(fed.address) == MAXP + BOND
    for who, amount in [(p1, 4 * PRICE + BOND), (cons, MAXP - 4 * PRICE)]:
        before = c.balance(who.address)
        rcpt = c.send(fed.functions.withdraw(), who)
        fee = rcpt.gasUsed * rcpt.effectiveGasPrice
        assert c.balance(who.address) == before + amount - fee
        (ev,) = c.events(fed, rcpt, "Withdrawn")
        assert (ev.args.account, ev.args.amount) == (who.address, amount)
        assert fed.functions.credits(who.address).call() == 0
        c.reverts("NothingToWithdraw", fed.functions.withdraw(), who)
    assert c.balance(fed.address) == 0


def test_full_price_bid_leaves_no_refund_and_cancel_refunds(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, MAXP)
    c.rpc("evm_mine")
    c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
    c.send(fed.functions.acknowledge(sid), cons)
    assert fed.functions.credits(cons.address).call() == 0
    assert fed.functions.credits(p1.address).call() == MAXP + BOND
    sid2, _ = announce(setup, cons, k=1)
    c.send(fed.functions.cancel(sid2), cons)
    before = c.balance(cons.address)
    rcpt = c.send(fed.functions.withdraw(), cons)
    assert c.balance(cons.address) == before + MAXP - rcpt.gasUsed * rcpt.effectiveGasPrice


def test_left_member_can_still_withdraw(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    cons, p1 = setup.members[:2]
    sid, _ = announce(setup, cons, k=1)
    place_bid(setup, p1, sid, PRICE)
    c.rpc("evm_mine")
    c.send(fed.functions.confirmDeployment(sid, b"e"), p1)
    c.send(fed.functions.acknowledge(sid), cons)
    c.send(fed.functions.leave(), p1)
    c.send(fed.functions.withdraw(), p1)
    assert fed.functions.credits(p1.address).call() == 0


def _harness(setup: Setup, swallow: bool):  # type: ignore[no-untyped-def]
    c = setup.chain
    harness = c.deploy("FederationHarness", 0, [])
    attacker = c.deploy("ReentrantWithdrawer", harness.address, swallow)
    victim = make_actor("victim")  # an honest creditor whose money must stay safe
    c.fund(victim.address)
    c.send(harness.functions.fundCredit(attacker.address), victim, value=ETHER)
    c.send(harness.functions.fundCredit(victim.address), victim, value=2 * ETHER)
    return harness, attacker


def test_reentrant_withdraw_reverts_whole_withdrawal(setup: Setup) -> None:
    c = setup.chain
    harness, attacker = _harness(setup, swallow=False)
    c.reverts("TransferFailed", attacker.functions.attack(), setup.outsider)
    assert harness.functions.credits(attacker.address).call() == ETHER
    assert c.balance(harness.address) == 3 * ETHER
    assert c.balance(attacker.address) == 0


def test_reentrant_withdraw_cannot_double_withdraw(setup: Setup) -> None:
    c = setup.chain
    harness, attacker = _harness(setup, swallow=True)
    c.send(attacker.functions.attack(), setup.outsider)
    assert attacker.functions.reentries().call() == 1
    assert attacker.functions.received().call() == ETHER
    assert c.balance(attacker.address) == ETHER
    assert c.balance(harness.address) == 2 * ETHER
    assert harness.functions.credits(attacker.address).call() == 0
    assert attacker.functions.lastError().call() == keccak(text="Reentrancy()")[:4]
    c.reverts("NothingToWithdraw", attacker.functions.attack(), setup.outsider)
