"""Proof-of-learning: an honest log replays at distance exactly 0; a faked interval that is replayed is
caught; a large spoofed update is what the largest-change rule picks; the log's own claims are checked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from veriml.training.checkpoint import PolLog, state_root
from veriml.training.data import digits
from veriml.training.mlp import TrainConfig
from veriml.training.pol import intervals, select, verify_pol
from veriml.training.trainer import Cheat, CheatKind, train

CFG = TrainConfig(sizes=(64, 24, 10), batch=128)  # 11 steps per epoch
STEPS, EVERY = 22, 3


@pytest.fixture(scope="module")
def data():
    return digits()[0]


@pytest.fixture(scope="module")
def honest(data) -> PolLog:
    return train(CFG, data, STEPS, EVERY)


def test_honest_log_accepted_at_distance_zero(data, honest: PolLog) -> None:
    v = verify_pol(CFG, data, honest, honest.commitment, q=2)
    assert v.accepted, v.reasons
    assert len(v.checked) == 4 and all(c.distance == 0.0 for c in v.checked)
    assert v.steps_replayed == sum(c.end - c.start for c in v.checked) and 0 < v.cost_fraction < 1


def test_saved_log_round_trips(data, honest: PolLog, tmp_path) -> None:
    honest.save(tmp_path)
    back = PolLog.load(tmp_path)
    assert back.commitment == honest.commitment
    assert verify_pol(CFG, data, back, honest.commitment, q=1).accepted


@pytest.mark.parametrize("kind", list(CheatKind))
def test_every_cheat_caught_when_its_interval_is_replayed(data, kind: CheatKind) -> None:
    bad = train(CFG, data, STEPS, EVERY, cheat=Cheat(kind, 7))
    v = verify_pol(CFG, data, bad, bad.commitment, q=len(intervals(bad)))  # replay everything
    assert not v.accepted
    failed = [(c.start, c.end) for c in v.checked if c.distance > 0]
    assert failed == [(6, 9)]  # only the interval holding step 7


def test_large_spoofed_update_is_selected(data) -> None:
    bad = train(CFG, data, STEPS, EVERY, cheat=Cheat(CheatKind.PERTURB, 4, scale=0.2))
    assert (3, 6) in [(a, b) for a, b, _, why in select(CFG, bad, len(data), q=1) if why == "largest"]
    assert not verify_pol(CFG, data, bad, bad.commitment, q=1).accepted


def test_log_claims_checked(data, honest: PolLog) -> None:
    assert not verify_pol(CFG, data, honest, bytes(32), q=0).accepted
    assert verify_pol(CFG, data, honest, honest.commitment, q=0, every=EVERY).accepted
    assert not verify_pol(CFG, data, honest, honest.commitment, q=0, every=EVERY - 1).accepted
    swapped = honest.indices.copy()
    swapped[5] = (swapped[5] + 1) % len(data)
    lied = replace(honest, indices=swapped)
    v = verify_pol(CFG, data, lied, lied.commitment, q=0)
    assert not v.accepted and any("seeded schedule at steps [5]" in r for r in v.reasons)
    other_init = train(replace(CFG, seed=1), data, 3, EVERY)
    v = verify_pol(CFG, data, replace(other_init, indices=honest.indices[:3]), other_init.commitment, q=0)
    assert any("seeded init" in r for r in v.reasons)


def test_random_intervals_from_the_verifier_seed(data, honest: PolLog) -> None:
    a = select(CFG, honest, len(data), q=1, random=1, seed=11)
    assert a == select(CFG, honest, len(data), q=1, random=1, seed=11)
    assert sum(why == "random" for *_, why in a) == 2  # one per epoch
    assert np.isfinite([c for _, _, c, _ in a]).all()
    assert state_root(honest.checkpoints[0].state) == honest.checkpoints[0].root


def test_seeded_indices_is_the_schedule(data) -> None:
    from veriml.training.mlp import schedule
    from veriml.training.pol import seeded_indices

    got = seeded_indices(CFG, len(data), 25)
    assert got.shape == (25, CFG.batch)
    assert all(np.array_equal(got[s], schedule(CFG, data, s).numpy()) for s in range(25))


def test_tampered_checkpoint_file_rejected(data, honest: PolLog, tmp_path) -> None:
    """A checkpoint edited on disk after the commitment no longer hashes to it."""
    import torch
    from safetensors.torch import load_file, save_file

    honest.save(tmp_path)
    path = tmp_path / "ckpt-000009.safetensors"
    tensors = load_file(path)
    tensors["l0.weight"][0, 0] += torch.tensor(1e-6)
    save_file(tensors, path)
    v = verify_pol(CFG, data, PolLog.load(tmp_path), honest.commitment, q=0)
    assert not v.accepted and any("commitment" in r for r in v.reasons)
