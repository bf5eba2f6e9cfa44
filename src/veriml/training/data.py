"""A training set as the job commits to it: two tensors, `data.x` (float32 features) and `data.y` (int64
labels), whose weights root (`veriml.models.weights.state_dict_root`) is the dataset commitment; and the
batch schedule, a pure function of (seed, step) through the counter-based RNG."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from veriml.models.weights import state_dict_root
from veriml.training.rng import permutation


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features x [N, d] float32 and labels y [N] int64."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.y.dtype != torch.int64 or len(self.x) != len(self.y):
            raise ValueError("a dataset is float32 x [N, d] and int64 y [N]")

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self) -> dict[str, Tensor]:
        return {"data.x": self.x, "data.y": self.y}

    @cached_property
    def root(self) -> bytes:
        return state_dict_root(self.tensors())


def digits(seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's 8x8 digits, pixels / 16 (exact in float32): (train, test), the split `int-mlp` uses."""
    from veriml.models.intmlp import digits_split

    x_tr, x_te, y_tr, y_te = digits_split(seed)

    def ds(x: np.ndarray, y: np.ndarray) -> Dataset:
        return Dataset(torch.from_numpy(x.astype(np.float32) / np.float32(16)), torch.from_numpy(y.copy()))

    return ds(x_tr, y_tr), ds(x_te, y_te)


def steps_per_epoch(n: int, batch: int) -> int:
    """Full batches per epoch (the last partial batch is dropped)."""
    if not 0 < batch <= n:
        raise ValueError(f"batch {batch} does not fit a dataset of {n}")
    return n // batch


def batch_indices(seed: int, n: int, batch: int, step: int) -> Tensor:
    """The example indices of `step`: its slice of its epoch's seeded permutation."""
    spe = steps_per_epoch(n, batch)
    epoch, i = divmod(step, spe)
    return torch.from_numpy(permutation(seed, epoch, n)[i * batch : (i + 1) * batch].copy())
