// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationFixture} from "./utils/Fixture.sol";
import {Federation} from "../Federation.sol";

/// @dev Fuzz tests of the membership functions and views: allow, disallow, register, approve,
///      leave, isMember, isAllowed, memberKey, memberName, applicationStatus, nonceOf, credits,
///      limits, totalMembers, admin, membershipPolicy.
contract MembershipFuzzTest is FederationFixture {
    function _majority(uint256 founders) internal returns (Federation maj) {
        address[] memory initial = new address[](founders);
        for (uint256 i = 0; i < founders; ++i) initial[i] = members[i];
        maj = _deployFederation(Federation.Policy.MAJORITY, initial);
        for (uint256 i = 0; i < founders; ++i) {
            vm.prank(members[i]);
            maj.register("founder", pubkeyOf[members[i]]);
        }
    }

    function testFuzz_allow(uint256 callerSeed, address account) public {
        address caller = callerSeed % 3 == 0 ? address(this) : _caller(callerSeed);
        if (caller != address(this)) {
            _expect(Federation.NotAdmin.selector);
            vm.prank(caller);
            fed.allow(account);
            return;
        }
        fed.allow(account);
        assertTrue(fed.isAllowed(account), "allowed");
        assertEq(fed.isMember(account), _isMember(account), "allow does not admit");
        Federation maj = _majority(1);
        _expect(Federation.WrongPolicy.selector);
        maj.allow(account);
    }

    function testFuzz_disallow(uint256 callerSeed, uint256 idx) public {
        address victim = members[idx % N];
        address caller = callerSeed % 3 == 0 ? address(this) : _caller(callerSeed);
        if (caller != address(this)) {
            _expect(Federation.NotAdmin.selector);
            vm.prank(caller);
            fed.disallow(victim);
            assertTrue(fed.isMember(victim), "still a member");
            return;
        }
        fed.disallow(victim);
        assertTrue(!fed.isMember(victim) && !fed.isAllowed(victim), "removed");
        assertEq(fed.totalMembers(), N - 1, "totalMembers");
        assertEq(fed.memberKey(victim), "", "key hidden");
        assertEq(fed.memberName(victim), "", "name hidden");
        _expect(Federation.NotAllowed.selector);
        vm.prank(victim);
        fed.register("back", pubkeyOf[victim]);
        fed.disallow(victim); // idempotent on a non-member
        assertEq(fed.totalMembers(), N - 1, "totalMembers unchanged");
        Federation maj = _majority(1);
        _expect(Federation.WrongPolicy.selector);
        maj.disallow(victim);
    }

    function testFuzz_register(uint256 keySeed, uint256 nameLen, bool allowFirst) public {
        (address a, bytes memory key) = _wallet(keySeed);
        vm.assume(!_isMember(a));
        nameLen = bound(nameLen, 0, 80);
        bytes memory name = new bytes(nameLen);
        for (uint256 i = 0; i < nameLen; ++i) name[i] = "n";
        if (allowFirst) fed.allow(a);
        vm.prank(a);
        if (nameLen == 0 || nameLen > 64) {
            _expect(Federation.BadName.selector);
            fed.register(string(name), key);
            return;
        }
        if (!allowFirst) {
            _expect(Federation.NotAllowed.selector);
            fed.register(string(name), key);
            return;
        }
        vm.expectEmit(true, false, false, true, address(fed));
        emit Federation.MemberJoined(a, string(name), key);
        fed.register(string(name), key);
        assertTrue(fed.isMember(a), "member");
        assertEq(fed.totalMembers(), N + 1, "totalMembers");
        assertEq(fed.memberKey(a), key, "key");
        assertEq(fed.memberName(a), string(name), "name");
        assertEq(fed.credits(a), 0, "no credit");
        _expect(Federation.AlreadyMember.selector);
        vm.prank(a);
        fed.register("again", key);
    }

    function testFuzz_register_rejectsForeignOrMalformedKey(uint256 seedA, uint256 seedB, bytes memory junk)
        public
    {
        (address a,) = _wallet(seedA);
        (address b, bytes memory keyB) = _wallet(seedB);
        vm.assume(a != b);
        fed.allow(a);
        _expect(Federation.BadPublicKey.selector);
        vm.prank(a);
        fed.register("a", keyB); // somebody else's key: could not decrypt what is sealed to it
        vm.assume(junk.length != 64 || address(uint160(uint256(keccak256(junk)))) != a);
        _expect(Federation.BadPublicKey.selector);
        vm.prank(a);
        fed.register("a", junk);
        assertTrue(!fed.isMember(a), "not admitted");
    }

    function testFuzz_approve(uint256 founders, uint256 keySeed, uint256 approvers) public {
        founders = bound(founders, 1, N);
        approvers = bound(approvers, 0, founders);
        Federation maj = _majority(founders);
        (address app, bytes memory key) = _wallet(keySeed);
        vm.assume(!_isMember(app));
        _expect(Federation.NotApplicant.selector);
        vm.prank(members[0]);
        maj.approve(app);
        vm.prank(app);
        maj.register("applicant", key);
        (bool pending, uint32 approvals) = maj.applicationStatus(app);
        assertTrue(pending && approvals == 0 && !maj.isMember(app), "pending");
        _expect(Federation.NotMember.selector);
        vm.prank(OUTSIDER);
        maj.approve(app);
        uint256 needed = founders / 2 + 1; // approvals * 2 > totalMembers
        for (uint256 i = 0; i < approvers; ++i) {
            if (i == needed) {
                _expect(Federation.AlreadyMember.selector);
                vm.prank(members[i]);
                maj.approve(app);
                break;
            }
            vm.prank(members[i]);
            maj.approve(app);
            if (i + 1 < needed) {
                _expect(Federation.AlreadyApproved.selector);
                vm.prank(members[i]);
                maj.approve(app);
            }
        }
        bool admitted = approvers >= needed;
        assertEq(maj.isMember(app), admitted, "admitted iff a majority approved");
        assertEq(maj.totalMembers(), founders + (admitted ? 1 : 0), "totalMembers");
        if (!admitted) return;
        (pending,) = maj.applicationStatus(app);
        assertTrue(!pending && maj.isAllowed(app), "admitted");
        // leaving under MAJORITY drops the admission: re-registering is a new application
        vm.prank(app);
        maj.leave();
        assertTrue(!maj.isAllowed(app), "not allowed after leaving");
        vm.prank(app);
        maj.register("again", key);
        (pending, approvals) = maj.applicationStatus(app);
        assertTrue(pending && approvals == 0, "new application");
        vm.prank(members[0]);
        maj.approve(app); // the earlier approval does not count for the new application
        (, approvals) = maj.applicationStatus(app);
        assertEq(approvals, 1, "approvals restart");
        _expect(Federation.WrongPolicy.selector);
        fed.approve(app);
    }

    function testFuzz_leave(uint256 callerSeed) public {
        address caller = _caller(callerSeed);
        if (!_isMember(caller)) {
            _expect(Federation.NotMember.selector);
            vm.prank(caller);
            fed.leave();
            return;
        }
        vm.expectEmit(true, false, false, false, address(fed));
        emit Federation.MemberLeft(caller);
        vm.prank(caller);
        fed.leave();
        assertTrue(!fed.isMember(caller) && fed.isAllowed(caller), "left, still allowed");
        assertEq(fed.totalMembers(), N - 1, "totalMembers");
        _expect(Federation.NotMember.selector);
        vm.prank(caller);
        fed.leave();
        _expect(Federation.NotMember.selector);
        vm.prank(caller);
        fed.announce{value: 1}(1, 1, 60, 60, 60, 60, "");
        // ALLOWLIST: an allowed member may come back
        vm.prank(caller);
        fed.register("back", pubkeyOf[caller]);
        assertTrue(fed.isMember(caller), "back");
        assertEq(fed.totalMembers(), N, "totalMembers back");
    }

    function testFuzz_views_of_non_members(address a) public view {
        vm.assume(!_isMember(a));
        assertTrue(!fed.isMember(a) && !fed.isAllowed(a), "not a member");
        assertEq(fed.memberKey(a), "", "no key");
        assertEq(fed.memberName(a), "", "no name");
        (bool pending, uint32 approvals) = fed.applicationStatus(a);
        assertTrue(!pending && approvals == 0, "no application");
        assertEq(fed.nonceOf(a), 0, "nonce");
        assertEq(fed.credits(a), 0, "credits");
        uint256[13] memory l = fed.limits();
        assertTrue(l[0] == 64 && l[1] == 1024 && l[2] == 256 && l[3] == 255, "limits");
        assertTrue(l[4] == 2 && l[5] == 1 days && l[6] == 10 && l[7] == 1 days, "window limits");
        assertTrue(l[8] == 30 && l[9] == 1 days && l[10] == 30 && l[11] == 30 days, "window limits");
        assertEq(l[12], 10, "bond divisor");
        assertEq(fed.admin(), address(this), "admin");
        assertTrue(fed.membershipPolicy() == Federation.Policy.ALLOWLIST, "policy");
        assertEq(fed.totalMembers(), N, "totalMembers");
    }

    function testFuzz_views_of_members(uint256 idx) public view {
        address a = members[idx % N];
        assertTrue(fed.isMember(a) && fed.isAllowed(a), "member");
        assertEq(fed.memberKey(a), pubkeyOf[a], "key");
        assertEq(fed.memberName(a), string.concat("mef-", vm.toString(idx % N)), "name");
    }

    /// Issue 10: votes of members who have since left must not count. 7 founders, 3 of them
    /// colluders who approve their applicant; honest members leaving (and colluders leaving
    /// after voting) shrink the federation, but the colluders' stale votes never admit it.
    function test_majority_votes_of_leavers_do_not_count() public {
        Federation maj = _majority(6); // members[0..5]
        (address seventh, bytes memory k7) = _wallet(uint256(keccak256("seventh")));
        vm.prank(seventh);
        maj.register("founder-7", k7); // not a founder of _majority: apply and get admitted
        for (uint256 i = 0; i < 4; ++i) {
            vm.prank(members[i]);
            maj.approve(seventh);
        }
        assertEq(maj.totalMembers(), 7, "7 members");
        // colluders: members[0..2]; honest: members[3..5], seventh
        (address sybil, bytes memory ks) = _wallet(uint256(keccak256("sybil")));
        vm.prank(sybil);
        maj.register("sybil", ks);
        for (uint256 i = 0; i < 3; ++i) {
            vm.prank(members[i]);
            maj.approve(sybil);
        }
        (, uint32 approvals) = maj.applicationStatus(sybil);
        assertEq(approvals, 3, "3 of 7: no majority");
        // two colluders leave after voting, two honest members leave: 3 members remain
        vm.prank(members[1]);
        maj.leave();
        vm.prank(members[2]);
        maj.leave();
        vm.prank(members[3]);
        maj.leave();
        assertEq(maj.totalMembers(), 4, "4 members");
        (, approvals) = maj.applicationStatus(sybil);
        assertEq(approvals, 0, "the count restarted with the membership change");
        // one honest vote: with the stale votes this was 4 of 4, now it is 1 of 4
        vm.prank(members[4]);
        maj.approve(sybil);
        assertTrue(!maj.isMember(sybil), "not admitted by stale votes");
        // the remaining colluder votes again in the new epoch: 2 of 4 is still no majority
        vm.prank(members[0]);
        maj.approve(sybil);
        assertTrue(!maj.isMember(sybil), "2 of 4 is no majority");
        vm.prank(seventh);
        maj.approve(sybil); // a real majority of the current members: 3 of 4
        assertTrue(maj.isMember(sybil), "admitted by a current majority");
    }
}
