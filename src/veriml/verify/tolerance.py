"""The `tolerance` policy: float tensors that match when they are close, by bounds found by profiling.

Three distances between an output `a` and a reference `b`: the largest absolute difference, the relative
L2 error ||a - b|| / ||b||, and the cosine similarity. `Bounds` holds a limit for each; two tensors match
when all three are within them (`within`).

On-chain, `OutputMatching.matches` compares tolerance digests by equality (only phash has a distance rule),
so what a node commits is a *quantized* digest: keccak of the tensor rounded to a grid of `step`. Honest
nodes whose values differ by at most eps agree unless some element falls on different sides of a grid line,
which for n elements happens with probability about n * eps / step (`boundary_risk`); a `step` a few orders
above the profiled max-abs bound keeps that small for small outputs. The full check, `within`, runs
off-chain: the client applies it to the tensor it fetches, and it is the rule a dispute would re-check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from eth_hash.auto import keccak

from veriml.types import Digest


@dataclass(frozen=True)
class Distances:
    """How far an output is from a reference."""

    max_abs: float
    rel_l2: float
    cosine: float


@dataclass(frozen=True)
class Bounds:
    """The tolerance policy's limits: max-abs and relative L2 at most, cosine similarity at least."""

    max_abs: float
    rel_l2: float
    min_cosine: float

    def __post_init__(self) -> None:
        if not (self.max_abs >= 0 and self.rel_l2 >= 0 and -1 <= self.min_cosine <= 1):
            raise ValueError(f"bad tolerance bounds {self}")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    return x.ravel(), y.ravel()


def distances(a: np.ndarray, b: np.ndarray) -> Distances:
    """max |a - b|, ||a - b|| / ||b|| and cos(a, b); a non-finite value makes every distance infinitely bad."""
    x, y = _pair(a, b)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return Distances(math.inf, math.inf, -1.0)
    diff = x - y
    nb, na = float(np.linalg.norm(y)), float(np.linalg.norm(x))
    max_abs = float(np.abs(diff).max(initial=0.0))
    rel = float(np.linalg.norm(diff)) / nb if nb > 0 else (0.0 if na == 0 else math.inf)
    cos = float(x @ y) / (na * nb) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    return Distances(max_abs, rel, cos)


def within(a: np.ndarray, b: np.ndarray, bounds: Bounds) -> bool:
    """Whether `a` matches `b` under `bounds` (all three limits hold)."""
    d = distances(a, b)
    return d.max_abs <= bounds.max_abs and d.rel_l2 <= bounds.rel_l2 and d.cosine >= bounds.min_cosine


def bounds_from(samples: Iterable[Distances], margin: float = 1.0) -> Bounds:
    """Bounds that admit every profiled honest pair with `margin` to spare: worst seen x (1 + margin)."""
    s = list(samples)
    if not s or margin < 0:
        raise ValueError("need at least one sample and a non-negative margin")
    worst_cos_gap = max(1 - d.cosine for d in s)
    return Bounds(
        max(d.max_abs for d in s) * (1 + margin),
        max(d.rel_l2 for d in s) * (1 + margin),
        max(-1.0, 1 - worst_cos_gap * (1 + margin)),
    )


def tolerance_digest(x: np.ndarray, step: float) -> Digest:
    """keccak("veriml/tolerance" || shape || round(x / step) as int64 big-endian): equal for close tensors."""
    if not step > 0:
        raise ValueError("quantization step must be positive")
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("tolerance digests need finite values")
    q = np.round(a / step).astype(">i8")
    shape = ",".join(str(d) for d in a.shape).encode()
    return Digest(keccak(b"veriml/tolerance\x00" + shape + b"\x00" + q.tobytes()))


def boundary_risk(n: int, eps: float, step: float) -> float:
    """Upper bound on the chance two honest tensors of n elements, eps apart, quantize differently."""
    return min(1.0, n * eps / step)
