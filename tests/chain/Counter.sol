// SPDX-License-Identifier: Apache-2.0
// Test contract for mecfed.chain: counters, custom-error reverts, indexed events.
pragma solidity ^0.8.20;

contract Counter {
    error TooBig(uint256 value, address caller);
    error Forbidden();

    event Bumped(address indexed by, uint256 indexed tag, uint256 count);

    uint256 public count;

    function inc() external {
        count += 1;
        emit Bumped(msg.sender, 0, count);
    }

    function bump(uint256 tag) external {
        count += 1;
        emit Bumped(msg.sender, tag, count);
    }

    function failWith(uint256 value) external view {
        if (value == 0) revert Forbidden();
        if (value == 1) require(false, "plain reason");
        if (value == 2) assert(false);
        revert TooBig(value, msg.sender);
    }

    // Reverts only when mined after `count` reached `limit`, so gas
    // estimation succeeds but the mined transaction fails (status 0).
    function incUntil(uint256 limit) external {
        if (count >= limit) revert TooBig(count, msg.sender);
        count += 1;
        emit Bumped(msg.sender, 0, count);
    }
}
