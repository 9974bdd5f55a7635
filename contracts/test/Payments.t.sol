// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationFixture} from "./utils/Fixture.sol";
import {Federation} from "../Federation.sol";
import {FederationHarness} from "./FederationHarness.sol";
import {ReentrantWithdrawer, IWithdraw} from "./ReentrantWithdrawer.sol";

/// @dev Fuzz tests of withdraw (pull payments, re-entrancy guard) and of the escrow paths.
contract PaymentsFuzzTest is FederationFixture {
    function testFuzz_withdraw(uint96 price, uint256 callerSeed, bool leaveFirst) public {
        price = uint96(bound(price, 1, MAXP));
        bytes32 id = _announce(members[0], MAXP, 1, 600);
        _bid(members[1], id, price);
        _nextBlock();
        vm.prank(members[1]);
        fed.confirmDeployment(id, "");
        vm.prank(members[0]);
        fed.acknowledge(id);
        uint256 bond = _bond(id);
        address caller = _caller(callerSeed);
        uint256 credit = caller == members[1] ? price + bond : caller == members[0] ? MAXP - price : 0;
        if (leaveFirst && _isMember(caller)) {
            vm.prank(caller);
            fed.leave(); // a member that left can still withdraw
        }
        uint256 before = caller.balance;
        if (credit == 0) {
            _expect(Federation.NothingToWithdraw.selector);
            vm.prank(caller);
            fed.withdraw();
            return;
        }
        vm.expectEmit(true, false, false, true, address(fed));
        emit Federation.Withdrawn(caller, credit);
        vm.prank(caller);
        fed.withdraw();
        assertEq(caller.balance, before + credit, "paid out");
        assertEq(fed.credits(caller), 0, "credit spent");
        assertEq(address(fed).balance, MAXP + bond - credit, "rest stays");
        _expect(Federation.NothingToWithdraw.selector);
        vm.prank(caller);
        fed.withdraw();
    }

    function testFuzz_withdraw_reentrancy(uint96 amount, uint96 other, bool swallow) public {
        amount = uint96(bound(amount, 1, 1000 ether));
        other = uint96(bound(other, 0, 1000 ether));
        FederationHarness h = new FederationHarness(Federation.Policy.ALLOWLIST, new address[](0));
        ReentrantWithdrawer attacker = new ReentrantWithdrawer(IWithdraw(address(h)), swallow);
        vm.deal(address(this), uint256(amount) + other);
        h.fundCredit{value: amount}(address(attacker));
        if (other != 0) h.fundCredit{value: other}(OUTSIDER); // an honest creditor
        if (!swallow) {
            // the re-entrant call fails with Reentrancy, so the transfer fails: all reverts
            _expect(Federation.TransferFailed.selector);
            attacker.attack();
            assertEq(h.credits(address(attacker)), amount, "credit kept");
            assertEq(address(h).balance, uint256(amount) + other, "nothing left");
            return;
        }
        attacker.attack();
        assertEq(attacker.reentries(), 1, "re-entered once");
        assertEq(attacker.received(), amount, "paid once");
        assertEq(bytes32(attacker.lastError()), bytes32(Federation.Reentrancy.selector), "Reentrancy");
        assertEq(h.credits(address(attacker)), 0, "credit spent");
        assertEq(address(h).balance, other, "the other creditor's money is intact");
        _expect(Federation.NothingToWithdraw.selector);
        attacker.attack();
    }

    /// A creditor that refuses ether keeps its credit (TransferFailed), nothing else changes.
    function testFuzz_withdraw_to_rejecting_contract(uint96 amount) public {
        amount = uint96(bound(amount, 1, 1000 ether));
        FederationHarness h = new FederationHarness(Federation.Policy.ALLOWLIST, new address[](0));
        vm.deal(address(this), amount);
        h.fundCredit{value: amount}(address(this)); // this test contract has no receive()
        _expect(Federation.TransferFailed.selector);
        h.withdraw();
        assertEq(h.credits(address(this)), amount, "credit kept");
    }

    /// Every escrow path ends with the consumer's and the winner's credits adding up to
    /// maxPrice + the bond.
    function testFuzz_escrow_is_conserved(uint96 maxPrice, uint96 price, uint256 path) public {
        maxPrice = uint96(bound(maxPrice, 1, 1e30));
        price = uint96(bound(price, 1, maxPrice));
        path = path % 5; // 0 acknowledge, 1 cancel open, 2 cancel after failed winner, 3 reopen+cancel,
        // 4 complaint
        bytes32 id = _announce(members[0], maxPrice, path == 1 ? 2 : 1, 600);
        uint256 bond = _bond(id);
        _bid(members[1], id, price);
        _nextBlock();
        if (path != 1) {
            vm.prank(members[0]);
            fed.sendConsumerEndpoint(id, "");
        }
        if (path == 0 || path == 4) {
            vm.prank(members[1]);
            fed.confirmDeployment(id, "");
            vm.prank(members[0]);
            if (path == 0) fed.acknowledge(id);
            else fed.terminate(id);
        } else {
            if (path >= 2) vm.warp(fed.serviceOf(id).confirmDeadline + 1);
            if (path == 3) {
                vm.prank(members[0]);
                fed.reopen(id, 60);
            }
            vm.prank(members[0]);
            fed.cancel(id);
            if (path == 1) {
                vm.prank(members[1]);
                fed.reclaimBond(id);
            }
        }
        uint256 toWinner = path == 0 ? price + bond : path == 1 || path == 4 ? bond : 0;
        uint256 toConsumer = maxPrice + bond - toWinner;
        assertEq(fed.credits(members[1]), toWinner, "winner");
        assertEq(fed.credits(members[0]), toConsumer, "consumer");
        assertEq(address(fed).balance, maxPrice + bond, "held until withdrawn");
        if (toConsumer != 0) {
            vm.prank(members[0]);
            fed.withdraw();
        }
        if (toWinner != 0) {
            vm.prank(members[1]);
            fed.withdraw();
        }
        assertEq(address(fed).balance, 0, "all paid out");
    }
}
