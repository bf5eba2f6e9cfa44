"""Checkpoints and the proof-of-learning log (Jia et al., "Proof-of-Learning", IEEE S&P 2021): the state every
k steps as a safetensors file with its weights root, the batch indices of every step, and one Merkle root over
all of it, which is what a solver commits.

A checkpoint's root is `veriml.models.weights.state_dict_root` of the whole state (parameters and optimizer
state), so one tensor can be proved against it with the ordinary weights proof. The log's leaf for the
checkpoint at step s (after the previous one at step r) is `leaf_hash(uint64 s | state root | keccak(the
int64 indices of steps r..s-1)))`: a checkpoint binds the data that led to it. The commitment is the
Merkle root over those leaves in step order.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from eth_hash.auto import keccak
from safetensors.torch import load_file, save
from torch import Tensor

from veriml.models.weights import state_dict_root
from veriml.verify.merkle import MerkleTree, leaf_hash


def state_root(state: Mapping[str, Tensor]) -> bytes:
    """The weights root of a state dict (what its safetensors file's `weights_root` gives)."""
    return state_dict_root(state)


def state_bytes(state: Mapping[str, Tensor]) -> bytes:
    """The state as safetensors bytes (keys sorted, no metadata: the same state gives the same bytes)."""
    return save({k: state[k].contiguous() for k in sorted(state)})


def state_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 of the checkpoint file's bytes."""
    return hashlib.sha256(state_bytes(state)).hexdigest()


def indices_digest(indices: np.ndarray) -> bytes:
    """keccak of the int64 little-endian indices of a run of steps (rows: steps)."""
    return keccak(np.ascontiguousarray(indices, dtype="<i8").tobytes())


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """The state after `step` steps."""

    step: int
    state: dict[str, Tensor] = field(repr=False)

    @cached_property
    def root(self) -> bytes:
        """The state's weights root (computed once; the state is not to be modified in place)."""
        return state_root(self.state)


def log_leaf(step: int, root: bytes, indices: np.ndarray) -> bytes:
    return leaf_hash(struct.pack(">Q", step) + root + indices_digest(indices))


@dataclass(frozen=True, eq=False)
class PolLog:
    """What a solver publishes: checkpoints (step 0, every k steps, the last), every step's batch indices
    (`indices[s]` for step s), and the loss of every step (informative only: not committed)."""

    every: int
    checkpoints: tuple[Checkpoint, ...]
    indices: np.ndarray  # [steps, batch] int64
    losses: tuple[float, ...] = ()

    @property
    def steps(self) -> int:
        return len(self.indices)

    def checkpoint_at(self, step: int) -> Checkpoint:
        for c in self.checkpoints:
            if c.step == step:
                return c
        raise KeyError(f"no checkpoint at step {step}")

    def leaves(self) -> list[bytes]:
        out, prev = [], 0
        for c in self.checkpoints:
            out.append(log_leaf(c.step, c.root, self.indices[prev : c.step]))
            prev = c.step
        return out

    def tree(self) -> MerkleTree:
        return MerkleTree.from_leaves(self.leaves())

    @property
    def commitment(self) -> bytes:
        """The one root a solver commits: over every checkpoint's (step, state root, indices) leaf."""
        return self.tree().root

    def save(self, directory: str | PathLike[str]) -> Path:
        """Write `ckpt-STEP.safetensors` per checkpoint and `pol.json` (indices, roots, file hashes)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        entries = []
        for c in self.checkpoints:
            data = state_bytes(c.state)
            name = f"ckpt-{c.step:06d}.safetensors"
            (d / name).write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            entries.append({"step": c.step, "file": name, "root": c.root.hex(), "sha256": sha})
        log = {"every": self.every, "commitment": self.commitment.hex(), "checkpoints": entries,
               "indices": self.indices.tolist(), "losses": list(self.losses)}  # fmt: skip
        path = d / "pol.json"
        path.write_text(json.dumps(log, indent=1))
        return path

    @classmethod
    def load(cls, directory: str | PathLike[str]) -> PolLog:
        """Read a saved log back (the roots are recomputed from the files, not trusted from the JSON)."""
        d = Path(directory)
        log = json.loads((d / "pol.json").read_text())
        cps = tuple(Checkpoint(e["step"], dict(load_file(d / e["file"]))) for e in log["checkpoints"])
        indices = np.asarray(log["indices"], dtype=np.int64).reshape(len(log["indices"]), -1)
        return cls(log["every"], cps, indices, tuple(log["losses"]))


def checkpoint_steps(steps: int, every: int) -> list[int]:
    """Steps with a checkpoint: 0, every k-th, and the last."""
    if every < 1 or steps < 1:
        raise ValueError("steps and the checkpoint interval must be positive")
    return sorted(set(range(0, steps, every)) | {steps})


def clone_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in state.items()}


def param_distance(a: Mapping[str, Tensor], b: Mapping[str, Tensor], names: Sequence[str]) -> float:
    """L2 distance between two states' tensors `names`, in float64 (PoL's d(W, W'))."""
    return float(torch.sqrt(sum(((a[n].double() - b[n].double()) ** 2).sum() for n in names)))
