"""The proof-of-learning verifier (Jia et al., IEEE S&P 2021, Algorithm 2), on the reproducible runtime.

The verifier takes a solver's published log and the commitment it posted, and checks without trusting the
log's own claims: the log hashes to the commitment; checkpoint 0 is the seeded init; the checkpoints sit
every k steps; every step's recorded indices are the ones the seed prescribes. Then, per epoch, it picks the
Q intervals between consecutive checkpoints with the largest weight change (PoL's heuristic: a spoofer
must fake a large update somewhere), plus any intervals drawn at random from a verifier seed, replays each
from its start checkpoint with the recorded indices, and measures the L2 distance from the replayed state to
the logged end checkpoint over every state tensor. It accepts when every distance is at most the threshold,
which is 0 on the reproducible path: an honest replay gives the same bits. A threshold above 0 is for a
non-reproducible fast path and would have to come from profiling.

Cost: (Q + random) * k replayed steps per epoch of S steps, i.e. about (Q + r) k / S of training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from veriml.training.checkpoint import PolLog, checkpoint_steps, clone_state, param_distance, state_root
from veriml.training.data import Dataset, steps_per_epoch
from veriml.training.mlp import TrainConfig, init_state, train_step
from veriml.training.rng import Stream, permutation, random_u64


@dataclass(frozen=True)
class IntervalCheck:
    """One replayed interval: checkpoint steps, its logged weight change, the replay's distance."""

    start: int
    end: int
    change: float
    distance: float
    why: str  # "largest" or "random"

    def ok(self, threshold: float) -> bool:
        return self.distance <= threshold


@dataclass(frozen=True)
class PolVerdict:
    """Accepted or not, the reasons against, every interval replayed, and what the replay cost in steps."""

    accepted: bool
    reasons: tuple[str, ...]
    checked: tuple[IntervalCheck, ...]
    steps_replayed: int
    steps_total: int

    @property
    def cost_fraction(self) -> float:
        return self.steps_replayed / self.steps_total if self.steps_total else 0.0


def intervals(log: PolLog) -> list[tuple[int, int]]:
    """Consecutive checkpoint pairs (start step, end step)."""
    steps = [c.step for c in log.checkpoints]
    return list(zip(steps[:-1], steps[1:], strict=True))


def select(
    cfg: TrainConfig, log: PolLog, examples: int, q: int, random: int = 0, seed: int = 0
) -> list[tuple[int, int, float, str]]:
    """Per epoch (by an interval's start step), the `q` intervals with the largest parameter change, then
    `random` more per epoch drawn from the verifier's `seed` among the rest: (start, end, change, why)."""
    spe = steps_per_epoch(examples, cfg.batch)
    names = cfg.param_names()
    by_epoch: dict[int, list[tuple[int, int, float]]] = {}
    for a, b in intervals(log):
        change = param_distance(log.checkpoint_at(a).state, log.checkpoint_at(b).state, names)
        by_epoch.setdefault(a // spe, []).append((a, b, change))
    out = []
    for epoch, items in sorted(by_epoch.items()):
        ranked = sorted(items, key=lambda t: (-t[2], t[0]))
        out += [(a, b, c, "largest") for a, b, c in ranked[:q]]
        rest = sorted(ranked[q:])
        if random and rest:
            keys = random_u64(seed, Stream.VERIFIER, (epoch,), len(rest))
            pick = np.argsort(keys, kind="stable")[:random]
            out += [(*rest[i][:2], rest[i][2], "random") for i in sorted(pick)]
    return out


def seeded_indices(cfg: TrainConfig, examples: int, steps: int) -> np.ndarray:
    """The schedule's indices of steps 0..steps-1 (one permutation per epoch), as `batch_indices` gives them."""
    spe = steps_per_epoch(examples, cfg.batch)
    perms = [permutation(cfg.seed, e, examples)[: spe * cfg.batch] for e in range(-(-steps // spe))]
    return np.concatenate(perms).reshape(-1, cfg.batch)[:steps] if perms else np.zeros((0, cfg.batch), np.int64)


def _log_problems(cfg: TrainConfig, data: Dataset, log: PolLog, commitment: bytes, every: int | None) -> list[str]:
    reasons = []
    if every is not None and log.every != every:
        reasons.append(f"the log checkpoints every {log.every} steps, the job asks for every {every}")
    if log.commitment != commitment:
        reasons.append("the log does not hash to the posted commitment")
    if [c.step for c in log.checkpoints] != checkpoint_steps(log.steps, log.every):
        reasons.append("the checkpoints are not at 0, every k steps and the end")
    expected = seeded_indices(cfg, len(data), log.steps)
    if log.checkpoints[0].root != state_root(init_state(cfg)):
        reasons.append("checkpoint 0 is not the seeded init")
    bad = [s for s in range(log.steps) if not np.array_equal(log.indices[s], expected[s])]
    if bad:
        reasons.append(f"indices differ from the seeded schedule at steps {bad[:5]}{'...' if len(bad) > 5 else ''}")
    return reasons


def replay(cfg: TrainConfig, data: Dataset, log: PolLog, start: int, end: int) -> dict[str, torch.Tensor]:
    """The state at `end` replayed from the logged checkpoint at `start` with the logged indices."""
    state = clone_state(log.checkpoint_at(start).state)
    for s in range(start, end):
        state = train_step(cfg, state, data, s, indices=torch.from_numpy(log.indices[s].copy()))[0]
    return state


def verify_pol(
    cfg: TrainConfig,
    data: Dataset,
    log: PolLog,
    commitment: bytes,
    q: int = 2,
    threshold: float = 0.0,
    random: int = 0,
    seed: int = 0,
    every: int | None = None,
) -> PolVerdict:
    """Check a solver's log against its commitment and replay the selected intervals; `every` is the job's
    checkpoint interval (a solver must not pick a longer one: a replay would then cost more, and a lie hide
    in a longer interval)."""
    reasons = _log_problems(cfg, data, log, commitment, every)
    checked = []
    for a, b, change, why in select(cfg, log, len(data), q, random, seed):
        end = log.checkpoint_at(b).state
        got = replay(cfg, data, log, a, b)
        d = param_distance(got, end, sorted(end))
        checked.append(IntervalCheck(a, b, change, d, why))
        if d > threshold:
            reasons.append(f"steps {a}..{b} replay at distance {d:.3g} > {threshold}")
    replayed = sum(c.end - c.start for c in checked)
    return PolVerdict(not reasons, tuple(reasons), tuple(checked), replayed, log.steps)


def faked_intervals(log: PolLog, truth: Sequence[bytes]) -> list[tuple[int, int]]:
    """The intervals whose end checkpoint differs from `truth` (true roots at the same steps): for measuring
    detection, not used by the verifier."""
    return [(a, b) for (a, b), c, t in zip(intervals(log), log.checkpoints[1:], truth[1:], strict=True) if c.root != t]
