// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @dev The forge cheatcodes these tests use, and nothing else (forge-std is not vendored: this
///      is our own minimal declaration of the cheatcode interface forge implements at VM_ADDRESS).
interface Vm {
    struct Wallet {
        address addr;
        uint256 publicKeyX;
        uint256 publicKeyY;
        uint256 privateKey;
    }

    // environment
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function deal(address account, uint256 newBalance) external;
    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32 data);
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);

    // deployment of an artifact (a forge artifact name or the path of a JSON file with bytecode)
    function deployCode(string calldata artifactPath, bytes calldata constructorArgs)
        external
        returns (address deployedAddress);

    // callers
    function prank(address msgSender) external;

    // expectations
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter)
        external;

    // fuzzing
    function assume(bool condition) external pure;

    // keys, labels, formatting
    function createWallet(uint256 privateKey) external returns (Wallet memory wallet);
    function label(address account, string calldata newLabel) external;
    function toString(uint256 value) external pure returns (string memory);
    function toString(address value) external pure returns (string memory);
    function toString(bytes32 value) external pure returns (string memory);
}
