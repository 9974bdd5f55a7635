// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationDeployer} from "./Deploy.sol";
import {Vm} from "./Vm.sol";
import {Federation} from "../../Federation.sol";

/// @dev Drives a Federation (ALLOWLIST; this handler is its admin) with random sequences of
///      every state-changing call by several actors, in random blocks and times. It keeps the
///      money that went in and out, which services are finished (their escrow released), and
///      each round's bids, and records in `mismatch` any disagreement with the rules the
///      contract must keep: the winner is the minimum by (price, keccak256(id, bidder)) of the
///      round's bids, and a settlement pays the winner exactly its price and bond.
contract FederationHandler is FederationDeployer {
    uint256 public constant ACTORS = 5; // actors[ACTORS] is an outsider (not allowed at first)

    Federation public immutable fed;
    address[] public actors;
    mapping(address => bytes) internal pubkey;

    bytes32[] public ids;
    mapping(bytes32 => bool) public finished; // escrow released (cancelled, paid, refunded)
    mapping(bytes32 => mapping(uint256 => mapping(address => uint96))) internal _price; // round
    uint256 public ghostIn;
    uint256 public ghostOut;
    string public mismatch;

    constructor() {
        address[] memory initial = new address[](ACTORS);
        for (uint256 i = 0; i <= ACTORS; ++i) {
            Vm.Wallet memory w = vm.createWallet(uint256(keccak256(abi.encode("actor", i))));
            actors.push(w.addr);
            pubkey[w.addr] = abi.encodePacked(w.publicKeyX, w.publicKeyY);
            vm.label(w.addr, i == ACTORS ? "outsider" : string.concat("a", vm.toString(i)));
            if (i < ACTORS) initial[i] = w.addr;
        }
        fed = _deployFederation(Federation.Policy.ALLOWLIST, initial);
        for (uint256 i = 0; i < ACTORS; ++i) {
            vm.prank(actors[i]);
            fed.register("actor", pubkey[actors[i]]);
        }
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    // ------------------------------------------------------------------ plumbing

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _service(uint256 seed) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0 || seed % 10 == 0) return keccak256(abi.encode("unknown", seed));
        if (seed % 10 < 7) return ids[n - 1 - (seed / 10) % (n < 3 ? n : 3)];
        return ids[seed % n];
    }

    /// @dev Mostly a service in effective state `want` (if any), else as `_service`.
    function _serviceIn(uint256 seed, Federation.State want) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n != 0 && seed % 5 != 0) {
            for (uint256 i = 0; i < n; ++i) {
                bytes32 id = ids[n - 1 - (seed / 5 + i) % n];
                if (fed.stateOf(id) == want) return id;
            }
        }
        return _service(seed);
    }

    /// @dev Mostly an active member other than `not`, else any actor.
    function _member(uint256 seed, address not) internal view returns (address) {
        if (seed % 5 != 0) {
            for (uint256 i = 0; i < actors.length; ++i) {
                address c = actors[(seed + i) % actors.length];
                if (fed.isMember(c) && c != not) return c;
            }
        }
        return _actor(seed);
    }

    function _consumerOr(uint256 a, bytes32 id) internal view returns (address) {
        address c = fed.serviceOf(id).consumer;
        return a % 4 != 0 && c != address(0) ? c : _actor(a);
    }

    function _winnerOr(uint256 a, bytes32 id) internal view returns (address) {
        address w = fed.serviceOf(id).winner;
        return a % 4 != 0 && w != address(0) ? w : _actor(a);
    }

    /// @dev A refused call reverts the action (forge counts it in its table of reverts, so the
    ///      share of accepted calls per action is visible with -vv).
    function _call(address caller, uint256 value, bytes memory data) internal returns (bool ok) {
        vm.deal(caller, caller.balance + value);
        vm.prank(caller);
        (ok,) = address(fed).call{value: value}(data);
        if (!ok) revert("refused");
        ghostIn += value;
    }

    function _fail(string memory why) internal {
        if (bytes(mismatch).length == 0) mismatch = why;
    }

    // ------------------------------------------------------------------ actions

    function announce(uint256 a, uint96 maxPrice, uint16 k, uint32 bw, uint32 w) external {
        address c = _member(a, address(0));
        maxPrice = uint96(bound(maxPrice, 1, 100 ether));
        k = uint16(bound(k, 1, 3));
        bw = uint32(bound(bw, 1, 120)); // 1: refused (below the minimum)
        uint32 ow = uint32(10 + w % 100);
        uint32 dw = uint32(30 + (w >> 8) % 100);
        uint32 cw = uint32(30 + (w >> 16) % 100);
        vm.deal(c, c.balance + maxPrice);
        vm.prank(c);
        (bool ok, bytes memory ret) = address(fed).call{value: maxPrice}(
            abi.encodeCall(fed.announce, (maxPrice, k, bw, ow, dw, cw, ""))
        );
        if (!ok) revert("refused");
        ghostIn += maxPrice;
        ids.push(abi.decode(ret, (bytes32)));
    }

    function bid(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function bid2(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function bid3(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function _bidAction(uint256 a, uint256 s, uint96 price) internal {
        bytes32 id = s % 3 == 0 ? _serviceIn(s, Federation.State.Closing) : _serviceIn(s, Federation.State.Open);
        Federation.ServiceView memory v = fed.serviceOf(id);
        address c = _member(a, v.consumer);
        // few distinct prices: ties are frequent (0 is refused)
        price = uint96(bound(a % 13 == 0 ? 0 : 1 + price % 8, 0, uint256(v.maxPrice)));
        (,,,, bool bonded) = fed.bidOf(id, c);
        uint256 value = bonded || a % 11 == 0 ? 0 : v.bond;
        if (!_call(c, value, abi.encodeCall(fed.bid, (id, price, hex"5ea1ed")))) return;
        _price[id][v.round][c] = price;
        // the winner is the minimum of the round's bids by (price, hash)
        address best = address(0);
        for (uint256 i = 0; i < actors.length; ++i) {
            address b = actors[i];
            uint96 p = _price[id][v.round][b];
            if (p == 0) continue;
            if (best == address(0)) {
                best = b;
                continue;
            }
            uint96 bp = _price[id][v.round][best];
            if (p < bp || (p == bp && keccak256(abi.encode(id, b)) < keccak256(abi.encode(id, best)))) {
                best = b;
            }
        }
        Federation.ServiceView memory after_ = fed.serviceOf(id);
        if (after_.winner != best) _fail("bid: winner is not the minimum by (price, hash)");
        if (after_.bestPrice != _price[id][v.round][best]) _fail("bid: best price");
    }

    function award(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, Federation.State.Awarded);
        _call(_consumerOr(a, id), 0, abi.encodeCall(fed.award, (id)));
    }

    function sendConsumerEndpoint(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, Federation.State.Awarded);
        _call(_consumerOr(a, id), 0, abi.encodeCall(fed.sendConsumerEndpoint, (id, hex"c0")));
    }

    function confirmDeployment(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, Federation.State.Awarded);
        _call(_winnerOr(a, id), 0, abi.encodeCall(fed.confirmDeployment, (id, hex"d0")));
    }

    function acknowledge(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, Federation.State.Deployed);
        _settleAction(id, _consumerOr(a, id), abi.encodeCall(fed.acknowledge, (id)));
    }

    function settle(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, Federation.State.Acknowledged);
        _settleAction(id, _actor(a), abi.encodeCall(fed.settle, (id)));
    }

    /// A settlement pays the winner its price and its held bond, the consumer the rest.
    function _settleAction(bytes32 id, address caller, bytes memory data) internal {
        Federation.ServiceView memory v = fed.serviceOf(id);
        (,,,, bool bonded) = fed.bidOf(id, v.winner);
        uint256 w0 = fed.credits(v.winner);
        uint256 c0 = fed.credits(v.consumer);
        if (!_call(caller, 0, data)) return;
        finished[id] = true;
        if (fed.credits(v.winner) != w0 + v.bestPrice + (bonded ? v.bond : 0)) _fail("settle: winner paid");
        if (fed.credits(v.consumer) != c0 + v.maxPrice - v.bestPrice) _fail("settle: consumer refund");
    }

    function decline(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, Federation.State.Awarded);
        _call(_winnerOr(a, id), 0, abi.encodeCall(fed.decline, (id)));
    }

    function cancel(uint256 a, uint256 s) external {
        if (s % 3 != 0) return; // rarer: most services should play out
        bytes32 id = _service(s / 3);
        if (_call(_consumerOr(a, id), 0, abi.encodeCall(fed.cancel, (id)))) finished[id] = true;
    }

    function reopen(uint256 a, uint256 s, uint32 window) external {
        bytes32 id = _serviceIn(s, Federation.State.Awarded);
        window = uint32(bound(window, 1, 600));
        _call(_consumerOr(a, id), 0, abi.encodeCall(fed.reopen, (id, window)));
    }

    function terminate(uint256 a, uint256 s) external {
        bytes32 id = a % 3 == 0 ? _serviceIn(s, Federation.State.Acknowledged) : _serviceIn(s, Federation.State.Deployed);
        address c = a % 2 == 0 ? _consumerOr(a / 2, id) : _winnerOr(a / 2, id);
        if (_call(c, 0, abi.encodeCall(fed.terminate, (id)))) finished[id] = true;
    }

    function reclaimBond(uint256 a, uint256 s) external {
        bytes32 id = _service(s);
        address c = _actor(a);
        for (uint256 i = 0; i < actors.length && a % 4 != 0; ++i) {
            (,,,, bool bonded) = fed.bidOf(id, actors[(a + i) % actors.length]);
            if (bonded) {
                c = actors[(a + i) % actors.length];
                break;
            }
        }
        _call(c, 0, abi.encodeCall(fed.reclaimBond, (id)));
    }

    function withdraw(uint256 a) external {
        address c = _actor(a);
        uint256 credit = fed.credits(c);
        uint256 before = c.balance;
        if (!_call(c, 0, abi.encodeCall(fed.withdraw, ()))) return;
        if (c.balance != before + credit) _fail("withdraw: amount");
        ghostOut += credit;
    }

    function leave(uint256 a) external {
        if (a % 4 != 0) return; // rarer than the market's calls: members stay to trade
        _call(_actor(a / 4), 0, abi.encodeCall(fed.leave, ()));
    }

    function join(uint256 a) external {
        address c = _actor(a);
        _call(c, 0, abi.encodeCall(fed.register, ("again", pubkey[c])));
    }

    function allow(uint256 a) external {
        fed.allow(_actor(a));
    }

    function disallow(uint256 a) external {
        if (a % 8 != 0) return; // rarer than the other membership changes
        fed.disallow(_actor(a / 8));
    }

    function warp(uint256 dt) external {
        vm.warp(block.timestamp + (dt % 8 == 0 ? bound(dt, 0, 300) : bound(dt, 0, 40)));
        vm.roll(block.number + 1);
    }

    /// A new block at the same or the next second (bids of one block share it).
    function roll(uint256 dt) external {
        vm.roll(block.number + 1);
        vm.warp(block.timestamp + dt % 2);
    }

    /// @dev The actions forge may call.
    function actions() external pure returns (bytes4[] memory s) {
        s = new bytes4[](21);
        s[0] = this.announce.selector;
        s[1] = this.bid.selector;
        s[2] = this.bid2.selector;
        s[3] = this.bid3.selector;
        s[4] = this.award.selector;
        s[5] = this.sendConsumerEndpoint.selector;
        s[6] = this.confirmDeployment.selector;
        s[7] = this.acknowledge.selector;
        s[8] = this.settle.selector;
        s[9] = this.decline.selector;
        s[10] = this.cancel.selector;
        s[11] = this.reopen.selector;
        s[12] = this.terminate.selector;
        s[13] = this.reclaimBond.selector;
        s[14] = this.withdraw.selector;
        s[15] = this.leave.selector;
        s[16] = this.join.selector;
        s[17] = this.allow.selector;
        s[18] = this.disallow.selector;
        s[19] = this.warp.selector;
        s[20] = this.roll.selector;
    }
}
