// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {TestBase} from "./TestBase.sol";
import {Federation} from "../../Federation.sol";

/// @dev Deploys the shipped Federation artifact (viaIR + optimizer, as on the chain), not the
///      unoptimised build forge makes of the source for the tests' types.
abstract contract FederationDeployer is TestBase {
    string internal constant ARTIFACT = "../mecfed/chain/data/Federation.json";

    function _deployFederation(Federation.Policy policy, address[] memory initialMembers)
        internal
        returns (Federation)
    {
        return Federation(vm.deployCode(ARTIFACT, abi.encode(policy, initialMembers)));
    }
}
