// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IRandomness} from "./IRandomness.sol";

/// @title BlockhashRandomness
/// @notice Seeds assignment with the hash of the block that included the submission. The submitter
/// cannot know that hash when it signs, so it cannot grind the draw; a block producer could bias it,
/// which is acceptable on local and test chains only. `blockhash` covers the last 256 blocks, after
/// which the job can no longer be assigned and is refunded.
contract BlockhashRandomness is IRandomness {
    error NotReady(uint256 submitBlock);

    function seed(uint256 jobId, uint256 submitBlock) external view returns (bytes32) {
        if (!ready(submitBlock)) revert NotReady(submitBlock);
        return keccak256(abi.encode(blockhash(submitBlock), jobId));
    }

    function ready(uint256 submitBlock) public view returns (bool) {
        return block.number > submitBlock && !expired(submitBlock);
    }

    function expired(uint256 submitBlock) public view returns (bool) {
        return block.number > submitBlock + 256;
    }
}
