"""The dispute game off-chain, over many runs: a lie at any step is found, and honest play always wins."""

from __future__ import annotations

import math
import random

import pytest

from veriml.models.intmlp import IntMLP, IntModel, encode_pixels
from veriml.verify.bisection import Game, one_step_winner, play, rounds_for, should_challenge
from veriml.verify.trace import lie_at, run_trace

from .conftest import TEST_DIGITS


@pytest.fixture(scope="module")
def mlp() -> IntMLP:
    return IntModel.load().mlp


def test_rounds_are_ceil_log2_steps() -> None:
    for n in range(1, 3000):
        assert rounds_for(n) == math.ceil(math.log2(n)), n


def _lies_found(mlp: IntMLP, data: bytes, k: int, delta: int) -> None:
    truth = mlp.trace(data)
    claimed = lie_at(mlp.book, data, k, delta)
    if claimed.result_digest == truth.result_digest:
        assert not should_challenge(claimed.result_digest, truth, claimed.steps)
        return  # the lie did not change the result: nothing to dispute
    assert should_challenge(claimed.result_digest, truth, claimed.steps)
    out = play(claimed.hashes, truth.hashes)
    assert out.winner == "challenger"
    assert out.step == k - 1  # the transition into the first wrong state
    assert out.rounds == rounds_for(truth.steps) == 7 == len(out.answers)
    # the on-chain verdict on real states agrees
    assert one_step_winner(truth.states[out.step], mlp.book, claimed.hashes[out.step + 1]) == "challenger"


@pytest.mark.parametrize("k", [1, 2, 53, 64, 65, 105, 106])
def test_lie_at_first_middle_and_last_step_is_found(mlp: IntMLP, k: int) -> None:
    _lies_found(mlp, encode_pixels(TEST_DIGITS[1]), k, 100)


def test_lie_at_random_steps_over_many_runs(mlp: IntMLP) -> None:
    rng = random.Random(1234)
    for run in range(150):
        data = encode_pixels(TEST_DIGITS[run % len(TEST_DIGITS)])
        _lies_found(mlp, data, rng.randint(1, 106), rng.randint(1, 255))


def test_lie_in_the_padding_is_found(mlp: IntMLP) -> None:
    # An executor with the true output at step 106 that claims another final state later (steps 107..128).
    data = encode_pixels(TEST_DIGITS[2])
    truth = mlp.trace(data)
    for k in (107, 120, 128):
        claimed = lie_at(mlp.book, data, k, 1)
        out = play(claimed.hashes, truth.hashes)
        assert out.winner == "challenger" and out.step == k - 1
        assert truth.states[out.step].halted


def test_arbitrary_fabricated_hashes_are_found() -> None:
    """Not only consistent lies: any claimed sequence that ends wrong loses against an honest challenger."""
    rng = random.Random(99)
    for _ in range(300):
        n = rng.randint(1, 200)
        p = 1 << (n - 1).bit_length()
        truth = [rng.randbytes(32) for _ in range(p + 1)]
        claimed = [h if rng.random() < 0.5 else rng.randbytes(32) for h in truth]
        claimed[-1] = rng.randbytes(32)
        out = play(claimed, truth)
        assert out.winner == "challenger" and out.rounds == rounds_for(n)
        # state 0 is checked against the input, whatever hash the executor's trace gives it
        assert out.step == 0 or claimed[out.step] == truth[out.step]
        assert claimed[out.step + 1] != truth[out.step + 1]


def test_honest_executor_beats_any_challenger_strategy(mlp: IntMLP) -> None:
    rng = random.Random(7)
    truth = mlp.trace(encode_pixels(TEST_DIGITS[3]))
    for _ in range(100):
        game = Game.open(truth.steps, truth.result_digest)
        while not game.done:  # a frivolous challenger answering at random
            game = game.after(rng.random() < 0.5, truth.hashes[game.mid])
        assert game.rounds == 7
        state = truth.states[game.lo]
        assert game.lo == 0 or game.h_lo == state.hash
        assert one_step_winner(state, mlp.book, game.h_hi) == "executor"


def test_game_rules() -> None:
    g = Game.open(5, b"\x01" * 32)
    assert (g.lo, g.hi, g.mid, g.h_lo) == (0, 8, 4, None)
    g = g.after(True, b"\x02" * 32)
    assert (g.lo, g.hi, g.h_lo, g.rounds) == (4, 8, b"\x02" * 32, 1)
    g = g.after(False, b"\x03" * 32).after(False, b"\x04" * 32)
    assert (g.lo, g.hi, g.h_hi, g.done) == (4, 5, b"\x04" * 32, True)
    with pytest.raises(ValueError):
        g.after(True, b"\x05" * 32)
    assert Game.open(1, b"\x01" * 32).done  # one step: straight to the on-chain check
    with pytest.raises(ValueError):
        play([b"\x00" * 32] * 4, [b"\x00" * 32] * 4)  # 3 states: not a power-of-two range


def test_small_models_every_position() -> None:
    mlp = IntMLP.random([5, 4, 3], seed=11)
    data = bytes([1, 2, 3, 250, 7])
    truth = run_trace(data, mlp.book)
    for k in range(1, truth.padded + 1):
        for delta in (1, 128):
            claimed = lie_at(mlp.book, data, k, delta)
            if claimed.result_digest == truth.result_digest:
                continue
            out = play(claimed.hashes, truth.hashes)
            assert out.winner == "challenger" and out.step == k - 1 and out.rounds == rounds_for(truth.steps)
