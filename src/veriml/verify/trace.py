"""Execution traces of the integer MLP runtime, step by step, as the optimistic scheme commits and checks them.

One **step** computes one output neuron of one layer: a dot product of the layer's int8 input with one int8
weights row, plus an int32 bias, requantized to int8 (see `requantize`). A step costs the chain O(fan-in)
to re-check, however wide the layer, so the one-step check stays far below a block's gas (see
benchmarks/optimistic_cost.py); a 64-64-32-10 MLP takes 106 steps.

A **state** is `(layer, row, x, y)`: the layer's input activations `x` and the outputs computed so far `y`.
It is encoded as `uint16 layer | uint16 row | uint32 len(x) | x | y` (big-endian; int8 as bytes) and
hashed with keccak256. A layer's last row moves on to `(layer + 1, 0, y, "")`; the last layer's last row
to the **halted** state `(HALT, 0, output, "")`, which every later step maps to itself. So a trace can be
padded with halted states to a power-of-two length `P` and bisected in exactly ceil(log2(steps)) rounds,
and the result digest is the hash of the halted state (`result_digest(output)`), computable from the output
alone. An input whose length is not layer 0's fan-in halts at once with an empty output.

The trace root is the OpenZeppelin-compatible Merkle root (`veriml.verify.merkle`) over the leaves
`keccak(keccak(abi.encode(uint256 index, bytes32 stateHash)))` for index 0..P: the index is inside the leaf
because sorted-pair proofs do not bind a position.

Weights are committed one leaf per step: the row `(layer, row)` is the safetensors tensor `row.<layer>.<row>`
of dtype U8 whose bytes are a 13-byte header (rows in the layer, last-layer flag, ReLU flag, multiplier,
shift, bias) followed by the int8 weights, and its leaf is `veriml.models.weights`' tensor leaf, so the
model's ordinary weights root covers every row. `Int8Step.sol` mirrors this module to the byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from eth_hash.auto import keccak

from veriml.verify.merkle import MerkleTree, leaf_hash

HALT = 0xFFFF
STATE_HEADER = struct.Struct(">HHI")
ROW_HEADER = struct.Struct(">HBBIBi")  # rows, last, relu, multiplier, shift, bias
INT8_MIN, INT8_MAX = -128, 127
MAX_STEPS = 1 << 24  # OptimisticJobs.MAX_STEPS


def requantize(acc: int, multiplier: int, shift: int, relu: bool) -> int:
    """int32 accumulator -> int8: `(acc * multiplier + 2^(shift-1)) >> shift` (arithmetic shift, so rounding
    half up), clamped to [-128, 127], then ReLU if asked."""
    rounding = 1 << (shift - 1) if shift > 0 else 0
    v = (acc * multiplier + rounding) >> shift
    v = min(INT8_MAX, max(INT8_MIN, v))
    return max(0, v) if relu else v


def int8s(data: bytes) -> np.ndarray:
    """Bytes as int8 values (widened to int64 so sums cannot overflow)."""
    return np.frombuffer(data, dtype=np.int8).astype(np.int64)


@dataclass(frozen=True)
class State:
    """The machine between two steps: `layer`'s input `x` and the outputs `y` of its rows `0..row-1`."""

    layer: int
    row: int
    x: bytes
    y: bytes = b""

    @property
    def halted(self) -> bool:
        return self.layer == HALT

    def encode(self) -> bytes:
        return STATE_HEADER.pack(self.layer, self.row, len(self.x)) + self.x + self.y

    @classmethod
    def decode(cls, data: bytes) -> State:
        layer, row, n = STATE_HEADER.unpack_from(data)
        if len(data) < STATE_HEADER.size + n:
            raise ValueError("state shorter than its header says")
        body = data[STATE_HEADER.size :]
        return cls(layer, row, body[:n], body[n:])

    @cached_property
    def hash(self) -> bytes:
        return keccak(self.encode())


def initial_state(data: bytes) -> State:
    """State 0 of a job: the raw input bytes are layer 0's int8 input."""
    return State(0, 0, bytes(data))


def final_state(output: bytes) -> State:
    """The halted state holding `output` (the last layer's int8 values)."""
    return State(HALT, 0, bytes(output))


def result_digest(output: bytes) -> bytes:
    """What the executor's result commits to: the hash of the halted state holding `output`."""
    return final_state(output).hash


@dataclass(frozen=True)
class WeightRow:
    """The weights of one step: row `row` of layer `layer`, with the layer's requantization."""

    layer: int
    row: int
    rows: int  # output width of the layer
    last: bool  # the model's last layer: its last row halts
    relu: bool
    multiplier: int
    shift: int
    bias: int
    weights: bytes  # int8, length = fan-in

    @property
    def name(self) -> str:
        return f"row.{self.layer}.{self.row}"

    def raw(self) -> bytes:
        """The bytes stored in the U8 tensor `name`: header then weights."""
        header = ROW_HEADER.pack(self.rows, self.last, self.relu, self.multiplier, self.shift, self.bias)
        return header + self.weights

    @classmethod
    def from_raw(cls, name: str, raw: bytes) -> WeightRow:
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "row":
            raise ValueError(f"not a weights row tensor: {name!r}")
        rows, last, relu, mult, shift, bias = ROW_HEADER.unpack_from(raw)
        weights = raw[ROW_HEADER.size :]
        return cls(int(parts[1]), int(parts[2]), rows, bool(last), bool(relu), mult, shift, bias, weights)

    def leaf_data(self) -> bytes:
        """`veriml.models.weights.tensor_leaf_data(name, "U8", [len(raw)], raw)`."""
        raw = self.raw()
        return b"\x00".join((self.name.encode(), b"U8", str(len(raw)).encode(), raw))

    @property
    def leaf(self) -> bytes:
        return leaf_hash(self.leaf_data())

    def as_tuple(self) -> tuple:
        """The `Int8Step.Row` struct as web3 takes it."""
        return (
            self.layer,
            self.row,
            self.rows,
            self.last,
            self.relu,
            self.multiplier,
            self.shift,
            self.bias,
            self.weights,
        )


RowBook = Mapping[tuple[int, int], WeightRow]


def step(state: State, rows: RowBook) -> State:
    """The one-step transition (`Int8Step.nextHash`): halted states stay put; otherwise compute one neuron."""
    if state.halted:
        return state
    r = rows[(state.layer, state.row)]
    return apply_row(state, r)


def apply_row(state: State, r: WeightRow) -> State:
    """Apply weights row `r` to `state` (which must be at `r`'s position)."""
    if (r.layer, r.row) != (state.layer, state.row):
        raise ValueError(f"row {r.name} does not belong to state at ({state.layer}, {state.row})")
    if len(r.weights) != len(state.x):
        return State(HALT, 0, b"")  # malformed input: halt with an empty output
    acc = int(np.dot(int8s(state.x), int8s(r.weights))) + r.bias
    out = struct.pack(">b", requantize(acc, r.multiplier, r.shift, r.relu))
    if r.row + 1 < r.rows:
        return State(r.layer, r.row + 1, state.x, state.y + out)
    if r.last:
        return State(HALT, 0, state.y + out)
    if r.layer + 1 >= HALT:
        raise ValueError("too many layers")
    return State(r.layer + 1, 0, state.y + out)


def padded_steps(steps: int) -> int:
    """The bisected length: the least power of two >= steps (`OptimisticJobs.paddedSteps`)."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    return 1 << (steps - 1).bit_length()


def trace_leaf(index: int, state_hash: bytes) -> bytes:
    """The Merkle leaf for state `index`: keccak(keccak(abi.encode(uint256 index, bytes32 hash)))."""
    return leaf_hash(index.to_bytes(32, "big") + state_hash)


@dataclass(frozen=True)
class Trace:
    """States `0..padded` of one execution (halted states repeat after `steps`) and their commitment."""

    states: tuple[State, ...]
    steps: int  # the number of steps the executor posts

    @property
    def padded(self) -> int:
        return len(self.states) - 1

    @property
    def output(self) -> bytes:
        return self.states[-1].x

    @cached_property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(s.hash for s in self.states)

    @cached_property
    def tree(self) -> MerkleTree:
        return MerkleTree.from_leaves([trace_leaf(i, h) for i, h in enumerate(self.hashes)])

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def result_digest(self) -> bytes:
        return self.hashes[-1]

    def proof(self, index: int) -> list[bytes]:
        return self.tree.proof(index)

    def state_at(self, index: int) -> State:
        """State `index`, also past the end of a halted trace (halted states repeat), so a challenger can
        follow an executor that claims more steps than it took."""
        if index < len(self.states):
            return self.states[index]
        if self.states[-1].halted:
            return self.states[-1]
        raise IndexError(f"state {index} is past the end of an unfinished trace")

    def hash_at(self, index: int) -> bytes:
        return self.state_at(index).hash


Tamper = Callable[[int, State], State]


def run_trace(data: bytes, rows: RowBook, length: int | None = None, tamper: Tamper | None = None) -> Trace:
    """Execute step by step from the input until halted, then pad with the halted state to a power of two
    (or to `length` states past 0, when a challenger must follow an executor's longer or shorter claim).

    `tamper(index, state)` may replace state `index` (fault injection: later steps start from the result)."""
    states = [initial_state(data)]
    steps = None
    while True:
        if len(states) > MAX_STEPS + 1:
            raise ValueError(f"execution did not halt within {MAX_STEPS} steps")
        s = states[-1]
        if s.halted and steps is None:
            steps = len(states) - 1
        target = length if length is not None else (padded_steps(steps) if steps is not None else None)
        if target is not None and len(states) > target:
            break
        nxt = step(s, rows)
        if tamper is not None:
            nxt = tamper(len(states), nxt)
        states.append(nxt)
    return Trace(tuple(states), steps if steps is not None else len(states) - 1)


def row_book(rows: Sequence[WeightRow]) -> dict[tuple[int, int], WeightRow]:
    return {(r.layer, r.row): r for r in rows}


def lie_at(rows: RowBook, data: bytes, k: int, delta: int) -> Trace:
    """The trace whose state `k` has the value written by step k - 1 -> k shifted by `delta` (mod 256), and
    every later state computed honestly from it: a lie about one step, for tests, faults and benchmarks."""

    def tamper(i: int, s: State) -> State:
        return _bump(s, delta) if i == k else s

    return run_trace(data, rows, tamper=tamper)


def _bump(s: State, delta: int) -> State:
    """`s` with the last value a step wrote (the end of y, or of x after a layer change) shifted by delta."""

    def shift(b: bytes) -> bytes:
        return b[:-1] + bytes([(b[-1] + delta) % 256])

    if s.y:
        return State(s.layer, s.row, s.x, shift(s.y))
    return State(s.layer, s.row, shift(s.x), s.y)
