// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {NodeRegistry} from "./NodeRegistry.sol";

/// @title StakeDraw
/// @notice How every scheme picks its nodes: a stake-weighted draw without replacement over the candidate
/// list frozen when the job was submitted. A job commits to `digest(candidates, weights)` at submission;
/// whoever assigns it passes the list back. Drawing over the registry as it is at assignment would let a
/// node that has seen the (public) seed top up, register or leave to steer the draw.
library StakeDraw {
    /// Emitted by each scheme at submission, so assigners can pass the frozen list back.
    event CandidatesFrozen(uint256 indexed jobId, address[] candidates, uint256[] weights);

    function digest(address[] memory cands, uint256[] memory weights) internal pure returns (bytes32) {
        return keccak256(abi.encode(cands, weights));
    }

    /// The frozen weights with nodes that have since left the registry set to 0, and how many remain.
    /// With an unbonding delay above the 256-block assignment horizon no eligible node can have left.
    function liveWeights(NodeRegistry nodes, address[] calldata cands, uint256[] calldata frozen)
        internal
        view
        returns (uint256[] memory weights, uint256 live)
    {
        weights = frozen;
        for (uint256 i = 0; i < cands.length; i++) {
            if (nodes.isRegistered(cands[i])) live++;
            else weights[i] = 0;
        }
    }

    /// `n` distinct nodes; each pick removes the chosen node's weight. Needs `n` nodes of nonzero weight.
    function draw(address[] memory cands, uint256[] memory weights, uint256 n, bytes32 seed)
        internal
        pure
        returns (address[] memory drawn)
    {
        drawn = new address[](n);
        uint256 total = 0;
        for (uint256 i = 0; i < weights.length; i++) {
            total += weights[i];
        }
        for (uint256 k = 0; k < n; k++) {
            uint256 r = uint256(keccak256(abi.encode(seed, k))) % total;
            uint256 acc = 0;
            for (uint256 i = 0; i < cands.length; i++) {
                if (weights[i] == 0) continue;
                acc += weights[i];
                if (r < acc) {
                    drawn[k] = cands[i];
                    total -= weights[i];
                    weights[i] = 0;
                    break;
                }
            }
        }
    }
}
