// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";

/// @title Int8Step
/// @notice One step of veriml's integer MLP runtime, recomputed on-chain (mirrored byte for byte by
/// veriml.verify.trace). A step computes one output neuron: the int8 dot product of the layer input `x`
/// with one weights row, plus an int32 bias, requantized to int8 by `clamp((acc * M + 2^(s-1)) >> s)` and
/// ReLU on hidden layers. A state is `uint16 layer | uint16 row | uint32 len(x) | x | y` (y: the layer's
/// outputs so far); the last row of a layer moves to `(layer + 1, 0, y, "")`, that of the last layer to the
/// halted state `(HALT, 0, output, "")`, which every further step leaves as it is.
library Int8Step {
    uint16 internal constant HALT = type(uint16).max;
    uint256 private constant STATE_HEADER = 8;
    uint256 private constant ROW_HEADER = 13;

    /// The weights of step (layer, row). Committed in the model's weights root as the safetensors tensor
    /// `row.<layer>.<row>`, dtype U8, holding the 13-byte header (rows..bias, big-endian) then the weights.
    struct Row {
        uint16 layer;
        uint16 row;
        uint16 rows; // output width of the layer
        bool last; // the model's last layer
        bool relu;
        uint32 multiplier;
        uint8 shift;
        int32 bias;
        bytes weights; // int8, one per input
    }

    function parse(bytes calldata state)
        internal
        pure
        returns (uint16 layer, uint16 row, bytes calldata x, bytes calldata y)
    {
        require(state.length >= STATE_HEADER, "Int8Step: state too short");
        layer = uint16(bytes2(state[0:2]));
        row = uint16(bytes2(state[2:4]));
        uint256 n = uint32(bytes4(state[4:8]));
        require(state.length >= STATE_HEADER + n, "Int8Step: state too short");
        x = state[STATE_HEADER:STATE_HEADER + n];
        y = state[STATE_HEADER + n:];
    }

    /// Whether `state` is the first state of a job whose input is `x`: (0, 0, x, "").
    function isInitial(bytes calldata state) internal pure returns (bool ok, bytes calldata x) {
        (uint16 layer, uint16 row, bytes calldata xs, bytes calldata y) = parse(state);
        return (layer == 0 && row == 0 && y.length == 0, xs);
    }

    /// The hash of the halted state holding `output`: what an executor's result digest is.
    function haltedHash(bytes calldata output) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(HALT, uint16(0), uint32(output.length), output));
    }

    /// keccak256 of calldata bytes, hashed in scratch memory that is not allocated (so a big state does not
    /// grow memory twice).
    function hashCalldata(bytes calldata data) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, data.offset, data.length)
            h := keccak256(p, data.length)
        }
    }

    /// The weights-root leaf of a row: veriml.models.weights' tensor leaf `name \0 dtype \0 shape \0 raw`,
    /// double-hashed as OpenZeppelin's MerkleProof expects.
    function rowLeaf(Row calldata r) internal pure returns (bytes32) {
        bytes memory name = abi.encodePacked("row.", Strings.toString(r.layer), ".", Strings.toString(r.row));
        bytes memory head = abi.encodePacked(
            name, bytes1(0), "U8", bytes1(0), Strings.toString(ROW_HEADER + r.weights.length), bytes1(0)
        );
        bytes memory data =
            abi.encodePacked(head, r.rows, r.last, r.relu, r.multiplier, r.shift, r.bias, r.weights);
        return keccak256(bytes.concat(keccak256(data)));
    }

    /// Sum of x[i] * w[i] over int8 values (x and w of equal length). Whole 32-byte words are unrolled (the
    /// loop overhead would otherwise double the cost per element); the tail goes byte by byte.
    function dot(bytes calldata x, bytes calldata w) internal pure returns (int256 acc) {
        assembly {
            let n := x.length
            let xp := x.offset
            let wp := w.offset
            let full := sub(n, mod(n, 32))
            for { let i := 0 } lt(i, full) { i := add(i, 32) } {
                let xw := calldataload(add(xp, i))
                let ww := calldataload(add(wp, i))
                acc := add(acc, mul(signextend(0, byte(0, xw)), signextend(0, byte(0, ww))))
                acc := add(acc, mul(signextend(0, byte(1, xw)), signextend(0, byte(1, ww))))
                acc := add(acc, mul(signextend(0, byte(2, xw)), signextend(0, byte(2, ww))))
                acc := add(acc, mul(signextend(0, byte(3, xw)), signextend(0, byte(3, ww))))
                acc := add(acc, mul(signextend(0, byte(4, xw)), signextend(0, byte(4, ww))))
                acc := add(acc, mul(signextend(0, byte(5, xw)), signextend(0, byte(5, ww))))
                acc := add(acc, mul(signextend(0, byte(6, xw)), signextend(0, byte(6, ww))))
                acc := add(acc, mul(signextend(0, byte(7, xw)), signextend(0, byte(7, ww))))
                acc := add(acc, mul(signextend(0, byte(8, xw)), signextend(0, byte(8, ww))))
                acc := add(acc, mul(signextend(0, byte(9, xw)), signextend(0, byte(9, ww))))
                acc := add(acc, mul(signextend(0, byte(10, xw)), signextend(0, byte(10, ww))))
                acc := add(acc, mul(signextend(0, byte(11, xw)), signextend(0, byte(11, ww))))
                acc := add(acc, mul(signextend(0, byte(12, xw)), signextend(0, byte(12, ww))))
                acc := add(acc, mul(signextend(0, byte(13, xw)), signextend(0, byte(13, ww))))
                acc := add(acc, mul(signextend(0, byte(14, xw)), signextend(0, byte(14, ww))))
                acc := add(acc, mul(signextend(0, byte(15, xw)), signextend(0, byte(15, ww))))
                acc := add(acc, mul(signextend(0, byte(16, xw)), signextend(0, byte(16, ww))))
                acc := add(acc, mul(signextend(0, byte(17, xw)), signextend(0, byte(17, ww))))
                acc := add(acc, mul(signextend(0, byte(18, xw)), signextend(0, byte(18, ww))))
                acc := add(acc, mul(signextend(0, byte(19, xw)), signextend(0, byte(19, ww))))
                acc := add(acc, mul(signextend(0, byte(20, xw)), signextend(0, byte(20, ww))))
                acc := add(acc, mul(signextend(0, byte(21, xw)), signextend(0, byte(21, ww))))
                acc := add(acc, mul(signextend(0, byte(22, xw)), signextend(0, byte(22, ww))))
                acc := add(acc, mul(signextend(0, byte(23, xw)), signextend(0, byte(23, ww))))
                acc := add(acc, mul(signextend(0, byte(24, xw)), signextend(0, byte(24, ww))))
                acc := add(acc, mul(signextend(0, byte(25, xw)), signextend(0, byte(25, ww))))
                acc := add(acc, mul(signextend(0, byte(26, xw)), signextend(0, byte(26, ww))))
                acc := add(acc, mul(signextend(0, byte(27, xw)), signextend(0, byte(27, ww))))
                acc := add(acc, mul(signextend(0, byte(28, xw)), signextend(0, byte(28, ww))))
                acc := add(acc, mul(signextend(0, byte(29, xw)), signextend(0, byte(29, ww))))
                acc := add(acc, mul(signextend(0, byte(30, xw)), signextend(0, byte(30, ww))))
                acc := add(acc, mul(signextend(0, byte(31, xw)), signextend(0, byte(31, ww))))
            }
            if lt(full, n) {
                let xw := calldataload(add(xp, full))
                let ww := calldataload(add(wp, full))
                for { let k := 0 } lt(k, sub(n, full)) { k := add(k, 1) } {
                    acc := add(acc, mul(signextend(0, byte(k, xw)), signextend(0, byte(k, ww))))
                }
            }
        }
    }

    /// int32 accumulator -> int8: (acc * M + 2^(s-1)) >> s (arithmetic), clamped, then ReLU if asked.
    function requantize(int256 acc, uint32 multiplier, uint8 shift, bool relu) internal pure returns (int8) {
        int256 v = acc * int256(uint256(multiplier));
        if (shift > 0) v = (v + (int256(1) << (shift - 1))) >> shift;
        if (v > 127) v = 127;
        else if (v < -128) v = -128;
        if (relu && v < 0) v = 0;
        return int8(v);
    }

    /// The hash of the state after `state`, computed with weights `r` (ignored for a halted state; the
    /// caller checks `r` against the model's weights root). A malformed input halts with an empty output.
    function nextHash(bytes calldata state, Row calldata r) internal pure returns (bytes32) {
        (uint16 layer, uint16 row, bytes calldata x, bytes calldata y) = parse(state);
        if (layer == HALT) return hashCalldata(state);
        require(r.layer == layer && r.row == row, "Int8Step: weights are for another step");
        if (r.weights.length != x.length) return keccak256(abi.encodePacked(HALT, uint16(0), uint32(0)));
        int8 out = requantize(dot(x, r.weights) + r.bias, r.multiplier, r.shift, r.relu);
        if (uint256(row) + 1 < r.rows) {
            return keccak256(abi.encodePacked(layer, row + 1, uint32(x.length), x, y, out));
        }
        uint16 nextLayer = HALT;
        if (!r.last) {
            require(uint256(layer) + 1 < HALT, "Int8Step: too many layers");
            nextLayer = layer + 1;
        }
        return keccak256(abi.encodePacked(nextLayer, uint16(0), uint32(y.length + 1), y, out));
    }
}
