"""The solver's loop: train with the reproducible runtime, checkpoint every k steps, log every step's indices.

Dishonest solvers are data (`Cheat`): at one step they perturb the weights, skip the step, train on other
examples than the seed prescribes, or take a cheaper optimizer step (plain SGD, no momentum), and go on
honestly from there, publishing a log that looks complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
from torch import Tensor

from veriml.training.checkpoint import Checkpoint, PolLog, checkpoint_steps, clone_state
from veriml.training.data import Dataset
from veriml.training.mlp import TrainConfig, init_state, schedule, train_step


class CheatKind(Enum):
    """What a lazy or dishonest solver does at its cheat step."""

    PERTURB = "perturb"  # adds noise to the weights after the step
    SKIP = "skip"  # does not run the step (state unchanged) but logs its indices
    OTHER_INDICES = "other_indices"  # trains on examples the seed did not pick, and logs the true ones
    CHEAP_OPTIMIZER = "cheap_optimizer"  # w -= lr * g, no momentum / moments


@dataclass(frozen=True)
class Cheat:
    kind: CheatKind
    step: int
    scale: float = 1e-3  # PERTURB's noise


def _cheap_step(cfg: TrainConfig, state: dict[str, Tensor], data: Dataset, step: int) -> dict[str, Tensor]:
    """Gradient descent without optimizer state: run the honest step for its gradients, then w - lr * g."""
    from veriml.training.graph import execute
    from veriml.training.mlp import step_program, step_sources

    values, _ = execute(step_program(cfg, step), step_sources(state, data, schedule(cfg, data, step)))
    out = dict(state)
    for p in cfg.param_names():
        out[p] = state[p] - values["grad:" + p] * torch.tensor(cfg.lr, dtype=torch.float32)
    return out


def apply_cheat(
    cheat: Cheat, cfg: TrainConfig, state: dict[str, Tensor], data: Dataset, step: int
) -> dict[str, Tensor]:
    """The state a cheating solver reports after `step`, from the state before it."""
    if cheat.kind is CheatKind.SKIP:
        return state
    if cheat.kind is CheatKind.OTHER_INDICES:
        idx = (schedule(cfg, data, step) + 1) % len(data)
        return train_step(cfg, state, data, step, indices=idx)[0]
    if cheat.kind is CheatKind.CHEAP_OPTIMIZER:
        return _cheap_step(cfg, state, data, step)
    nxt = train_step(cfg, state, data, step)[0]
    g = torch.Generator().manual_seed(step)
    return {k: v + torch.randn(v.shape, generator=g) * cheat.scale if k in cfg.param_names() else v
            for k, v in nxt.items()}  # fmt: skip


def train(
    cfg: TrainConfig,
    data: Dataset,
    steps: int,
    every: int,
    cheat: Cheat | Sequence[Cheat] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> PolLog:
    """Train `steps` steps from the seeded init; checkpoint at 0, every `every` steps and at the end.

    `cheat`: one cheat, or several at different steps."""
    cheats = {c.step: c for c in ([cheat] if isinstance(cheat, Cheat) else (cheat or []))}
    keep = set(checkpoint_steps(steps, every))
    state = init_state(cfg)
    cps = [Checkpoint(0, clone_state(state))]
    indices = np.zeros((steps, cfg.batch), dtype=np.int64)
    losses = []
    for s in range(steps):
        indices[s] = schedule(cfg, data, s).numpy()
        if s in cheats:
            state, loss = apply_cheat(cheats[s], cfg, state, data, s), float("nan")
        else:
            state, loss, _ = train_step(cfg, state, data, s)
        losses.append(loss)
        if on_step is not None:
            on_step(s, loss)
        if s + 1 in keep:
            cps.append(Checkpoint(s + 1, clone_state(state)))
    return PolLog(every, tuple(cps), indices, tuple(losses))
