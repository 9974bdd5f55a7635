// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {FederationDeployer} from "./Deploy.sol";
import {Vm} from "./Vm.sol";
import {Federation} from "../../Federation.sol";

/// @dev A Federation (ALLOWLIST, this contract is admin) with N registered members whose
///      addresses derive from real secp256k1 keys (register checks the key binding), and
///      helpers shared by the fuzz tests.
abstract contract FederationFixture is FederationDeployer {
    uint256 internal constant N = 6;
    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant MAX_SEALED = 256;
    uint256 internal constant MAX_REQUIREMENTS = 1024;
    uint96 internal constant MAXP = 10 ether;
    address internal constant OUTSIDER = address(0xBAD0);

    Federation internal fed;
    address[] internal members;
    mapping(address => bytes) internal pubkeyOf;

    function setUp() public virtual {
        vm.warp(T0);
        for (uint256 i = 0; i < N; ++i) {
            (address a, bytes memory key) = _wallet(uint256(keccak256(abi.encode("member", i))));
            members.push(a);
            pubkeyOf[a] = key;
            vm.label(a, string.concat("m", vm.toString(i)));
            vm.deal(a, 1_000_000 ether);
        }
        vm.label(OUTSIDER, "outsider");
        vm.deal(OUTSIDER, 1_000_000 ether);
        fed = _deployFederation(Federation.Policy.ALLOWLIST, members);
        for (uint256 i = 0; i < N; ++i) {
            vm.prank(members[i]);
            fed.register(string.concat("mef-", vm.toString(i)), pubkeyOf[members[i]]);
        }
    }

    // ------------------------------------------------------------------ keys, callers

    /// @dev A key pair from any seed (mapped into the valid secp256k1 scalar range).
    function _wallet(uint256 seed) internal returns (address addr, bytes memory pubkey) {
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        Vm.Wallet memory w = vm.createWallet(bound(seed, 1, n - 1));
        return (w.addr, abi.encodePacked(w.publicKeyX, w.publicKeyY));
    }

    /// @dev A caller: one of the members (most seeds), the outsider, or an arbitrary address.
    function _caller(uint256 seed) internal view returns (address) {
        uint256 r = seed % (N + 2);
        if (r < N) return members[r];
        if (r == N) return OUTSIDER;
        address a = address(uint160(uint256(keccak256(abi.encode(seed)))));
        return a;
    }

    function _isMember(address a) internal view returns (bool) {
        for (uint256 i = 0; i < members.length; ++i) {
            if (members[i] == a) return true;
        }
        return false;
    }

    // ------------------------------------------------------------------ auction helpers

    uint32 internal constant OW = 60; // order window used by the helpers
    uint32 internal constant DW = 120; // deploy window
    uint32 internal constant CHW = 300; // challenge window

    /// @dev Announces with bidding window `bw` and the helpers' order/deploy/challenge windows.
    function _announce(address consumer, uint96 maxPrice, uint16 k, uint32 bw)
        internal
        returns (bytes32 id)
    {
        vm.deal(consumer, consumer.balance + maxPrice);
        vm.prank(consumer);
        id = fed.announce{value: maxPrice}(maxPrice, k, bw, OW, DW, CHW, "req");
    }

    function _bond(bytes32 id) internal view returns (uint96) {
        return fed.serviceOf(id).bond;
    }

    /// @dev A bid with the bond due (none if the bidder holds one on `id`).
    function _bid(address provider, bytes32 id, uint96 price) internal {
        (,,,, bool bonded) = fed.bidOf(id, provider);
        uint96 due = bonded ? 0 : _bond(id);
        vm.deal(provider, provider.balance + due);
        vm.prank(provider);
        fed.bid{value: due}(id, price, hex"5ea1ed");
    }

    /// @dev Announced by members[0] (k, bidding window as given), then bids by
    ///      members[1..bids] at prices 3, 4, 5, ... ether (members[1] lowest), one block each.
    function _withBids(uint16 k, uint256 bids, uint32 bw) internal returns (bytes32 id) {
        id = _announce(members[0], MAXP, k, bw);
        for (uint256 i = 1; i <= bids; ++i) {
            _bid(members[i], id, uint96((2 + i) * 1 ether));
            vm.roll(block.number + 1);
        }
    }

    function _nextBlock() internal {
        vm.roll(block.number + 1);
        vm.warp(block.timestamp + 1);
    }

    function _view(bytes32 id) internal view returns (Federation.ServiceView memory) {
        return fed.serviceOf(id);
    }

    function _state(bytes32 id) internal view returns (uint8) {
        return uint8(fed.stateOf(id));
    }

    function _confirmDeadline(bytes32 id) internal view returns (uint256) {
        return _view(id).confirmDeadline;
    }

    // ------------------------------------------------------------------ expected reverts

    function _expect(bytes4 selector) internal {
        vm.expectRevert(abi.encodeWithSelector(selector));
    }

    function _expectWrongState(uint8 expected, uint8 actual) internal {
        vm.expectRevert(abi.encodeWithSelector(Federation.WrongState.selector, expected, actual));
    }

    // States (Federation.State as uint8)
    uint8 internal constant NONE = 0;
    uint8 internal constant OPEN = 1;
    uint8 internal constant AWARDED = 2;
    uint8 internal constant DEPLOYED = 3;
    uint8 internal constant TERMINATED = 4;
    uint8 internal constant CANCELLED = 5;
    uint8 internal constant CLOSING = 6;
    uint8 internal constant ACKNOWLEDGED = 7;
}
