// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Federation} from "../Federation.sol";

/// @dev TEST ONLY. Federation plus a way to credit arbitrary addresses (contracts cannot be
///      members: their address is not derived from a public key), for the re-entrancy test.
contract FederationHarness is Federation {
    constructor(Policy policy_, address[] memory initialMembers) Federation(policy_, initialMembers) {}

    function fundCredit(address account) external payable {
        _credit(account, msg.value);
    }
}
