// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {TestBase} from "./utils/TestBase.sol";
import {FederationHandler} from "./utils/Handler.sol";
import {Federation} from "../Federation.sol";

/// @dev Invariants over random sequences of every state-changing call (FederationHandler):
///      the contract holds exactly the credits plus the escrows of unfinished services plus the
///      held bonds, the winner is the order-independent minimum of its round, a settlement pays
///      exactly the winner's price and bond, and no path locks funds.
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

    function invariant_rules_hold() public view {
        assertEq(h.mismatch(), "", "rules");
    }

    function _bonds() internal view returns (uint256 total) {
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            uint96 bond = fed.serviceOf(id).bond;
            for (uint256 j = 0; j < h.actorCount(); ++j) {
                (,,,, bool bonded) = fed.bidOf(id, h.actors(j));
                if (bonded) total += bond;
            }
        }
    }

    /// balance == credits + escrows of unfinished services + held bonds == in - out.
    function invariant_balance_is_credits_plus_escrows_plus_bonds() public view {
        uint256 credits = 0;
        for (uint256 i = 0; i < h.actorCount(); ++i) credits += fed.credits(h.actors(i));
        uint256 escrow = 0;
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            Federation.ServiceView memory v = fed.serviceOf(id);
            bool done = v.state == Federation.State.Cancelled || v.state == Federation.State.Terminated;
            assertTrue(!done || h.finished(id), "finished services are marked");
            if (!h.finished(id)) escrow += v.maxPrice;
        }
        assertEq(address(fed).balance, credits + escrow + _bonds(), "balance == credits + escrows + bonds");
        assertEq(address(fed).balance, h.ghostIn() - h.ghostOut(), "in - out");
    }

    /// No path locks funds: from any reachable state, once time passes, each service can be
    /// ended by its consumer (cancel, or terminate: a complaint, or after the window the
    /// settlement), anyone settles what is left, every bond is reclaimable, and every creditor
    /// can withdraw, which empties the contract.
    function invariant_no_funds_locked() public {
        uint256 snap = vm.snapshotState();
        vm.warp(block.timestamp + 10 days);
        vm.roll(block.number + 1);
        uint256 n = h.idCount();
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            Federation.ServiceView memory v = fed.serviceOf(id);
            if (h.finished(id)) continue;
            vm.prank(v.consumer);
            if (v.state == Federation.State.Acknowledged) fed.settle(id);
            else if (v.state == Federation.State.Deployed) fed.terminate(id);
            else fed.cancel(id);
        }
        for (uint256 i = 0; i < n; ++i) {
            bytes32 id = h.ids(i);
            for (uint256 j = 0; j < h.actorCount(); ++j) {
                address a = h.actors(j);
                (,,,, bool bonded) = fed.bidOf(id, a);
                if (!bonded) continue;
                vm.prank(a);
                fed.reclaimBond(id);
            }
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
