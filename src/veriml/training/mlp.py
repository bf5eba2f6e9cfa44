"""A small MLP trained with the reproducible operators: the config, its seeded init, and one step (forward,
backward, optimizer) as a `Program`.

The model is `nn.Sequential(Linear, ReLU, [Dropout], ..., Linear)` with mean cross-entropy. Its state is a
flat dict of float32 tensors: the parameters `l{i}.weight` [out, in] and `l{i}.bias`, and the optimizer's
state: `l{i}.weight.v` (SGD momentum buffer) or `.m` and `.v` (Adam moments) plus `adam.b1t`, `adam.b2t`
(beta^t, carried so that no step computes a power). The step's program reads the state, the dataset and the
batch indices and names each new state tensor `next:NAME`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from veriml.models.weights import state_dict_root
from veriml.training.data import Dataset, batch_indices
from veriml.training.graph import Node, Program, StepTrace, Tamper, execute, root_record
from veriml.training.rng import Stream, uniform_f32

Optimizer = Literal["sgd", "adam"]
NEXT = "next:"


Arch = Literal["mlp", "block"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes a training run besides the data: model, optimizer, batch, seed.

    `arch="mlp"`: layers of `sizes`. `arch="block"`: a one-block transformer (`veriml.training.block`)
    reading the `sizes[0]` features as `tokens` tokens, width `d_model`, feed-forward `d_ff`, `sizes[-1]`
    classes."""

    sizes: tuple[int, ...] = (64, 64, 10)
    optimizer: Optimizer = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch: int = 32
    dropout: float = 0.0
    seed: int = 0
    arch: Arch = "mlp"
    tokens: int = 8
    d_model: int = 32
    d_ff: int = 64

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ValueError(f"bad layer sizes {self.sizes}")
        if self.optimizer not in ("sgd", "adam") or not 0 <= self.dropout < 1:
            raise ValueError("optimizer must be sgd or adam, dropout in [0, 1)")
        if self.arch not in ("mlp", "block") or (self.arch == "block" and self.sizes[0] % self.tokens):
            raise ValueError("arch must be mlp or block; a block's features must split into its tokens")
        if self.arch == "block" and self.dropout:
            raise ValueError("the block has no dropout")

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    def param_specs(self) -> list[tuple[str, tuple[int, ...], int]]:
        """(name, shape, init) per parameter: init > 0 means U(+-1/sqrt(init)) (nn.Linear's, init = fan-in),
        ONES and ZEROS LayerNorm's."""
        if self.arch == "block":
            from veriml.training.block import block_param_specs

            return block_param_specs(self)
        out = []
        for i in range(self.layers):
            fan_in, fan_out = self.sizes[i], self.sizes[i + 1]
            out += [(f"l{i}.weight", (fan_out, fan_in), fan_in), (f"l{i}.bias", (fan_out,), fan_in)]
        return out

    def param_names(self) -> list[str]:
        return [name for name, _, _ in self.param_specs()]


ONES, ZEROS = -1, 0


def init_params(cfg: TrainConfig) -> dict[str, Tensor]:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the counter-based RNG
    (stream `INIT`, one id per parameter); LayerNorm's ones and zeros."""
    out = {}
    for k, (name, shape, init) in enumerate(cfg.param_specs()):
        if init == ONES:
            out[name] = torch.ones(shape)
            continue
        if init == ZEROS:
            out[name] = torch.zeros(shape)
            continue
        bound = np.float32(1.0 / math.sqrt(init))  # sqrt and division are correctly rounded in float64
        u = uniform_f32(cfg.seed, Stream.INIT, (k,), int(np.prod(shape))).reshape(shape)
        out[name] = torch.from_numpy((u * np.float32(2) - np.float32(1)) * bound)
    return out


def init_state(cfg: TrainConfig) -> dict[str, Tensor]:
    """Parameters and zeroed optimizer state: the checkpoint at step 0."""
    state = init_params(cfg)
    for name in cfg.param_names():
        zeros = torch.zeros_like(state[name])
        if cfg.optimizer == "sgd":
            state[name + ".v"] = zeros
        else:
            state[name + ".m"], state[name + ".v"] = zeros, zeros.clone()
    if cfg.optimizer == "adam":
        state["adam.b1t"] = torch.ones(1)
        state["adam.b2t"] = torch.ones(1)
    return state


def state_names(cfg: TrainConfig) -> list[str]:
    """The state's tensor names, sorted (the order of a checkpoint's leaves and of a step's sources)."""
    slots = (".v",) if cfg.optimizer == "sgd" else (".m", ".v")
    names = [p + s for p in cfg.param_names() for s in ("", *slots)]
    return sorted(names + (["adam.b1t", "adam.b2t"] if cfg.optimizer == "adam" else []))


def step_program(cfg: TrainConfig, step: int) -> Program:
    """The nodes of training step `step` (0-based): forward, loss, backward, optimizer."""
    if cfg.arch == "block":
        from veriml.training.block import block_program

        return block_program(cfg, step)
    nodes: list[Node] = [Node("gather", ("data.x", "indices"), "x"), Node("gather", ("data.y", "indices"), "y")]
    h, zs, hs, masks = "x", [], [], {}
    for i in range(cfg.layers):
        hs.append(h)
        z = f"z{i}"
        nodes.append(Node("linear", (h, f"l{i}.weight", f"l{i}.bias"), z))
        zs.append(z)
        if i + 1 < cfg.layers:
            h = f"a{i}"
            nodes.append(Node("relu", (z,), h))
            if cfg.dropout > 0:
                mask = f"mask{i}"
                shape = (("rows", cfg.batch), ("cols", cfg.sizes[i + 1]))
                attrs = (("seed", cfg.seed), ("step", step), ("layer", i), *shape, ("p", cfg.dropout))
                nodes.append(Node("dropout_mask", (), mask, attrs))
                nodes.append(Node("mul", (h, mask), f"d{i}"))
                masks[i], h = mask, f"d{i}"
    nodes.append(Node("ce_loss", (zs[-1], "y"), "loss"))
    g = f"dz{cfg.layers - 1}"
    nodes.append(Node("ce_grad", (zs[-1], "y"), g))
    for i in reversed(range(cfg.layers)):
        nodes.append(Node("matmul_tn", (g, hs[i]), f"grad:l{i}.weight"))
        nodes.append(Node("sum_rows", (g,), f"grad:l{i}.bias"))
        if i > 0:
            dh = f"dh{i - 1}"
            nodes.append(Node("matmul", (g, f"l{i}.weight"), dh))
            if i - 1 in masks:
                nodes.append(Node("mul", (dh, masks[i - 1]), f"dm{i - 1}"))
                dh = f"dm{i - 1}"
            g = f"dz{i - 1}"
            nodes.append(Node("relu_grad", (dh, zs[i - 1]), g))
    nodes += optimizer_nodes(cfg)
    sources = tuple(state_names(cfg)) + ("data.x", "data.y", "indices")
    return Program(sources, tuple(nodes))


def optimizer_nodes(cfg: TrainConfig) -> list[Node]:
    out = []
    if cfg.optimizer == "sgd":
        for p in cfg.param_names():
            attrs = (("beta", cfg.momentum), ("gain", 1.0))
            out.append(Node("lerp_state", (p + ".v", "grad:" + p), NEXT + p + ".v", attrs))
            out.append(Node("sgd_apply", (p, NEXT + p + ".v"), NEXT + p, (("lr", cfg.lr),)))
        return out
    b1, b2 = cfg.betas
    out.append(Node("scale", ("adam.b1t",), NEXT + "adam.b1t", (("factor", b1),)))
    out.append(Node("scale", ("adam.b2t",), NEXT + "adam.b2t", (("factor", b2),)))
    for p in cfg.param_names():
        g = "grad:" + p
        out.append(Node("lerp_state", (p + ".m", g), NEXT + p + ".m", (("beta", b1), ("gain", 1.0 - b1))))
        out.append(Node("mul", (g, g), "grad2:" + p))
        out.append(Node("lerp_state", (p + ".v", "grad2:" + p), NEXT + p + ".v", (("beta", b2), ("gain", 1.0 - b2))))
        ins = (p, NEXT + p + ".m", NEXT + p + ".v", NEXT + "adam.b1t", NEXT + "adam.b2t")
        out.append(Node("adam_apply", ins, NEXT + p, (("lr", cfg.lr), ("eps", cfg.eps))))
    return out


def schedule(cfg: TrainConfig, data: Dataset, step: int) -> Tensor:
    """The batch indices the seed prescribes for `step`."""
    return batch_indices(cfg.seed, len(data), cfg.batch, step)


def step_sources(state: Mapping[str, Tensor], data: Dataset, indices: Tensor) -> dict[str, Tensor]:
    return {**state, **data.tensors(), "indices": indices}


def trace_length(cfg: TrainConfig, step: int) -> int:
    """Records in a step's trace: its sources and nodes, then the next state's root."""
    return len(step_program(cfg, step)) + 1


def train_step(
    cfg: TrainConfig,
    state: Mapping[str, Tensor],
    data: Dataset,
    step: int,
    indices: Tensor | None = None,
    trace: bool = False,
    tamper: Tamper | None = None,
) -> tuple[dict[str, Tensor], float, StepTrace | None]:
    """One step from `state`: (the next state, the loss, the step's trace if asked, ending in `root_record`).

    `indices` defaults to the seeded schedule; a PoL replay passes the recorded ones."""
    idx = schedule(cfg, data, step) if indices is None else indices
    program = step_program(cfg, step)
    values, tr = execute(program, step_sources(state, data, idx), trace=trace, tamper=tamper)
    nxt = {name: values[NEXT + name] for name in state}
    if tr is not None:
        names = sorted(state)
        digests = [tr.records[program.producer()[NEXT + n]].output for n in names]
        tr = StepTrace.of([*tr.records, root_record(len(program), digests, state_dict_root(nxt))])
    return nxt, float(values["loss"][0]), tr


def predict(cfg: TrainConfig, state: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Class predictions (the reproducible forward pass, no dropout)."""
    from veriml.training import repops

    if cfg.arch == "block":
        from veriml.training.block import block_logits

        return block_logits(cfg, state, x).argmax(dim=1)

    h = x
    for i in range(cfg.layers):
        h = repops.linear(h, state[f"l{i}.weight"], state[f"l{i}.bias"])
        if i + 1 < cfg.layers:
            h = repops.relu(h)
    return h.argmax(dim=1)
