// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {QuorumJobs} from "../src/QuorumJobs.sol";

/// @notice Test-only attacker: a user contract whose receive() tries to withdraw again.
contract ReentrantUser {
    QuorumJobs public immutable market;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;

    constructor(QuorumJobs market_) {
        market = market_;
    }

    function submit(bytes32 modelId, bytes32 inputHash, uint8 n) external payable returns (uint256) {
        return market.submit{value: msg.value}(modelId, inputHash, "", n);
    }

    function withdraw() external {
        market.withdraw();
    }

    receive() external payable {
        if (reentryAttempts == 0) {
            reentryAttempts = 1;
            try market.withdraw() {
                reentrySucceeded = true;
            } catch {}
        }
    }
}
