// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationFixture} from "./utils/Fixture.sol";
import {Federation} from "../Federation.sol";

/// @dev The auction's rules, one test per weakness class of issue 10 (windows and the order
///      deadline, a bid at the largest price, deadlines at the uint40 boundary, bonds and k = 1
///      griefing, bids in the closing block, payment only after acknowledgement), plus guards.
contract MarketTest is FederationFixture {
    uint32 internal constant BW = 100;

    // ------------------------------------------------------------------ windows

    /// Every window and k is bounded at announce time; the event carries the windows and bond.
    function testFuzz_announce_bounds(uint32 bw, uint32 ow, uint32 dw, uint32 cw, uint16 k) public {
        address c = members[0];
        vm.deal(c, c.balance + MAXP);
        bool ok = bw >= 2 && bw <= 1 days && ow >= 10 && ow <= 1 days && dw >= 30 && dw <= 1 days
            && cw >= 30 && cw <= 30 days;
        bool kOk = k >= 1 && k <= 255;
        if (!kOk) _expect(Federation.InvalidK.selector);
        else if (!ok) _expect(Federation.InvalidWindow.selector);
        else {
            vm.expectEmit(false, true, false, true, address(fed));
            emit Federation.ServiceAnnounced(
                bytes32(0), c, MAXP, k, uint64(block.timestamp + bw), ow, dw, cw, 1 ether, "req"
            );
        }
        vm.prank(c);
        bytes32 id = fed.announce{value: MAXP}(MAXP, k, bw, ow, dw, cw, "req");
        if (!ok || !kOk) return;
        Federation.ServiceView memory v = fed.serviceOf(id);
        assertEq(v.orderWindow, ow, "order window");
        assertEq(v.deployWindow, dw, "deploy window");
        assertEq(v.challengeWindow, cw, "challenge window");
        assertEq(v.bond, 1 ether, "bond = maxPrice / 10");
    }

    /// The consumer's order is refused after the order deadline, and an order accepted at any
    /// time before it leaves the winner its whole deploy window to confirm.
    function testFuzz_order_deadline_leaves_the_deploy_window(uint256 dt) public {
        bytes32 id = _announce(members[0], MAXP, 1, BW);
        _bid(members[1], id, 5 ether);
        _nextBlock();
        Federation.ServiceView memory v = fed.serviceOf(id);
        assertEq(v.orderDeadline, v.deadline + OW, "order deadline");
        assertEq(v.confirmDeadline, v.orderDeadline + DW, "confirm deadline");
        uint256 t = v.deadline + bound(dt, 0, uint256(OW) + 50);
        vm.warp(t);
        if (t > v.orderDeadline) {
            _expect(Federation.OrderWindowOver.selector);
            vm.prank(members[0]);
            fed.sendConsumerEndpoint(id, hex"c0");
            return;
        }
        vm.prank(members[0]);
        fed.sendConsumerEndpoint(id, hex"c0");
        assertTrue(fed.serviceOf(id).ordered, "ordered");
        vm.warp(t + DW); // the winner uses its whole deploy window
        vm.prank(members[1]);
        fed.confirmDeployment(id, hex"d0");
        assertEq(_state(id), DEPLOYED, "confirmed in time");
    }

    // ------------------------------------------------------------------ prices, deadlines

    /// A bid at exactly the largest price (maxPrice = type(uint96).max) is recorded as best.
    function test_bid_at_the_largest_price_is_best() public {
        uint96 maxp = type(uint96).max;
        vm.deal(members[0], uint256(maxp) * 2);
        vm.prank(members[0]);
        bytes32 id = fed.announce{value: maxp}(maxp, 2, BW, OW, DW, CHW, "");
        _bid(members[1], id, maxp);
        Federation.ServiceView memory v = fed.serviceOf(id);
        assertEq(v.winner, members[1], "the only bid is the best");
        assertEq(v.bestPrice, maxp, "at the largest price");
        _bid(members[2], id, maxp - 1);
        assertEq(fed.serviceOf(id).winner, members[2], "a lower bid beats it");
    }

    /// Deadlines never wrap: the whole schedule must fit uint40 seconds; at the boundary the
    /// announcement is accepted and its deadlines are exact, one second later it is refused.
    function test_deadlines_at_the_uint40_boundary() public {
        uint256 schedule = uint256(BW) + OW + DW + CHW;
        vm.warp(type(uint40).max - schedule);
        bytes32 id = _announce(members[0], MAXP, 1, BW);
        assertEq(fed.serviceOf(id).deadline, type(uint40).max - schedule + BW, "exact deadline");
        _bid(members[1], id, 1 ether);
        _nextBlock();
        Federation.ServiceView memory v = fed.serviceOf(id);
        assertTrue(v.confirmDeadline > type(uint32).max, "beyond 32 bits, not wrapped");
        vm.prank(members[1]);
        fed.confirmDeployment(id, "");
        assertTrue(fed.serviceOf(id).challengeDeadline <= type(uint40).max, "fits");
        vm.warp(type(uint40).max - schedule + 1);
        vm.deal(members[0], MAXP);
        _expect(Federation.InvalidWindow.selector);
        vm.prank(members[0]);
        fed.announce{value: MAXP}(MAXP, 1, BW, OW, DW, CHW, "");
    }

    /// Past 2^32 seconds (year 2106) deadlines are still exact.
    function test_deadlines_past_32_bits() public {
        vm.warp(uint256(type(uint32).max) + 10);
        bytes32 id = _announce(members[0], MAXP, 2, BW);
        assertEq(fed.serviceOf(id).deadline, uint256(type(uint32).max) + 10 + BW, "deadline");
        _bid(members[1], id, 1 ether);
        assertEq(_state(id), OPEN, "open before the deadline");
        vm.warp(uint256(type(uint32).max) + 10 + BW);
        assertEq(_state(id), AWARDED, "awarded at the deadline");
    }

    // ------------------------------------------------------------------ bonds

    function test_bond_is_due_once_per_service() public {
        bytes32 id = _announce(members[0], MAXP, 3, BW);
        _expect(Federation.BondMismatch.selector);
        vm.prank(members[1]);
        fed.bid(id, 5 ether, "");
        _bid(members[1], id, 5 ether);
        vm.deal(members[1], 1 ether);
        _expect(Federation.BondMismatch.selector);
        vm.prank(members[1]);
        fed.bid{value: 1 ether}(id, 4 ether, "");
        _bid(members[1], id, 4 ether); // a re-bid needs no bond
        assertEq(address(fed).balance, MAXP + 1 ether, "escrow + one bond");
    }

    /// k = 1 griefing: a 1-wei bid closes the auction and never confirms. Bids in its block still
    /// compete; after the consumer's order and the confirm deadline the griefer's bond is the
    /// consumer's, and after the reopen the honest earlier bidder (and everyone else) may bid.
    function test_k1_griefing_costs_the_bond_and_the_honest_bidder_stays_eligible() public {
        bytes32 id = _announce(members[0], MAXP, 1, BW);
        uint96 bond = _bond(id);
        _bid(members[1], id, 1); // the griefer
        assertEq(_state(id), CLOSING, "closing in this block");
        _bid(members[2], id, 5 ether); // same block: still competes (and loses to 1 wei)
        _nextBlock();
        _expect(Federation.BiddingClosed.selector);
        vm.prank(members[3]);
        fed.bid(id, 4 ether, "");
        assertEq(fed.serviceOf(id).winner, members[1], "griefer won");
        vm.prank(members[0]);
        fed.sendConsumerEndpoint(id, hex"c0");
        vm.warp(fed.serviceOf(id).confirmDeadline + 1);
        vm.prank(members[0]);
        fed.reopen(id, BW);
        assertEq(fed.credits(members[0]), bond, "griefer's bond to the consumer");
        (,,,, bool bonded) = fed.bidOf(id, members[1]);
        assertTrue(!bonded, "forfeited");
        _expect(Federation.NotEligible.selector);
        vm.prank(members[1]);
        fed.bid(id, 1, "");
        _bid(members[2], id, 5 ether); // honest bidder of round 0: eligible, bond still held
        _bid(members[3], id, 6 ether); // a member that never bid: eligible too (same block)
        _nextBlock();
        Federation.ServiceView memory v = fed.serviceOf(id);
        assertEq(uint8(v.state), AWARDED, "awarded anew");
        assertEq(v.winner, members[2], "honest winner");
        assertEq(address(fed).balance, MAXP + 3 * uint256(bond), "escrow + 3 bonds");
    }

    /// Without the consumer's on-chain order, a winner that declines keeps its bond.
    function test_decline_before_the_order_keeps_the_bond() public {
        bytes32 id = _withBids(2, 2, BW);
        uint96 bond = _bond(id);
        vm.prank(members[1]);
        fed.decline(id);
        assertEq(fed.credits(members[0]), 0, "nothing forfeited");
        vm.prank(members[1]);
        fed.reclaimBond(id);
        assertEq(fed.credits(members[1]), bond, "bond back");
        // the loser of round 0 is live in no round: it may reclaim too, and re-bid with a bond
        vm.prank(members[2]);
        fed.reclaimBond(id);
        _bid(members[2], id, 7 ether);
        _expect(Federation.BondLocked.selector);
        vm.prank(members[2]);
        fed.reclaimBond(id); // live bid of an open round
    }

    function test_bond_locks() public {
        bytes32 id = _withBids(2, 2, BW); // members[1] wins at 3 ether, members[2] loses
        _expect(Federation.BondLocked.selector);
        vm.prank(members[1]);
        fed.reclaimBond(id);
        vm.prank(members[2]);
        fed.reclaimBond(id); // a loser of an awarded round
        _expect(Federation.NoBond.selector);
        vm.prank(members[2]);
        fed.reclaimBond(id);
        vm.prank(members[1]);
        fed.confirmDeployment(id, "");
        _expect(Federation.BondLocked.selector);
        vm.prank(members[1]);
        fed.reclaimBond(id); // paid back with the settlement
        vm.prank(members[0]);
        fed.acknowledge(id);
        _expect(Federation.NoBond.selector);
        vm.prank(members[1]);
        fed.reclaimBond(id);
        assertEq(fed.credits(members[1]), 3 ether + 1 ether, "price + bond");
    }

    // ------------------------------------------------------------------ the closing block

    /// The k-th bid marks the auction Closing: bids in the same block still compete (a higher
    /// fee cannot close it at a worse price), bids in a later block are refused.
    function test_bids_in_the_closing_block_compete() public {
        bytes32 id = _announce(members[0], MAXP, 2, BW);
        _bid(members[1], id, 5 ether);
        _nextBlock();
        _bid(members[2], id, 6 ether); // k-th: closing
        Federation.ServiceView memory v = fed.serviceOf(id);
        assertEq(uint8(v.state), CLOSING, "closing");
        assertEq(v.closeBlock, block.number, "in this block");
        _bid(members[3], id, 4 ether); // same block
        _bid(members[1], id, 3 ether); // a re-bid in the same block
        assertEq(fed.serviceOf(id).winner, members[1], "best of the closing block");
        _nextBlock();
        _expect(Federation.BiddingClosed.selector);
        vm.prank(members[4]);
        fed.bid(id, 1 ether, "");
        v = fed.serviceOf(id);
        assertEq(uint8(v.state), AWARDED, "awarded after the closing block");
        assertEq(v.bidCount, 3, "three bidders");
        assertEq(v.bestPrice, 3 ether, "best price");
        // the confirm deadline counts from the closing block's time
        assertEq(v.orderDeadline, v.deadline + OW, "order deadline from closeTime");
    }

    /// The order of the bids inside the closing block never decides the winner: every
    /// permutation of the same three bids (with ties) gives the same winner, the minimum by
    /// (price, keccak256(id, bidder)).
    function testFuzz_winner_does_not_depend_on_order_in_block(uint96 p, uint96 q, uint256 who) public {
        p = uint96(bound(p, 1, MAXP));
        q = uint96(bound(q, 1, MAXP));
        address[3] memory b = [members[1 + who % 5], members[1 + (who / 5 + 1 + who % 5) % 5], address(0)];
        vm.assume(b[0] != b[1]);
        for (uint256 i = 1; i <= 5; ++i) {
            if (members[i] != b[0] && members[i] != b[1]) b[2] = members[i];
        }
        uint96[3] memory price = [p, p, q];
        bytes32 id = _announce(members[0], MAXP, 2, BW);
        // expected: min by (price, hash)
        uint256 best = 0;
        for (uint256 i = 1; i < 3; ++i) {
            bool lower = price[i] < price[best]
                || (price[i] == price[best] && keccak256(abi.encode(id, b[i])) < keccak256(abi.encode(id, b[best])));
            if (lower) best = i;
        }
        uint8[3][6] memory perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        for (uint256 n = 0; n < 6; ++n) {
            uint256 snap = vm.snapshotState();
            for (uint256 i = 0; i < 3; ++i) _bid(b[perms[n][i]], id, price[perms[n][i]]);
            _nextBlock();
            Federation.ServiceView memory v = fed.serviceOf(id);
            assertEq(uint8(v.state), AWARDED, "awarded");
            assertEq(v.winner, b[best], "same winner in every order");
            vm.revertToState(snap);
        }
    }

    // ------------------------------------------------------------------ payment

    function _deployed() internal returns (bytes32 id) {
        id = _announce(members[0], MAXP, 1, BW);
        _bid(members[1], id, 4 ether);
        _nextBlock();
        vm.prank(members[0]);
        fed.sendConsumerEndpoint(id, hex"c0");
        vm.prank(members[1]);
        fed.confirmDeployment(id, hex"d0");
    }

    /// The confirmation pays nothing; the consumer's acknowledgement does.
    function test_price_is_released_by_the_acknowledgement() public {
        bytes32 id = _deployed();
        assertEq(fed.credits(members[1]), 0, "not paid at confirmation");
        assertEq(fed.credits(members[0]), 0, "nothing refunded yet");
        _expect(Federation.NotConsumer.selector);
        vm.prank(members[1]);
        fed.acknowledge(id);
        vm.prank(members[0]);
        fed.acknowledge(id);
        assertEq(_state(id), ACKNOWLEDGED, "acknowledged");
        assertEq(fed.credits(members[1]), 4 ether + 1 ether, "price + bond");
        assertEq(fed.credits(members[0]), MAXP - 4 ether, "rest of the escrow");
        vm.prank(members[1]);
        fed.terminate(id); // ends it; the payment stands
        assertEq(_state(id), TERMINATED, "terminated");
        assertEq(fed.credits(members[1]), 5 ether, "still paid");
    }

    /// A complaint (terminate inside the challenge window) refunds the whole escrow; the
    /// provider gets its bond back and no price.
    function test_complaint_inside_the_challenge_window_refunds() public {
        bytes32 id = _deployed();
        vm.warp(fed.serviceOf(id).challengeDeadline);
        vm.expectEmit(true, true, false, true, address(fed));
        emit Federation.ServiceTerminated(id, members[0], true);
        vm.prank(members[0]);
        fed.terminate(id);
        assertEq(fed.credits(members[0]), MAXP, "whole escrow back");
        assertEq(fed.credits(members[1]), 1 ether, "bond back, no price");
    }

    /// Without acknowledgement or complaint the price is the provider's after the window.
    function test_price_is_released_after_the_challenge_window() public {
        bytes32 id = _deployed();
        _expect(Federation.DeadlineNotPassed.selector);
        fed.settle(id);
        vm.warp(fed.serviceOf(id).challengeDeadline + 1);
        assertEq(_state(id), ACKNOWLEDGED, "counts as acknowledged");
        uint256 snap = vm.snapshotState();
        vm.prank(OUTSIDER);
        fed.settle(id);
        assertEq(fed.credits(members[1]), 5 ether, "price + bond");
        vm.revertToState(snap);
        vm.prank(members[0]);
        fed.terminate(id); // too late to complain: terminate books the payment
        assertEq(fed.credits(members[1]), 5 ether, "paid by terminate");
        assertEq(fed.credits(members[0]), MAXP - 4 ether, "rest");
    }

    // ------------------------------------------------------------------ cancel

    /// The consumer may cancel in every state before the confirmation; the money always ends
    /// with someone: balance == credits + reclaimable bonds.
    function testFuzz_cancel_in_every_state_before_confirmation(uint256 phase, bool ordered) public {
        phase = phase % 5; // 0 open, 1 closing, 2 awarded, 3 awarded past confirm deadline, 4 expired
        bytes32 id = _announce(members[0], MAXP, 2, BW);
        uint96 bond = _bond(id);
        if (phase != 4) _bid(members[1], id, 4 ether);
        if (phase >= 1 && phase != 4) _bid(members[2], id, 5 ether);
        if (phase >= 2 && phase != 4) _nextBlock();
        if (phase == 4) vm.warp(block.timestamp + BW);
        if (phase >= 2 && phase != 4 && ordered) {
            vm.prank(members[0]);
            fed.sendConsumerEndpoint(id, "");
        }
        if (phase == 3) vm.warp(fed.serviceOf(id).confirmDeadline + 1);
        vm.prank(members[0]);
        fed.cancel(id);
        assertEq(_state(id), CANCELLED, "cancelled");
        bool forfeited = phase == 3 && ordered;
        assertEq(fed.credits(members[0]), MAXP + (forfeited ? bond : 0), "escrow (+ forfeited bond)");
        uint256 bonds = phase == 0 ? 1 : phase == 4 ? 0 : 2;
        if (forfeited) bonds -= 1;
        assertEq(address(fed).balance, fed.credits(members[0]) + bonds * bond, "all accounted for");
        for (uint256 i = 1; i <= 2; ++i) {
            (,,,, bool bonded) = fed.bidOf(id, members[i]);
            if (!bonded) continue;
            vm.prank(members[i]);
            fed.reclaimBond(id);
            vm.prank(members[i]);
            fed.withdraw();
        }
        vm.prank(members[0]);
        fed.withdraw();
        assertEq(address(fed).balance, 0, "nothing locked");
        _expectWrongState(OPEN, CANCELLED);
        vm.prank(members[0]);
        fed.cancel(id);
    }

    function test_guards() public {
        bytes32 id = _withBids(2, 2, BW);
        _expect(Federation.NotWinner.selector);
        vm.prank(members[2]);
        fed.confirmDeployment(id, "");
        _expect(Federation.NotConsumer.selector);
        vm.prank(members[1]);
        fed.sendConsumerEndpoint(id, "");
        _expect(Federation.DeadlineNotPassed.selector);
        vm.prank(members[0]);
        fed.reopen(id, BW);
        _expect(Federation.InvalidWindow.selector);
        vm.prank(members[0]);
        fed.reopen(id, 1);
        _expectWrongState(DEPLOYED, AWARDED);
        vm.prank(members[0]);
        fed.terminate(id);
        _expectWrongState(DEPLOYED, AWARDED);
        vm.prank(members[0]);
        fed.acknowledge(id);
        vm.warp(fed.serviceOf(id).confirmDeadline + 1);
        _expect(Federation.ConfirmWindowOver.selector);
        vm.prank(members[1]);
        fed.confirmDeployment(id, "");
        _expect(Federation.UnknownService.selector);
        fed.settle(bytes32(uint256(1)));
        vm.prank(members[0]);
        fed.award(id);
        _expectWrongState(OPEN, AWARDED);
        vm.prank(members[0]);
        fed.award(id);
    }
}
