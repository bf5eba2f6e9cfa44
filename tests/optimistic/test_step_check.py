"""The on-chain one-step check (Int8Step via OptStepHarness) computes exactly what veriml.verify.trace does."""

from __future__ import annotations

import random

import numpy as np
import pytest
from web3 import Web3

from veriml.chain.artifacts import load_artifact
from veriml.chain.deploy import deploy_contract
from veriml.chain.tx import call
from veriml.errors import ContractRevert
from veriml.models.intmlp import IntLayer, IntMLP
from veriml.verify.trace import HALT, State, WeightRow, apply_row, result_digest, run_trace, step

from .conftest import OptWorld

EMPTY_ROW = (0, 0, 0, False, False, 0, 0, 0, b"")


@pytest.fixture(scope="module")
def harness(base_world: OptWorld):  # noqa: ANN201
    address = deploy_contract(base_world.chain, base_world.owner, "OptStepHarness")
    return base_world.chain.w3.eth.contract(address=address, abi=load_artifact("OptStepHarness").abi)


def onchain_next(harness, mlp: IntMLP, state: State, row: WeightRow | None = None) -> bytes:  # noqa: ANN001
    if state.halted and row is None:
        return bytes(call(harness.functions.check(state.encode(), EMPTY_ROW, mlp.weights_root, [])))
    row = row or mlp.book[(state.layer, state.row)]
    proof = mlp.weights_proof(row.layer, row.row)
    return bytes(call(harness.functions.check(state.encode(), row.as_tuple(), mlp.weights_root, proof)))


def test_every_step_of_random_models_matches(harness) -> None:  # noqa: ANN001
    rng = random.Random(5)
    for seed in range(8):
        sizes = [rng.randint(1, 40) for _ in range(rng.randint(2, 4))]
        mlp = IntMLP.random(sizes, seed=seed, shift=rng.randint(1, 20))
        data = bytes(rng.randrange(256) for _ in range(sizes[0]))
        t = run_trace(data, mlp.book)
        for i in rng.sample(range(t.padded), min(5, t.padded)):
            assert onchain_next(harness, mlp, t.states[i]) == t.hashes[i + 1], (seed, i)


def test_shipped_model_steps_match(harness, base_world: OptWorld) -> None:  # noqa: ANN001
    mlp = base_world.model.mlp
    rng = random.Random(6)
    for k in range(3):
        t = mlp.trace(base_world.digit(k))
        for i in [0, 63, 64, 96, 105, 127, *rng.sample(range(128), 2)]:
            assert onchain_next(harness, mlp, t.states[i]) == t.hashes[i + 1], (k, i)


def test_requantization_edges_match(harness) -> None:  # noqa: ANN001
    """Saturating accumulators, negative rounding, ReLU and shift 0, on states with arbitrary outputs so far."""
    w = np.array([[127, -128, 127], [-128, -128, -128], [1, -1, 1], [0, 0, 0]], dtype=np.int8)
    cases = [
        (1, 0, False, -3),
        (1, 1, False, -(2**31)),
        (3, 2, True, 2**31 - 1),
        (65535, 30, False, -3),
        (7, 62, True, 5),
    ]
    for mult, shift, relu, bias in cases:
        mlp = IntMLP((IntLayer(w, np.full(4, bias, dtype=np.int64), mult, shift, relu),))
        for x in (b"\x7f\x80\x7f", b"\x01\xff\x03"):
            for row in range(4):
                s = State(0, row, x, bytes(range(250, 250 + row)) if row else b"")
                assert onchain_next(harness, mlp, s) == step(s, mlp.book).hash, (mult, shift, bias, x, row)


def test_halted_states_and_malformed_inputs(harness, base_world: OptWorld) -> None:  # noqa: ANN001
    mlp = base_world.model.mlp
    halted = State(HALT, 0, b"\x01\x02\x03")
    assert onchain_next(harness, mlp, halted) == halted.hash
    short = State(0, 0, b"\x01" * 10)  # a 10-byte input to a model that takes 64
    assert onchain_next(harness, mlp, short) == State(HALT, 0, b"").hash == step(short, mlp.book).hash
    assert bytes(call(harness.functions.haltedHash(b"\x05\xfb"))) == result_digest(b"\x05\xfb")


def test_row_leaves_match(harness, base_world: OptWorld) -> None:  # noqa: ANN001
    for r in base_world.model.mlp.rows[::9]:
        assert bytes(call(harness.functions.rowLeaf(r.as_tuple()))) == r.leaf
    odd = WeightRow(300, 12345, 65535, True, True, 2**32 - 1, 255, -(2**31), b"\x80" * 33)
    assert bytes(call(harness.functions.rowLeaf(odd.as_tuple()))) == odd.leaf


def test_wrong_weights_are_refused(harness, base_world: OptWorld) -> None:  # noqa: ANN001
    mlp = base_world.model.mlp
    t = mlp.trace(base_world.digit(0))
    s = t.states[5]
    row = mlp.book[(0, 5)]
    forged = WeightRow(**{**row.__dict__, "bias": row.bias + 1})
    with pytest.raises(ContractRevert, match="bad proof"):
        call(harness.functions.check(s.encode(), forged.as_tuple(), mlp.weights_root, mlp.weights_proof(0, 5)))
    other = mlp.book[(0, 6)]  # a genuine row, for another step
    with pytest.raises(ContractRevert, match="weights are for another step"):
        call(harness.functions.check(s.encode(), other.as_tuple(), mlp.weights_root, mlp.weights_proof(0, 6)))
    with pytest.raises(ContractRevert, match="state too short"):
        call(harness.functions.check(b"\x00\x00\x00\x00\x00\x00\x00\x05\x01", row.as_tuple(), mlp.weights_root, []))


def test_python_step_refuses_to_misapply_rows(base_world: OptWorld) -> None:
    mlp = base_world.model.mlp
    with pytest.raises(ValueError):
        apply_row(State(0, 1, b"\x00" * 64), mlp.book[(0, 2)])
    assert Web3.keccak(State(0, 0, b"\x01").encode()) == State(0, 0, b"\x01").hash
