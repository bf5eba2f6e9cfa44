"""Traces: state encoding, the one-step transition, padding with halted states, and the commitments."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from veriml.models.intmlp import IntMLP, IntModel, encode_pixels
from veriml.models.weights import tensor_leaves
from veriml.verify.merkle import verify_proof
from veriml.verify.trace import (
    HALT,
    State,
    final_state,
    initial_state,
    padded_steps,
    result_digest,
    run_trace,
    step,
    trace_leaf,
)

from .conftest import TEST_DIGITS


def test_state_encoding_round_trips_and_hashes() -> None:
    s = State(2, 5, b"\x01\xff\x00", b"\x7f\x80")
    enc = s.encode()
    assert enc == b"\x00\x02\x00\x05\x00\x00\x00\x03\x01\xff\x00\x7f\x80"
    assert State.decode(enc) == s and s.hash == keccak(enc)
    assert final_state(b"\x05").encode() == b"\xff\xff\x00\x00\x00\x00\x00\x01\x05"
    assert result_digest(b"\x05") == final_state(b"\x05").hash
    with pytest.raises(ValueError):
        State.decode(b"\x00\x00\x00\x00\x00\x00\x00\x09\x01")


def test_padded_steps() -> None:
    assert [padded_steps(n) for n in (1, 2, 3, 4, 5, 106, 128, 129)] == [1, 2, 4, 4, 8, 128, 128, 256]
    for bad in (0, 1 << 25):
        with pytest.raises(ValueError):
            padded_steps(bad)


def test_trace_shape_and_layer_transitions() -> None:
    mlp = IntMLP.random([4, 3, 2], seed=3)
    t = run_trace(b"\x01\x02\x03\x04", mlp.book)
    assert t.steps == 5 and t.padded == 8 and len(t.states) == 9
    layers = [(s.layer, s.row, len(s.x), len(s.y)) for s in t.states]
    assert layers[:6] == [(0, 0, 4, 0), (0, 1, 4, 1), (0, 2, 4, 2), (1, 0, 3, 0), (1, 1, 3, 1), (HALT, 0, 2, 0)]
    assert all(s == t.states[5] for s in t.states[5:])  # halted states repeat
    assert step(t.states[5], mlp.book) == t.states[5]
    assert t.state_at(1000) == t.states[5] and t.hash_at(77) == t.result_digest
    assert t.states[0] == initial_state(b"\x01\x02\x03\x04")
    # following a claim of more steps than it took
    longer = run_trace(b"\x01\x02\x03\x04", mlp.book, length=32)
    assert longer.padded == 32 and longer.steps == 5 and longer.result_digest == t.result_digest


def test_unfinished_trace_refuses_states_past_its_end() -> None:
    mlp = IntMLP.random([4, 3, 2], seed=3)
    short = run_trace(b"\x01\x02\x03\x04", mlp.book, length=2)
    assert short.padded == 2 and not short.states[-1].halted
    with pytest.raises(IndexError):
        short.state_at(3)


def test_trace_root_proves_every_state_at_its_index() -> None:
    t = IntModel.load().mlp.trace(encode_pixels(TEST_DIGITS[0]))
    for i in range(t.padded + 1):
        assert verify_proof(t.proof(i), t.root, trace_leaf(i, t.hashes[i]))
    # the index is bound: state 3's hash does not prove as state 4
    assert not verify_proof(t.proof(4), t.root, trace_leaf(4, t.hashes[3]))


def test_row_leaves_are_the_weights_file_tensor_leaves() -> None:
    m = IntModel.load()
    leaves = dict(tensor_leaves(m.directory / m.manifest.weights_file))
    assert leaves == {r.name: r.leaf for r in m.mlp.rows}
    for r in m.mlp.rows[::17]:
        assert verify_proof(m.mlp.weights_proof(r.layer, r.row), m.mlp.weights_root, r.leaf)


def test_step_rejects_rows_of_another_position() -> None:
    mlp = IntMLP.random([4, 3, 2], seed=3)
    from veriml.verify.trace import apply_row

    with pytest.raises(ValueError):
        apply_row(initial_state(b"\x00" * 4), mlp.book[(0, 1)])
