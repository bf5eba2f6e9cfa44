// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Where assignment randomness comes from. Swap in a VRF-backed source where the chain has one.
interface IRandomness {
    /// A seed for `jobId`, submitted in block `submitBlock`; must not be knowable when the job is submitted.
    function seed(uint256 jobId, uint256 submitBlock) external view returns (bytes32);

    /// Whether `seed` can be computed for a job submitted in `submitBlock` right now.
    function ready(uint256 submitBlock) external view returns (bool);

    /// Whether the seed for `submitBlock` can never be computed any more (the job must be refunded).
    function expired(uint256 submitBlock) external view returns (bool);
}
