// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

interface IWithdraw {
    function withdraw() external;
}

/// @dev TEST ONLY. Re-enters `withdraw` from its receive hook.
///      swallow = false: the re-entrant failure propagates (whole withdraw reverts).
///      swallow = true: the re-entrant failure is caught; the outer withdraw completes once.
contract ReentrantWithdrawer {
    IWithdraw public immutable target;
    bool public swallow;
    uint256 public reentries;
    uint256 public received;
    bytes public lastError;

    constructor(IWithdraw target_, bool swallow_) {
        target = target_;
        swallow = swallow_;
    }

    function attack() external {
        target.withdraw();
    }

    receive() external payable {
        received += msg.value;
        if (reentries < 3) {
            reentries += 1;
            if (swallow) {
                try target.withdraw() {} catch (bytes memory err) {
                    lastError = err;
                }
            } else {
                target.withdraw();
            }
        }
    }
}
