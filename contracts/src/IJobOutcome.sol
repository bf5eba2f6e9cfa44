// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice How one scheme reads a job it opened on another (an audit escalating to a quorum, a training
/// job asking a quorum to arbitrate): every scheme contract answers it the same way.
interface IJobOutcome {
    enum Settlement {
        Open, // not settled yet
        Verified, // settled with a verified result: `digest` is it
        Failed // settled without one: refunded, disputed, rejected or overturned
    }

    function outcome(uint256 jobId) external view returns (Settlement settlement, bytes32 digest);
}
