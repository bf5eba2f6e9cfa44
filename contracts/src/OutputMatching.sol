// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title OutputMatching
/// @notice The one place that decides whether two revealed digests count as the same output, and how
/// reveals are grouped. Mirrored off-chain by veriml.verify.quorum.
library OutputMatching {
    uint8 internal constant POLICY_EXACT = 0;
    uint8 internal constant POLICY_TOKENS = 1;
    uint8 internal constant POLICY_PHASH = 2;

    /// exact/tokens (and, until it gets its own rule, tolerance): equal digests. phash: the low 64 bits
    /// are a perceptual hash and match within `threshold` differing bits.
    function matches(uint8 policy, uint32 threshold, bytes32 a, bytes32 b) internal pure returns (bool) {
        if (policy == POLICY_PHASH) {
            return popcount64(uint64(uint256(a)) ^ uint64(uint256(b))) <= threshold;
        }
        return a == b;
    }

    function popcount64(uint64 x) internal pure returns (uint256 count) {
        while (x != 0) {
            x &= x - 1;
            count++;
        }
    }

    /// Index of the revealed digest that matches the most revealed digests (first wins a tie), and how
    /// many it matches (itself included). Size 0 when nothing was revealed.
    function largestCluster(bytes32[] memory digests, bool[] memory revealed, uint8 policy, uint32 threshold)
        internal
        pure
        returns (uint256 center, uint256 size)
    {
        for (uint256 i = 0; i < digests.length; i++) {
            if (!revealed[i]) continue;
            uint256 count = 0;
            for (uint256 k = 0; k < digests.length; k++) {
                if (revealed[k] && matches(policy, threshold, digests[i], digests[k])) count++;
            }
            if (count > size) {
                size = count;
                center = i;
            }
        }
    }
}
