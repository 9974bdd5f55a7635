"""Membership: registration with key binding, allowlist and majority admission, leave."""

from __future__ import annotations

from .conftest import ALLOWLIST, MAJORITY, Setup, make_actor


def test_registered_members_and_keys(setup: Setup) -> None:
    fed = setup.fed
    m = setup.members[0]
    assert fed.functions.isMember(m.address).call()
    assert fed.functions.memberKey(m.address).call() == m.pubkey
    assert fed.functions.memberName(m.address).call() == "mef-m0"
    assert fed.functions.totalMembers().call() == 8
    assert fed.functions.membershipPolicy().call() == ALLOWLIST
    assert fed.functions.admin().call() == setup.admin.address
    assert not fed.functions.isMember(setup.outsider.address).call()
    assert fed.functions.memberKey(setup.outsider.address).call() == b""


def test_register_event_and_allowlist(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    new = make_actor("newcomer")
    c.fund(new.address)
    c.reverts("NotAllowed", fed.functions.register("mef-new", new.pubkey), new)
    c.reverts("NotAdmin", fed.functions.allow(new.address), setup.members[0])
    c.reverts("WrongPolicy", fed.functions.approve(new.address), setup.members[0])
    c.send(fed.functions.allow(new.address), setup.admin)
    assert fed.functions.isAllowed(new.address).call()
    rcpt = c.send(fed.functions.register("mef-new", new.pubkey), new)
    (ev,) = c.events(fed, rcpt, "MemberJoined")
    assert (ev.args.member, ev.args.name, ev.args.pubkey) == (new.address, "mef-new", new.pubkey)
    assert fed.functions.totalMembers().call() == 9
    c.reverts("AlreadyMember", fed.functions.register("again", new.pubkey), new)


def test_register_rejects_foreign_or_malformed_key(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    new = make_actor("newcomer")
    c.fund(new.address)
    c.send(fed.functions.allow(new.address), setup.admin)
    other = setup.members[1]
    # somebody else's key: the sender could not decrypt what is sealed to it
    c.reverts("BadPublicKey", fed.functions.register("mef-new", other.pubkey), new)
    c.reverts("BadPublicKey", fed.functions.register("mef-new", b"\x04" + new.pubkey), new)
    c.reverts("BadPublicKey", fed.functions.register("mef-new", new.pubkey[:63]), new)
    c.reverts("BadPublicKey", fed.functions.register("mef-new", b""), new)
    c.reverts("BadName", fed.functions.register("", new.pubkey), new)
    c.reverts("BadName", fed.functions.register("x" * 65, new.pubkey), new)
    c.send(fed.functions.register("x" * 64, new.pubkey), new)
    assert fed.functions.isMember(new.address).call()


def test_disallow_revokes_member(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    victim = setup.members[7]
    c.reverts("NotAdmin", fed.functions.disallow(victim.address), setup.members[0])
    rcpt = c.send(fed.functions.disallow(victim.address), setup.admin)
    assert [e.args.member for e in c.events(fed, rcpt, "MemberLeft")] == [victim.address]
    assert not fed.functions.isMember(victim.address).call()
    c.reverts("NotAllowed", fed.functions.register("back", victim.pubkey), victim)


def test_leave(setup: Setup) -> None:
    c, fed = setup.chain, setup.fed
    m = setup.members[3]
    c.reverts("NotMember", fed.functions.leave(), setup.outsider)
    rcpt = c.send(fed.functions.leave(), m)
    assert [e.args.member for e in c.events(fed, rcpt, "MemberLeft")] == [m.address]
    assert not fed.functions.isMember(m.address).call()
    assert fed.functions.memberKey(m.address).call() == b""
    assert fed.functions.totalMembers().call() == 7
    c.reverts("NotMember", fed.functions.leave(), m)
    c.reverts("NotMember", fed.functions.announce(1, 1, 60, 60, 60, 60, b""), m, value=1)
    # ALLOWLIST: still on the list, so it may come back
    c.send(fed.functions.register("mef-m3", m.pubkey), m)
    assert fed.functions.isMember(m.address).call()


def test_majority_admission(setup: Setup) -> None:
    c = setup.chain
    founders = [make_actor(f"f{i}") for i in range(3)]
    newcomer, late = make_actor("applicant"), make_actor("late")
    for a in [*founders, newcomer, late]:
        c.fund(a.address)
    fed = c.deploy(None, MAJORITY, [f.address for f in founders])
    assert fed.functions.membershipPolicy().call() == MAJORITY
    for f in founders:
        c.send(fed.functions.register(f"mef-{f.name}", f.pubkey), f)
    assert fed.functions.totalMembers().call() == 3
    c.reverts("WrongPolicy", fed.functions.allow(newcomer.address), c.deployer)
    c.reverts("WrongPolicy", fed.functions.disallow(founders[0].address), c.deployer)
    c.reverts("NotApplicant", fed.functions.approve(newcomer.address), founders[0])
    c.reverts("AlreadyMember", fed.functions.approve(founders[1].address), founders[0])

    rcpt = c.send(fed.functions.register("mef-applicant", newcomer.pubkey), newcomer)
    (ev,) = c.events(fed, rcpt, "MemberApplied")
    assert ev.args.applicant == newcomer.address and ev.args.pubkey == newcomer.pubkey
    assert not fed.functions.isMember(newcomer.address).call()
    c.reverts("NotMember", fed.functions.announce(1, 1, 60, 60, 60, 60, b""), newcomer, value=1)
    c.reverts("NotMember", fed.functions.approve(newcomer.address), late)  # non-member approver
    c.reverts("NotMember", fed.functions.approve(newcomer.address), newcomer)  # self-approval

    c.send(fed.functions.approve(newcomer.address), founders[0])  # 1 of 3: not > 1.5
    assert fed.functions.applicationStatus(newcomer.address).call() == [True, 1]
    assert not fed.functions.isMember(newcomer.address).call()
    c.reverts("AlreadyApproved", fed.functions.approve(newcomer.address), founders[0])
    rcpt = c.send(fed.functions.approve(newcomer.address), founders[1])  # 2 of 3 > 1.5
    (joined,) = c.events(fed, rcpt, "MemberJoined")
    assert joined.args.member == newcomer.address and joined.args.name == "mef-applicant"
    assert fed.functions.isMember(newcomer.address).call()
    assert fed.functions.totalMembers().call() == 4
    c.reverts("AlreadyMember", fed.functions.approve(newcomer.address), founders[2])

    # now 4 members: 3 approvals needed (2*2 = 4 is not > 4)
    c.send(fed.functions.register("mef-late", late.pubkey), late)
    c.send(fed.functions.approve(late.address), founders[0])
    c.send(fed.functions.approve(late.address), newcomer)
    assert not fed.functions.isMember(late.address).call()
    c.send(fed.functions.approve(late.address), founders[2])
    assert fed.functions.isMember(late.address).call()

    # leaving under MAJORITY: coming back needs a fresh majority; stale approvals do not count
    c.send(fed.functions.leave(), late)
    assert fed.functions.totalMembers().call() == 4
    c.send(fed.functions.register("mef-late", late.pubkey), late)
    assert not fed.functions.isMember(late.address).call()
    assert fed.functions.applicationStatus(late.address).call() == [True, 0]
    c.send(fed.functions.approve(late.address), founders[0])  # approved the old application too
    c.send(fed.functions.approve(late.address), founders[1])
    assert not fed.functions.isMember(late.address).call()
    c.send(fed.functions.approve(late.address), founders[2])
    assert fed.functions.isMember(late.address).call()
