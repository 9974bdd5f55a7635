// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationFixture} from "./utils/Fixture.sol";
import {Federation} from "../Federation.sol";

/// @dev Fuzz tests of the auction functions: announce, bid, award, sendConsumerEndpoint,
///      confirmDeployment, decline, cancel, reopen, terminate, and the views stateOf, serviceOf,
///      bidOf. Each predicts, from its inputs, the first guard that must refuse the call (in the
///      contract's order) or the effects of its success.
contract AuctionFuzzTest is FederationFixture {
    // ------------------------------------------------------------------ announce

    function testFuzz_announce(
        uint256 callerSeed,
        uint96 maxPrice,
        uint16 k,
        uint32 bw,
        uint32 cw,
        uint256 reqLen,
        uint256 valueSeed
    ) public {
        address caller = _caller(callerSeed);
        // mostly valid windows and lengths, with the bounds and beyond
        if (bw % 4 != 0) bw = uint32(bound(bw, 1, MAX_WINDOW + 1));
        if (cw % 4 != 0) cw = uint32(bound(cw, 1, MAX_WINDOW + 1));
        reqLen = bound(reqLen, 0, MAX_REQUIREMENTS + 1);
        uint256 value = valueSeed % 5 == 0 ? bound(valueSeed, 0, uint256(maxPrice) + 1) : maxPrice;
        vm.deal(caller, value);
        bytes memory req = new bytes(reqLen);

        bytes4 err;
        if (!_isMember(caller)) err = Federation.NotMember.selector;
        else if (value != maxPrice) err = Federation.EscrowMismatch.selector;
        else if (maxPrice == 0) err = Federation.PriceOutOfRange.selector;
        else if (k == 0) err = Federation.InvalidK.selector;
        else if (bw == 0 || bw > MAX_WINDOW || cw == 0 || cw > MAX_WINDOW) err = Federation.InvalidWindow.selector;
        else if (reqLen > MAX_REQUIREMENTS) err = Federation.RequirementsTooLong.selector;

        uint256 nonce = fed.nonceOf(caller);
        if (err != bytes4(0)) {
            _expect(err);
            vm.prank(caller);
            fed.announce{value: value}(maxPrice, k, bw, cw, req);
            return;
        }
        bytes32 expectedId = keccak256(abi.encode(block.chainid, address(fed), caller, nonce));
        vm.expectEmit(true, true, false, true, address(fed));
        emit Federation.ServiceAnnounced(expectedId, caller, maxPrice, k, uint64(block.timestamp + bw), req);
        vm.prank(caller);
        bytes32 id = fed.announce{value: value}(maxPrice, k, bw, cw, req);
        assertEq(id, expectedId, "id");
        assertEq(fed.nonceOf(caller), nonce + 1, "nonce");
        assertEq(address(fed).balance, maxPrice, "escrow held");
        Federation.ServiceView memory v = _view(id);
        assertEq(v.consumer, caller, "consumer");
        assertEq(v.maxPrice, maxPrice, "maxPrice");
        assertEq(v.k, k, "k");
        assertEq(v.quorum, k, "quorum");
        assertEq(v.bidCount, 0, "bidCount");
        assertEq(uint8(v.state), OPEN, "state");
        assertEq(v.deadline, block.timestamp + bw, "deadline");
        assertEq(v.confirmDeadline, 0, "no confirm deadline");
        assertEq(v.winner, address(0), "winner");
        assertEq(v.bestPrice, 0, "bestPrice");
        assertEq(v.round, 0, "round");
        assertEq(v.confirmWindow, cw, "confirmWindow");
        assertEq(v.biddingWindow, bw, "biddingWindow");
    }

    /// Deadlines are uint40: one that would not fit reverts instead of wrapping.
    function testFuzz_announce_deadline_never_wraps(uint256 t, uint32 bw) public {
        bw = uint32(bound(bw, 1, MAX_WINDOW));
        t = bound(t, type(uint40).max - 2 * MAX_WINDOW, uint256(type(uint40).max) + 1);
        vm.warp(t);
        vm.prank(members[0]);
        if (t + bw > type(uint40).max) {
            _expect(Federation.InvalidWindow.selector);
            fed.announce{value: 1}(1, 1, bw, 60, "");
            return;
        }
        bytes32 id = fed.announce{value: 1}(1, 1, bw, 60, "");
        assertEq(_view(id).deadline, t + bw, "deadline");
        // the confirm deadline beyond 2**40 is still exact (uint64 in the view)
        _bid(members[1], id, 1);
        assertEq(_view(id).confirmDeadline, t + 60, "confirm deadline");
    }

    // ------------------------------------------------------------------ bid

    function testFuzz_bid_guards(uint256 callerSeed, uint96 price, uint256 epLen, uint256 phase, uint256 dt)
        public
    {
        address caller = _caller(callerSeed);
        epLen = bound(epLen, 0, MAX_SEALED + 1);
        phase = phase % 4; // 0 open, 1 past deadline, 2 unknown id, 3 cancelled
        if (price % 3 != 0) price = uint96(bound(price, 0, MAXP + 1));
        if (price % 7 == 1) price = 3 ether; // equal to members[1]'s bid (its re-bid boundary)
        bytes32 id = _withBids(5, 1, 600, 600); // members[1] bid 3 ether
        if (phase == 1) vm.warp(block.timestamp + 600 + bound(dt, 0, 1000));
        if (phase == 2) id = keccak256(abi.encode(id));
        if (phase == 3) {
            vm.prank(members[0]);
            fed.cancel(id);
        }
        bytes4 err;
        bool wrongState;
        if (epLen > MAX_SEALED) err = Federation.PayloadTooLong.selector;
        else if (!_isMember(caller)) err = Federation.NotMember.selector;
        else if (phase == 2) err = Federation.UnknownService.selector;
        else if (phase == 3) wrongState = true;
        else if (phase == 1) err = Federation.BiddingClosed.selector;
        else if (price == 0 || price > MAXP) err = Federation.PriceOutOfRange.selector;
        else if (caller == members[0]) err = Federation.OwnService.selector;
        else if (caller == members[1] && price >= 3 ether) err = Federation.BidNotLower.selector;

        if (wrongState) _expectWrongState(OPEN, CANCELLED);
        else if (err != bytes4(0)) _expect(err);
        else {
            vm.expectEmit(true, true, true, true, address(fed));
            emit Federation.BidPlaced(id, caller, members[0], price, new bytes(epLen));
        }
        vm.prank(caller);
        fed.bid(id, price, new bytes(epLen));
        if (wrongState || err != bytes4(0)) return;
        (uint96 p, uint16 round, bool live, bool excluded) = fed.bidOf(id, caller);
        assertTrue(p == price && round == 0 && live && !excluded, "bid recorded");
        Federation.ServiceView memory v = _view(id);
        assertEq(v.bidCount, caller == members[1] ? 1 : 2, "distinct bidders");
        bool best = price < 3 ether;
        assertEq(v.winner, best ? caller : members[1], "best bidder");
        assertEq(v.bestPrice, best ? price : 3 ether, "best price");
    }

    /// The lowest price wins, ties go to the earliest bid; the k-th distinct bidder closes.
    function testFuzz_bid_lowest_earliest_wins(uint96[5] memory prices, uint16 k, uint256 rebids) public {
        k = uint16(bound(k, 1, 5));
        bytes32 id = _announce(members[0], MAXP, k, 600, 300);
        uint96 best = type(uint96).max;
        address winner;
        for (uint256 i = 0; i < k; ++i) {
            address p = members[1 + i];
            uint96 price = uint96(bound(prices[i], 1, MAXP));
            // before the k-th bid, some bidders also re-bid lower once
            if (i + 1 < k && (rebids >> i) & 1 == 1 && price > 1) {
                _bid(p, id, price);
                if (price < best) (best, winner) = (price, p);
                price = uint96(bound(prices[i] >> 8, 1, price - 1));
                assertEq(_view(id).bidCount, i + 1, "a re-bid is not a new bidder");
            }
            if (price < best) (best, winner) = (price, p);
            if (i + 1 == k) {
                vm.expectEmit(true, true, true, true, address(fed));
                emit Federation.ServiceAwarded(id, members[0], winner, best);
            }
            _bid(p, id, price);
            if (i + 1 < k) assertEq(_state(id), OPEN, "open before the k-th bid");
        }
        Federation.ServiceView memory v = _view(id);
        assertEq(uint8(v.state), AWARDED, "awarded by the k-th bid");
        assertEq(v.winner, winner, "winner");
        assertEq(v.bestPrice, best, "price");
        assertEq(v.deadline, block.timestamp, "closeTime");
        assertEq(v.confirmDeadline, block.timestamp + 300, "confirm deadline");
        _expectWrongState(OPEN, AWARDED);
        _bid(members[N - 1], id, 1);
    }

    function testFuzz_bid_rebid_strictly_lower(uint96 first, uint96 second) public {
        first = uint96(bound(first, 1, MAXP));
        second = uint96(bound(second, 1, MAXP));
        if (second % 4 == 0) second = first; // the boundary: an equal re-bid
        if (second % 4 == 1 && first > 1) second = first - 1;
        bytes32 id = _withBids(3, 0, 600, 600);
        _bid(members[1], id, first);
        if (second >= first) _expect(Federation.BidNotLower.selector);
        _bid(members[1], id, second);
        (uint96 p,, bool live,) = fed.bidOf(id, members[1]);
        assertEq(p, second < first ? second : first, "live price");
        assertTrue(live, "live");
        assertEq(_view(id).bidCount, 1, "one bidder");
    }

    // ------------------------------------------------------------------ award

    function testFuzz_award(uint256 callerSeed, uint256 bids, uint256 dt, bool unknown) public {
        address caller = callerSeed % 2 == 0 ? members[0] : _caller(callerSeed);
        bids = bound(bids, 0, 2); // k = 3: never auto-closed here
        dt = bound(dt, 0, 1200);
        bytes32 id = _withBids(3, bids, 600, 600);
        if (unknown) id = bytes32(uint256(id) ^ 1);
        vm.warp(block.timestamp + dt);
        bytes4 err;
        if (unknown) err = Federation.UnknownService.selector;
        else if (caller != members[0]) err = Federation.NotConsumer.selector;
        else if (dt < 600) err = Federation.DeadlineNotPassed.selector;
        else if (bids == 0) err = Federation.NoBids.selector;
        if (err != bytes4(0)) {
            _expect(err);
            vm.prank(caller);
            fed.award(id);
            return;
        }
        vm.expectEmit(true, true, true, true, address(fed));
        emit Federation.ServiceAwarded(id, members[0], members[1], 3 ether);
        vm.prank(caller);
        fed.award(id);
        assertEq(_state(id), AWARDED, "awarded");
        _expectWrongState(OPEN, AWARDED);
        vm.prank(caller);
        fed.award(id);
    }

    // ------------------------------------------------------------------ sendConsumerEndpoint

    function testFuzz_sendConsumerEndpoint(uint256 callerSeed, uint256 len, uint256 phase) public {
        address caller = callerSeed % 2 == 0 ? members[0] : _caller(callerSeed);
        len = bound(len, 0, MAX_SEALED + 1);
        phase = phase % 3; // 0 open, 1 awarded, 2 deployed
        bytes32 id = _withBids(2, phase == 0 ? 1 : 2, 600, 600);
        if (phase == 2) {
            vm.prank(members[1]);
            fed.confirmDeployment(id, "");
        }
        bytes memory ep = new bytes(len);
        if (len > MAX_SEALED) _expect(Federation.PayloadTooLong.selector);
        else if (caller != members[0]) _expect(Federation.NotConsumer.selector);
        else if (phase == 0) _expectWrongState(AWARDED, OPEN);
        else if (phase == 2) _expectWrongState(AWARDED, DEPLOYED);
        else {
            vm.expectEmit(true, true, true, true, address(fed));
            emit Federation.ConsumerEndpoint(id, members[0], members[1], ep);
        }
        vm.prank(caller);
        fed.sendConsumerEndpoint(id, ep);
    }

    // ------------------------------------------------------------------ confirmDeployment

    function testFuzz_confirmDeployment(uint256 callerSeed, uint96 price, uint256 dt, uint256 len, bool lazy)
        public
    {
        address caller = callerSeed % 2 == 0 ? members[1] : _caller(callerSeed);
        price = uint96(bound(price, 1, MAXP));
        dt = bound(dt, 0, 1000);
        len = bound(len, 0, MAX_SEALED + 1);
        // awarded to members[1] by the k-th bid, or lazily at the bidding deadline
        bytes32 id = _announce(members[0], MAXP, lazy ? 2 : 1, 100, 300);
        _bid(members[1], id, price);
        if (lazy) vm.warp(block.timestamp + 100);
        uint256 cd = _confirmDeadline(id);
        vm.warp(block.timestamp + dt);
        bytes4 err;
        if (len > MAX_SEALED) err = Federation.PayloadTooLong.selector;
        else if (!_isMember(caller)) err = Federation.NotMember.selector;
        else if (caller != members[1]) err = Federation.NotWinner.selector;
        else if (block.timestamp > cd) err = Federation.ConfirmWindowOver.selector;
        uint256 balance = address(fed).balance;
        if (err != bytes4(0)) {
            _expect(err);
            vm.prank(caller);
            fed.confirmDeployment(id, new bytes(len));
            return;
        }
        vm.expectEmit(true, true, true, true, address(fed));
        emit Federation.DeploymentConfirmed(id, members[0], members[1], new bytes(len));
        vm.prank(caller);
        fed.confirmDeployment(id, new bytes(len));
        assertEq(_state(id), DEPLOYED, "deployed");
        assertEq(fed.credits(members[1]), price, "winner paid its price");
        assertEq(fed.credits(members[0]), MAXP - price, "consumer refunded the rest");
        assertEq(address(fed).balance, balance, "no ether moved");
        _expectWrongState(AWARDED, DEPLOYED);
        vm.prank(caller);
        fed.confirmDeployment(id, "");
        _expect(Federation.UnknownService.selector);
        vm.prank(caller);
        fed.confirmDeployment(bytes32(uint256(id) + 1), "");
    }

    // ------------------------------------------------------------------ decline

    function testFuzz_decline(uint256 callerSeed, uint256 phase, uint256 dt, uint32 bw) public {
        address caller = callerSeed % 2 == 0 ? members[1] : _caller(callerSeed);
        phase = phase % 5; // 0 open, 1 awarded (k-th bid), 2 awarded lazily, 3 deployed, 4 cancelled
        bw = uint32(bound(bw, 1, 5000));
        dt = bound(dt, 0, 2000);
        bytes32 id = _announce(members[0], MAXP, phase == 2 ? 4 : 3, bw, 300);
        uint256 bids = phase == 1 || phase == 3 ? 3 : 2;
        for (uint256 i = 1; i <= bids; ++i) _bid(members[i], id, uint96((2 + i) * 1 ether));
        if (phase == 2) vm.warp(block.timestamp + bw);
        if (phase == 3) {
            vm.prank(members[1]);
            fed.confirmDeployment(id, "");
        }
        if (phase == 0 && dt >= bw) dt = bw - 1; // still Open
        if (phase == 4) {
            vm.prank(members[0]);
            fed.cancel(id);
        }
        vm.warp(block.timestamp + dt);
        uint8 st = _state(id);
        if (st != AWARDED) {
            _expectWrongState(AWARDED, st);
            vm.prank(caller);
            fed.decline(id);
            return;
        }
        if (caller != members[1]) {
            _expect(Federation.NotWinner.selector);
            vm.prank(caller);
            fed.decline(id);
            return;
        }
        uint256 eligible = bids - 1;
        vm.expectEmit(true, true, true, true, address(fed));
        emit Federation.ServiceReopened(id, members[0], members[1], 1, uint64(block.timestamp + bw));
        vm.prank(caller);
        fed.decline(id);
        Federation.ServiceView memory v = _view(id);
        assertEq(uint8(v.state), OPEN, "open");
        assertEq(v.round, 1, "round");
        assertEq(v.bidCount, 0, "bidCount");
        assertEq(v.deadline, block.timestamp + bw, "announced window");
        assertEq(v.quorum, eligible, "quorum = eligible bidders");
        assertEq(v.winner, address(0), "no winner");
        (,,, bool excluded) = fed.bidOf(id, members[1]);
        assertTrue(excluded, "winner excluded");
        _expect(Federation.NotEligible.selector);
        _bid(members[1], id, 1);
        // the other earlier bidders may bid again; the last of them closes the round
        for (uint256 i = 2; i <= bids; ++i) {
            _bid(members[i], id, MAXP);
            assertEq(_state(id), i == bids ? AWARDED : OPEN, "closes at quorum");
        }
        assertEq(_view(id).winner, members[2], "earliest of equal prices");
        assertEq(address(fed).balance, MAXP, "escrow untouched");
    }

    // ------------------------------------------------------------------ cancel

    function testFuzz_cancel(uint256 callerSeed, uint256 bids, uint256 dt, bool unknown) public {
        address caller = callerSeed % 2 == 0 ? members[0] : _caller(callerSeed);
        bids = bound(bids, 0, 2); // k = 2: 2 bids award at once
        dt = bound(dt, 0, 1500);
        bytes32 id = _withBids(2, bids, 600, 300);
        if (unknown) id = ~id;
        vm.warp(block.timestamp + dt);
        bool open = bids == 0 || (bids == 1 && dt < 600);
        uint256 cd = bids == 2 ? T0 + 300 : T0 + 900;
        bool failedWinner = !open && block.timestamp > cd;
        if (unknown) _expect(Federation.UnknownService.selector);
        else if (caller != members[0]) _expect(Federation.NotConsumer.selector);
        else if (!open && !failedWinner) _expectWrongState(OPEN, AWARDED);
        else {
            vm.expectEmit(true, true, false, false, address(fed));
            emit Federation.ServiceCancelled(id, members[0]);
        }
        vm.prank(caller);
        fed.cancel(id);
        if (unknown || caller != members[0] || (!open && !failedWinner)) return;
        assertEq(_state(id), CANCELLED, "cancelled");
        assertEq(fed.credits(members[0]), MAXP, "escrow back");
        _expectWrongState(OPEN, CANCELLED);
        vm.prank(caller);
        fed.cancel(id);
    }

    // ------------------------------------------------------------------ reopen

    function testFuzz_reopen(uint256 callerSeed, uint32 window, uint256 dt, bool lazy) public {
        address caller = callerSeed % 2 == 0 ? members[0] : _caller(callerSeed);
        if (window % 3 != 0) window = uint32(bound(window, 1, MAX_WINDOW + 1));
        dt = bound(dt, 0, 1000);
        bytes32 id = _announce(members[0], MAXP, lazy ? 4 : 3, 100, 300);
        for (uint256 i = 1; i <= 3; ++i) _bid(members[i], id, uint96((2 + i) * 1 ether));
        if (lazy) vm.warp(block.timestamp + 100);
        uint256 cd = _confirmDeadline(id);
        vm.warp(block.timestamp + dt);
        bytes4 err;
        if (caller != members[0]) err = Federation.NotConsumer.selector;
        else if (window == 0 || window > MAX_WINDOW) err = Federation.InvalidWindow.selector;
        else if (block.timestamp <= cd) err = Federation.DeadlineNotPassed.selector;
        if (err != bytes4(0)) {
            _expect(err);
            vm.prank(caller);
            fed.reopen(id, window);
            return;
        }
        vm.expectEmit(true, true, true, true, address(fed));
        emit Federation.ServiceReopened(id, members[0], members[1], 1, uint64(block.timestamp + window));
        vm.prank(caller);
        fed.reopen(id, window);
        Federation.ServiceView memory v = _view(id);
        assertTrue(v.state == Federation.State.Open && v.round == 1 && v.bidCount == 0, "new round");
        assertEq(v.quorum, 2, "two eligible bidders");
        assertEq(v.deadline, block.timestamp + window, "window");
        assertEq(v.biddingWindow, 100, "announced window kept");
        _expectWrongState(AWARDED, OPEN);
        vm.prank(caller);
        fed.reopen(id, window);
    }

    // ------------------------------------------------------------------ terminate

    function testFuzz_terminate(uint256 callerSeed, uint256 phase) public {
        address caller = _caller(callerSeed);
        phase = phase % 4; // 0 open, 1 awarded, 2 deployed, 3 unknown
        bytes32 id = _withBids(1, phase == 0 ? 0 : 1, 600, 600);
        if (phase == 2) {
            vm.prank(members[1]);
            fed.confirmDeployment(id, "");
        }
        if (phase == 3) id = keccak256("nothing");
        bool party = caller == members[0] || caller == members[1];
        if (phase == 3) _expect(Federation.UnknownService.selector);
        else if (phase != 2) _expectWrongState(DEPLOYED, phase == 0 ? OPEN : AWARDED);
        else if (!party) _expect(Federation.NotParty.selector);
        else {
            vm.expectEmit(true, true, false, false, address(fed));
            emit Federation.ServiceTerminated(id, caller);
        }
        vm.prank(caller);
        fed.terminate(id);
        if (phase != 2 || !party) return;
        assertEq(_state(id), TERMINATED, "terminated");
        _expectWrongState(DEPLOYED, TERMINATED);
        vm.prank(caller);
        fed.terminate(id);
    }

    // ------------------------------------------------------------------ rounds

    /// 65535 rounds are out of reach of a test: the round field of the auction word is set in
    /// storage (its position checked against serviceOf first). With no round left, neither
    /// decline nor reopen can start one, and cancel after the confirm deadline still frees the
    /// escrow: no path locks it.
    function testFuzz_escrow_recoverable_when_rounds_are_exhausted(uint256 bidders, uint256 dt) public {
        bidders = bound(bidders, 2, 4);
        dt = bound(dt, 301, 10_000);
        bytes32 id = _withBids(uint16(bidders), bidders, 600, 300); // awarded to members[1]
        bytes32 slot = _auctionSlot(id);
        uint256 word = uint256(vm.load(address(fed), slot));
        assertEq((word >> 232) & 0xffff, 0, "round field");
        assertEq((word >> 216) & 0xffff, bidders, "bidCount field");
        assertEq((word >> 248) & 0xff, AWARDED, "state field");
        vm.store(address(fed), slot, bytes32(word | (uint256(0xfffe) << 232)));
        assertEq(_view(id).round, 0xfffe, "round set");
        vm.prank(members[1]);
        fed.decline(id);
        assertEq(_view(id).round, 0xffff, "last round");
        assertEq(_view(id).quorum, bidders - 1, "eligible");
        for (uint256 i = 2; i <= bidders; ++i) _bid(members[i], id, 1 ether);
        assertEq(_state(id), AWARDED, "awarded in the last round");
        _expect(Federation.TooManyRounds.selector);
        vm.prank(members[2]);
        fed.decline(id);
        _expectWrongState(OPEN, AWARDED);
        vm.prank(members[0]);
        fed.cancel(id); // the winner may still confirm
        vm.warp(block.timestamp + dt);
        _expect(Federation.TooManyRounds.selector);
        vm.prank(members[0]);
        fed.reopen(id, 60);
        vm.prank(members[0]);
        fed.cancel(id);
        assertEq(fed.credits(members[0]), MAXP, "escrow back");
        vm.prank(members[0]);
        fed.withdraw();
        assertEq(address(fed).balance, 0, "nothing locked");
    }

    // ------------------------------------------------------------------ views

    function testFuzz_views_of_unknown_services(bytes32 id, address provider) public view {
        assertEq(_state(id), NONE, "stateOf");
        Federation.ServiceView memory v = _view(id);
        assertTrue(v.consumer == address(0) && v.maxPrice == 0 && v.k == 0 && v.deadline == 0, "empty view");
        assertTrue(v.winner == address(0) && v.confirmDeadline == 0 && v.biddingWindow == 0, "empty view");
        (uint96 price, uint16 round, bool live, bool excluded) = fed.bidOf(id, provider);
        assertTrue(price == 0 && round == 0 && !live && !excluded, "empty bid");
    }

    function testFuzz_effective_state_at_the_deadline(uint256 dt, bool withBid) public {
        dt = bound(dt, 0, 1200);
        bytes32 id = _withBids(3, withBid ? 1 : 0, 600, 600);
        vm.warp(block.timestamp + dt);
        uint8 expected = withBid && dt >= 600 ? AWARDED : OPEN;
        assertEq(_state(id), expected, "stateOf");
        Federation.ServiceView memory v = _view(id);
        assertEq(uint8(v.state), expected, "serviceOf.state");
        assertEq(v.confirmDeadline, expected == AWARDED ? T0 + 1200 : 0, "confirmDeadline");
    }
}
