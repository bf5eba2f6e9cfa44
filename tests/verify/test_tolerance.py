"""The tolerance policy: distances, bounds from profiling, and the quantized digest compared on-chain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from veriml.verify.tolerance import (
    Bounds,
    Distances,
    boundary_risk,
    bounds_from,
    distances,
    tolerance_digest,
    within,
)


def test_distances_of_a_tensor_and_a_perturbed_copy() -> None:
    b = np.linspace(-1, 1, 1000, dtype=np.float32).reshape(10, 100)
    a = b + 1e-3 * np.sign(b)
    d = distances(a, b)
    assert d.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert 0 < d.rel_l2 < 2e-3 and d.cosine > 0.9999
    assert distances(b, b) == Distances(0.0, 0.0, pytest.approx(1.0))
    assert distances(-b, b).cosine == pytest.approx(-1.0)


def test_non_finite_values_never_match_and_shapes_must_agree() -> None:
    b = np.ones(4)
    assert not within(np.array([1, 1, math.nan, 1]), b, Bounds(1e9, 1e9, -1.0))
    with pytest.raises(ValueError, match="shapes differ"):
        distances(np.ones(3), b)


def test_within_needs_every_bound() -> None:
    b = np.ones(100)
    a = b.copy()
    a[0] += 0.1  # one large error: max-abs sees it, the averages barely do
    assert within(a, b, Bounds(0.2, 0.05, 0.99))
    assert not within(a, b, Bounds(0.05, 0.05, 0.99))
    assert not within(a, b, Bounds(0.2, 0.001, 0.99))
    assert not within(-b, b, Bounds(10, 10, 0.0))


def test_bounds_from_profiled_distances_keep_a_margin() -> None:
    seen = [Distances(1e-4, 1e-5, 1 - 1e-8), Distances(3e-4, 2e-5, 1 - 4e-8)]
    b = bounds_from(seen, margin=1.0)
    assert b.max_abs == pytest.approx(6e-4) and b.rel_l2 == pytest.approx(4e-5)
    assert b.min_cosine == pytest.approx(1 - 8e-8)
    with pytest.raises(ValueError):
        bounds_from([], 1.0)


def test_quantized_digests_agree_for_honest_noise_off_grid_boundaries() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 1000, 256) * 0.01  # values on grid centres
    noisy = x + rng.uniform(-1e-5, 1e-5, x.shape)
    assert tolerance_digest(x, 0.01) == tolerance_digest(noisy, 0.01)
    assert tolerance_digest(x, 0.01) != tolerance_digest(x + 0.02, 0.01)
    assert tolerance_digest(x, 0.01) != tolerance_digest(x.reshape(16, 16), 0.01)  # the shape is committed
    # On a grid boundary the same noise splits honest nodes: the documented risk of a quantized digest.
    edge = np.full(4, 0.005)
    assert tolerance_digest(edge - 1e-6, 0.01) != tolerance_digest(edge + 1e-6, 0.01)
    assert boundary_risk(256, 1e-5, 0.01) == pytest.approx(0.256)
    with pytest.raises(ValueError):
        tolerance_digest(np.array([math.inf]), 0.01)
