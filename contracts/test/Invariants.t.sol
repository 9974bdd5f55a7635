// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {TestBase} from "./utils/TestBase.sol";
import {FederationHandler} from "./utils/Handler.sol";
import {Federation} from "../Federation.sol";

/// @dev Invariants over random sequences of every state-changing call (FederationHandler):
///      the contract agrees with an independent reference model, holds exactly the credits
///      plus the escrows of live services, pays only bidders, and never locks funds.
contract FederationInvariantTest is TestBase {
    FederationHandler internal h;
    Federation internal fed;

    function setUp() public {
        vm.warp(1_700_000_000);
        h = new FederationHandler();
        fed = h.fed();
        targetContract(address(h));
        targetSelector(FuzzSelector({addr: address(h), selectors: h.actions()}));
    }

    /// Every call was accepted or refused exactly as the reference model predicted, and every
    /// service's state, round, bidders, quorum, best bid and deadline match the model's.
    function invariant_contract_agrees_with_model() public view {
        assertEq(h.mismatch(), "", "model");
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            FederationHandler.MService memory m = h.model(id);
            Federation.ServiceView memory v = fed.serviceOf(id);
            uint8 st = m.state;
            if (st == 1 && block.timestamp >= m.deadline && m.count != 0) st = 2;
            assertEq(uint8(v.state), st, "state");
            assertEq(v.round, m.round, "round");
            assertEq(v.bidCount, m.count, "bidCount");
            assertEq(v.quorum, m.quorum, "quorum");
            assertEq(v.deadline, m.deadline, "deadline");
            assertEq(v.consumer, m.consumer, "consumer");
            assertEq(v.maxPrice, m.maxPrice, "maxPrice");
            if (m.count != 0) {
                assertEq(v.winner, m.best, "winner");
                assertEq(v.bestPrice, m.bestPrice, "bestPrice");
            }
        }
    }

    /// The ether held equals all credits plus the escrows of live (not yet settled) services.
    function invariant_balance_is_credits_plus_live_escrows() public view {
        uint256 credits = 0;
        for (uint256 i = 0; i < h.actorCount(); ++i) credits += fed.credits(h.actors(i));
        uint256 escrow = 0;
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            Federation.ServiceView memory v = fed.serviceOf(h.ids(i));
            if (v.state == Federation.State.Open || v.state == Federation.State.Awarded) escrow += v.maxPrice;
        }
        assertEq(address(fed).balance, credits + escrow, "balance == credits + live escrows");
        assertEq(address(fed).balance, h.ghostEscrowIn() - h.ghostPaidOut(), "escrowed in - paid out");
    }

    /// Each actor's credit is what the model says it earned (price of services it bid on, won
    /// and confirmed) or got back (refunds, cancelled escrows), minus what it withdrew.
    function invariant_credits_match_model() public view {
        for (uint256 i = 0; i < h.actorCount(); ++i) {
            address a = h.actors(i);
            assertEq(fed.credits(a), h.ghostCredit(a), "credit");
        }
    }

    /// Only a member that bid on a service is paid for it: the paid provider of every deployed
    /// service bid on it, in the winning round, at the price it was paid, and is not its consumer.
    function invariant_only_bidders_are_paid() public view {
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            Federation.ServiceView memory v = fed.serviceOf(id);
            bool paid = v.state == Federation.State.Deployed || v.state == Federation.State.Terminated;
            address provider = h.paidProvider(id);
            assertEq(paid, provider != address(0), "paid iff deployed");
            if (!paid) continue;
            assertEq(provider, v.winner, "paid the winner");
            assertTrue(h.everBid(id, provider), "the paid provider bid on the service");
            assertTrue(provider != v.consumer, "not the consumer");
            (uint96 price, uint16 round, bool live, bool excluded) = fed.bidOf(id, provider);
            assertTrue(live && !excluded && round == v.round, "with a live bid of the last round");
            assertEq(price, v.bestPrice, "at its price");
        }
    }

    /// In a new round, the quorum is the number of bidders still eligible (counted from bidOf).
    function invariant_quorum_is_eligible_bidders() public view {
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            Federation.ServiceView memory v = fed.serviceOf(id);
            if (v.round == 0) {
                assertEq(v.quorum, v.k, "round 0: quorum = k");
                continue;
            }
            uint256 eligible = 0;
            for (uint256 j = 0; j < h.actorCount(); ++j) {
                (uint96 price,,, bool excluded) = fed.bidOf(id, h.actors(j));
                if (price != 0 && !excluded) eligible += 1;
            }
            assertEq(v.quorum, eligible, "quorum");
            assertTrue(v.quorum < v.k, "fewer than k eligible after an exclusion");
        }
    }

    /// No path locks funds: from any reachable state, once time passes, each consumer can free
    /// every live escrow (cancel) and every creditor can withdraw, which empties the contract.
    function invariant_no_funds_locked() public {
        uint256 snap = vm.snapshotState();
        // past every bidding and confirm deadline (windows are at most 600 s)
        vm.warp(block.timestamp + 10_000);
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            Federation.State st = fed.stateOf(id);
            if (st != Federation.State.Open && st != Federation.State.Awarded) continue;
            vm.prank(fed.serviceOf(id).consumer);
            fed.cancel(id);
        }
        for (uint256 i = 0; i < h.actorCount(); ++i) {
            address a = h.actors(i);
            uint256 credit = fed.credits(a);
            if (credit == 0) continue;
            uint256 before = a.balance;
            vm.prank(a);
            fed.withdraw();
            assertEq(a.balance, before + credit, "withdrawn");
        }
        assertEq(address(fed).balance, 0, "nothing locked");
        vm.revertToState(snap);
    }
}
