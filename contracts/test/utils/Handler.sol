// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationDeployer} from "./Deploy.sol";
import {Vm} from "./Vm.sol";
import {Federation} from "../../Federation.sol";

/// @dev Drives a Federation (ALLOWLIST; this handler is its admin) with random sequences of
///      every state-changing call by several actors, and keeps an independent reference model
///      of what each call must do. Each action predicts from the model whether the contract
///      must accept the call; a disagreement is recorded in `mismatch` (an invariant checks it),
///      an agreed refusal reverts the action (so forge's metrics count it as a revert).
contract FederationHandler is FederationDeployer {
    uint8 internal constant NONE = 0;
    uint8 internal constant OPEN = 1;
    uint8 internal constant AWARDED = 2;
    uint8 internal constant DEPLOYED = 3;
    uint8 internal constant TERMINATED = 4;
    uint8 internal constant CANCELLED = 5;

    uint256 internal constant WINDOW = 600; // windows are 1..WINDOW seconds
    uint256 public constant ACTORS = 5; // actors[ACTORS] is an outsider (not allowed at first)

    Federation public immutable fed;
    address[] public actors;
    mapping(address => bytes) internal pubkey;

    // ---- the reference model
    struct MService {
        address consumer;
        uint96 maxPrice;
        uint32 biddingWindow;
        uint32 confirmWindow;
        uint256 deadline;
        uint256 quorum;
        uint256 count;
        uint256 round;
        uint96 bestPrice;
        address best;
        uint8 state; // stored state
    }

    struct MBid {
        uint96 price;
        uint256 round;
        bool excluded;
    }

    bytes32[] public ids;
    mapping(bytes32 => MService) internal _ms;
    mapping(bytes32 => mapping(address => MBid)) internal _mb;
    mapping(bytes32 => mapping(address => bool)) public everBid;
    mapping(bytes32 => address) public paidProvider;
    mapping(address => uint256) public ghostCredit;
    mapping(address => bool) public active;
    mapping(address => bool) public allowed;
    uint256 public ghostEscrowIn;
    uint256 public ghostPaidOut;
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
            active[actors[i]] = true;
            allowed[actors[i]] = true;
        }
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    function model(bytes32 id) external view returns (MService memory) {
        return _ms[id];
    }

    // ------------------------------------------------------------------ plumbing

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    /// @dev An active actor other than `not` (if there is one) most of the time, else any.
    function _activeActor(uint256 seed, address not) internal view returns (address) {
        if (seed % 4 != 0) {
            for (uint256 i = 0; i < actors.length; ++i) {
                address c = actors[(seed + i) % actors.length];
                if (active[c] && c != not) return c;
            }
        }
        return _actor(seed);
    }

    /// @dev Mostly one of the latest services (those still in play), sometimes any, sometimes
    ///      an id that was never announced.
    function _service(uint256 seed) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n == 0 || seed % 10 == 0) return keccak256(abi.encode("unknown", seed));
        if (seed % 10 < 7) return ids[n - 1 - (seed / 10) % (n < 3 ? n : 3)];
        return ids[seed % n];
    }

    /// @dev Mostly a service in effective state `want` (if any), else as `_service`.
    function _serviceIn(uint256 seed, uint8 want) internal view returns (bytes32) {
        uint256 n = ids.length;
        if (n != 0 && seed % 4 != 0) {
            for (uint256 i = 0; i < n; ++i) {
                bytes32 id = ids[n - 1 - (seed / 4 + i) % n];
                if (_effective(_ms[id]) == want) return id;
            }
        }
        return _service(seed);
    }

    function _exists(bytes32 id) internal view returns (bool) {
        return _ms[id].state != NONE;
    }

    function _effective(MService storage m) internal view returns (uint8) {
        if (m.state == OPEN && block.timestamp >= m.deadline && m.count != 0) return AWARDED;
        return m.state;
    }

    function _call(address caller, bytes memory data) internal returns (bool ok, bytes memory ret) {
        vm.prank(caller);
        (ok, ret) = address(fed).call(data);
    }

    /// @dev Compares the contract's verdict with the model's. Returns whether to apply effects.
    function _agree(string memory action, bool predicted, bool ok, bytes memory ret) internal returns (bool) {
        if (ok != predicted && bytes(mismatch).length == 0) {
            bytes32 sel = ret.length >= 4 ? bytes32(bytes4(ret)) : bytes32(0);
            mismatch = ok
                ? string.concat(action, ": accepted, the model refuses")
                : string.concat(action, ": refused with ", vm.toString(sel), ", the model accepts");
        }
        if (!ok && !predicted) revert("refused as predicted");
        return ok && predicted;
    }

    // ------------------------------------------------------------------ actions

    function announce(uint256 a, uint96 maxPrice, uint16 k, uint32 bw, uint32 cw) external {
        address c = _activeActor(a, address(0));
        maxPrice = uint96(bound(maxPrice, 1, 100 ether));
        k = uint16(bound(k, 1, 3));
        bw = uint32(bound(bw, 1, WINDOW));
        cw = uint32(bound(cw, 1, WINDOW));
        // the fuzzer favours tiny values; most services get windows long enough to play out
        if (bw < 30 && a % 4 != 0) bw += 120;
        if (cw < 30 && a % 4 != 0) cw += 120;
        vm.deal(c, c.balance + maxPrice);
        vm.prank(c);
        (bool ok, bytes memory ret) =
            address(fed).call{value: maxPrice}(abi.encodeCall(fed.announce, (maxPrice, k, bw, cw, "")));
        if (!_agree("announce", active[c], ok, ret)) return;
        bytes32 id = abi.decode(ret, (bytes32));
        if (_exists(id)) mismatch = "announce: id reused";
        ids.push(id);
        MService storage m = _ms[id];
        m.consumer = c;
        m.maxPrice = maxPrice;
        m.biddingWindow = bw;
        m.confirmWindow = cw;
        m.deadline = block.timestamp + bw;
        m.quorum = k;
        m.state = OPEN;
        ghostEscrowIn += maxPrice;
    }

    /// Bids are the most frequent transaction: four selectors share this action (forge picks
    /// selectors uniformly).
    function bid(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function bid2(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function bid3(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function bid4(uint256 a, uint256 s, uint96 price) external {
        _bidAction(a, s, price);
    }

    function _bidAction(uint256 a, uint256 s, uint96 price) internal {
        bytes32 id = _serviceIn(s, OPEN);
        MService storage m = _ms[id];
        address c = _activeActor(a, m.consumer);
        price = uint96(bound(price, 0, uint256(m.maxPrice) + 1));
        MBid storage prev = _mb[id][c];
        bool newBidder = prev.price == 0 || prev.round != m.round;
        // a re-bid is mostly an undercut of one's own live bid
        if (!newBidder && prev.price > 1 && a % 3 != 0) price = uint96(bound(price, 1, prev.price - 1));
        bool predicted = active[c] && m.state == OPEN && block.timestamp < m.deadline && price != 0
            && price <= m.maxPrice && c != m.consumer
            && (newBidder ? (m.round == 0 || (prev.price != 0 && !prev.excluded)) : price < prev.price);
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.bid, (id, price, hex"5ea1ed")));
        if (!_agree("bid", predicted, ok, ret)) return;
        if (m.count == 0 || price < m.bestPrice) (m.best, m.bestPrice) = (c, price);
        prev.price = price;
        prev.round = m.round;
        everBid[id][c] = true;
        if (newBidder) {
            m.count += 1;
            if (m.count == m.quorum) (m.state, m.deadline) = (AWARDED, block.timestamp);
        }
    }

    function award(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, AWARDED);
        MService storage m = _ms[id];
        address c = a % 4 != 0 && _exists(id) ? m.consumer : _actor(a);
        bool predicted =
            _exists(id) && c == m.consumer && m.state == OPEN && block.timestamp >= m.deadline && m.count != 0;
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.award, (id)));
        if (!_agree("award", predicted, ok, ret)) return;
        m.state = AWARDED;
    }

    function sendConsumerEndpoint(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, AWARDED);
        MService storage m = _ms[id];
        address c = a % 4 != 0 && _exists(id) ? m.consumer : _actor(a);
        bool predicted = _exists(id) && c == m.consumer && _effective(m) == AWARDED;
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.sendConsumerEndpoint, (id, hex"c0")));
        _agree("sendConsumerEndpoint", predicted, ok, ret);
    }

    function confirmDeployment(uint256 a, uint256 s) external {
        _confirmAction(a, s);
    }

    function confirmDeployment2(uint256 a, uint256 s) external {
        _confirmAction(a, s);
    }

    function _confirmAction(uint256 a, uint256 s) internal {
        bytes32 id = _serviceIn(s, AWARDED);
        MService storage m = _ms[id];
        address c = a % 4 != 0 && m.best != address(0) ? m.best : _actor(a);
        bool predicted = _exists(id) && _effective(m) == AWARDED && active[c] && c == m.best
            && block.timestamp <= m.deadline + m.confirmWindow;
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.confirmDeployment, (id, hex"d0")));
        if (!_agree("confirmDeployment", predicted, ok, ret)) return;
        m.state = DEPLOYED;
        ghostCredit[c] += m.bestPrice;
        ghostCredit[m.consumer] += m.maxPrice - m.bestPrice;
        paidProvider[id] = c;
    }

    function decline(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, AWARDED);
        MService storage m = _ms[id];
        address c = a % 4 != 0 && m.best != address(0) ? m.best : _actor(a);
        bool predicted = _exists(id) && _effective(m) == AWARDED && c == m.best;
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.decline, (id)));
        if (!_agree("decline", predicted, ok, ret)) return;
        _newRound(id, m, m.biddingWindow);
    }

    function cancel(uint256 a, uint256 s) external {
        bytes32 id = _service(s);
        MService storage m = _ms[id];
        address c = a % 4 != 0 && _exists(id) ? m.consumer : _actor(a);
        uint8 st = _effective(m);
        bool predicted = _exists(id) && c == m.consumer
            && (st == OPEN || (st == AWARDED && block.timestamp > m.deadline + m.confirmWindow));
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.cancel, (id)));
        if (!_agree("cancel", predicted, ok, ret)) return;
        m.state = CANCELLED;
        ghostCredit[c] += m.maxPrice;
    }

    function reopen(uint256 a, uint256 s, uint32 window) external {
        bytes32 id = _serviceIn(s, AWARDED);
        MService storage m = _ms[id];
        address c = a % 4 != 0 && _exists(id) ? m.consumer : _actor(a);
        window = uint32(bound(window, 1, WINDOW));
        bool predicted = _exists(id) && c == m.consumer && _effective(m) == AWARDED
            && block.timestamp > m.deadline + m.confirmWindow;
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.reopen, (id, window)));
        if (!_agree("reopen", predicted, ok, ret)) return;
        _newRound(id, m, window);
    }

    function terminate(uint256 a, uint256 s) external {
        bytes32 id = _serviceIn(s, DEPLOYED);
        MService storage m = _ms[id];
        address c = a % 3 == 1 && _exists(id) ? m.consumer : a % 3 == 2 && m.best != address(0) ? m.best : _actor(a);
        bool predicted = m.state == DEPLOYED && (c == m.consumer || c == m.best);
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.terminate, (id)));
        if (!_agree("terminate", predicted, ok, ret)) return;
        m.state = TERMINATED;
    }

    function withdraw(uint256 a) external {
        address c = _actor(a);
        uint256 credit = ghostCredit[c];
        uint256 before = c.balance;
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.withdraw, ()));
        if (!_agree("withdraw", credit != 0, ok, ret)) return;
        if (c.balance != before + credit && bytes(mismatch).length == 0) mismatch = "withdraw: amount";
        ghostCredit[c] = 0;
        ghostPaidOut += credit;
    }

    function leave(uint256 a) external {
        address c = _actor(a);
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.leave, ()));
        if (!_agree("leave", active[c], ok, ret)) return;
        active[c] = false;
    }

    function join(uint256 a) external {
        address c = _actor(a);
        (bool ok, bytes memory ret) = _call(c, abi.encodeCall(fed.register, ("again", pubkey[c])));
        if (!_agree("join", !active[c] && allowed[c], ok, ret)) return;
        active[c] = true;
    }

    function allow(uint256 a) external {
        address c = _actor(a);
        fed.allow(c);
        allowed[c] = true;
    }

    function disallow(uint256 a) external {
        if (a % 4 != 0) return; // rarer than the other membership changes
        address c = _actor(a / 4);
        fed.disallow(c);
        allowed[c] = false;
        active[c] = false;
    }

    function warp(uint256 dt) external {
        vm.warp(block.timestamp + bound(dt, 0, WINDOW / 2));
    }

    // ------------------------------------------------------------------ model internals

    /// @dev The model's new round: the winner is excluded; the quorum is counted afresh from the
    ///      model's bids (not derived the way the contract derives it).
    function _newRound(bytes32 id, MService storage m, uint256 window) internal {
        _mb[id][m.best].excluded = true;
        m.round += 1;
        m.count = 0;
        m.best = address(0);
        m.bestPrice = 0;
        m.deadline = block.timestamp + window;
        m.state = OPEN;
        uint256 eligible = 0;
        for (uint256 i = 0; i < actors.length; ++i) {
            MBid storage b = _mb[id][actors[i]];
            if (b.price != 0 && !b.excluded) eligible += 1;
        }
        m.quorum = eligible;
    }

    /// @dev The actions forge may call.
    function actions() external pure returns (bytes4[] memory s) {
        s = new bytes4[](19);
        s[0] = this.announce.selector;
        s[1] = this.bid.selector;
        s[2] = this.bid2.selector;
        s[3] = this.bid3.selector;
        s[4] = this.bid4.selector;
        s[5] = this.award.selector;
        s[6] = this.sendConsumerEndpoint.selector;
        s[7] = this.confirmDeployment.selector;
        s[8] = this.confirmDeployment2.selector;
        s[9] = this.decline.selector;
        s[10] = this.cancel.selector;
        s[11] = this.reopen.selector;
        s[12] = this.terminate.selector;
        s[13] = this.withdraw.selector;
        s[14] = this.leave.selector;
        s[15] = this.join.selector;
        s[16] = this.allow.selector;
        s[17] = this.disallow.selector;
        s[18] = this.warp.selector;
    }
}
