"""Verde-style disputes: a wrong step is pinpointed to the right step and the right operator, and whoever
lied loses at the referee, from either side."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from veriml.training.checkpoint import Checkpoint
from veriml.training.data import digits
from veriml.training.dispute import HONEST, Party, dispute, open_case, referee
from veriml.training.mlp import TrainConfig, init_state, step_program, train_step
from veriml.training.trainer import Cheat, CheatKind
from veriml.verify.merkle import MerkleTree
from veriml.verify.pinpoint import bisect_roots, bisect_steps, first_difference

CFG = TrainConfig(sizes=(64, 32, 10), optimizer="sgd")
ADAM = TrainConfig(sizes=(64, 16, 10), optimizer="adam", lr=0.003, dropout=0.2, seed=3)
STEPS = 6


@pytest.fixture(scope="module")
def data():
    return digits()[0]


def _lie(cfg: TrainConfig, step: int, name: str, delta: float) -> Party:
    return Party(lie=(step, step_program(cfg, step).producer()[name], delta))


@pytest.mark.parametrize("cfg", [CFG, ADAM], ids=["sgd", "adam"])
@pytest.mark.parametrize("name", ["z0", "grad:l0.weight", "next:l1.bias", "l0.weight", "loss"])
def test_lie_pinpointed_to_its_step_and_operator_and_loses(data, cfg: TrainConfig, name: str) -> None:
    start = Checkpoint(0, init_state(cfg))
    lie_step = 3
    index = step_program(cfg, lie_step).producer()[name]
    liar = _lie(cfg, lie_step, name, 1e-4)
    if name == "loss":  # the loss feeds nothing: the states agree, so there is nothing to dispute
        assert dispute(cfg, data, start, STEPS, liar, HONEST) is None
        return
    for a, b, honest in ((liar, HONEST, "b"), (HONEST, liar, "a")):
        out = dispute(cfg, data, start, STEPS, a, b)
        assert out is not None
        assert out.step.index == lie_step and out.step.rounds <= math.ceil(math.log2(STEPS))
        assert out.record.index == index
        assert out.ruling.winner == honest and out.ruling.name == name
        if name in ("grad:l0.weight", "next:l1.bias"):  # element-checked operators: narrowed to one chunk
            assert out.chunk is not None and out.chunk_ruling is not None
            assert out.chunk_ruling.winner == honest
        else:  # z0 is a linear too, but the lie adds delta to every element: still the first chunk
            assert out.chunk_ruling is None or out.chunk_ruling.winner == honest


@pytest.mark.parametrize("kind", list(CheatKind))
def test_lazy_solver_loses(data, kind: CheatKind) -> None:
    start = Checkpoint(0, init_state(CFG))
    out = dispute(CFG, data, start, STEPS, Party(cheat=Cheat(kind, 4)), HONEST)
    assert out is not None and out.step.index == 4
    expect = "indices" if kind is CheatKind.OTHER_INDICES else "state_root"
    assert out.ruling.name == expect and out.ruling.winner == "b"


def test_honest_parties_agree(data) -> None:
    assert dispute(CFG, data, Checkpoint(0, init_state(CFG)), STEPS, HONEST, Party()) is None


def _case(data, name: str):
    state = init_state(CFG)
    program = step_program(CFG, 0)
    index = program.producer()[name]
    honest = train_step(CFG, state, data, 0, trace=True)[2]
    liar = train_step(CFG, state, data, 0, trace=True, tamper=lambda i, t: t * 1.5 if i == index else t)[2]
    assert first_difference(liar.tree, honest.tree).index == index
    return open_case(CFG, data, state, 0, liar, honest, index)


def test_forged_evidence_wins_nothing(data) -> None:
    case = _case(data, "z0")
    assert referee(case).winner == "b"
    x = case.inputs[0]
    forged = replace(x, tensor=x.tensor + 1)
    assert referee(replace(case, inputs=(forged, *case.inputs[1:]))).winner == "neither"
    assert referee(replace(case, inputs=case.inputs[:1])).winner == "neither"
    # a claim that does not verify against its own root counts for nothing
    bad_b = replace(case.b, proof=[bytes(32)])
    assert referee(replace(case, b=bad_b)).winner == "neither"


def test_source_checked_against_the_agreed_root(data) -> None:
    case = _case(data, "l0.weight")
    assert referee(case).winner == "b"
    other = replace(case, source=case.source + 1)
    assert referee(other).winner == "neither"


def test_bisection_rounds_and_errors() -> None:
    for n in (1, 2, 5, 64, 100):
        for s in range(n):
            p = bisect_steps(n, lambda i, s=s: i <= s)
            assert p.index == s and math.floor(math.log2(n)) <= p.rounds <= math.ceil(math.log2(n))
    a = [bytes([i]) * 32 for i in range(5)]
    with pytest.raises(ValueError):
        bisect_roots(a, a)
    leaves = [bytes([i]) * 32 for i in range(1, 12)]
    for j in range(11):
        other = [*leaves[:j], bytes(32), *leaves[j + 1 :]]
        p = first_difference(MerkleTree.from_leaves(leaves), MerkleTree.from_leaves(other))
        assert p.index == j and p.rounds <= 4


BLOCK = TrainConfig(arch="block", sizes=(64, 10), batch=8, d_model=16, d_ff=24, optimizer="adam", lr=0.003)


@pytest.mark.parametrize("name", ["p", "dq", "grad:ln1.weight", "next:pos"])
def test_block_lie_pinpointed_and_loses(data, name: str) -> None:
    start = Checkpoint(0, init_state(BLOCK))
    index = step_program(BLOCK, 2).producer()[name]
    out = dispute(BLOCK, data, start, 4, HONEST, _lie(BLOCK, 2, name, 1e-3))
    assert out is not None and out.step.index == 2 and out.record.index == index
    assert out.ruling.winner == "a" and out.ruling.name == name
