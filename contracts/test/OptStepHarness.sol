// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Int8Step} from "../src/Int8Step.sol";

/// @notice Test-only: the one-step check of OptimisticJobs.proveStep without a job around it, so tests can
/// compare it with veriml.verify.trace on many states and benchmarks can measure it for any layer size.
contract OptStepHarness {
    event Checked(bytes32 stateHash, bytes32 nextHash);

    /// Hashes `state`, checks `row` against `weightsRoot` (unless the state is halted) and returns the hash
    /// of the next state, as proveStep computes it.
    function check(bytes calldata state, Int8Step.Row calldata row, bytes32 weightsRoot, bytes32[] calldata proof)
        external
        returns (bytes32 next)
    {
        bytes32 h = Int8Step.hashCalldata(state);
        (uint16 layer,,,) = Int8Step.parse(state);
        if (layer != Int8Step.HALT) {
            require(MerkleProof.verifyCalldata(proof, weightsRoot, Int8Step.rowLeaf(row)), "OptStepHarness: bad proof");
        }
        next = Int8Step.nextHash(state, row);
        emit Checked(h, next);
    }

    function haltedHash(bytes calldata output) external pure returns (bytes32) {
        return Int8Step.haltedHash(output);
    }

    function rowLeaf(Int8Step.Row calldata row) external pure returns (bytes32) {
        return Int8Step.rowLeaf(row);
    }
}
