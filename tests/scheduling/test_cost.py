"""The cost model on cases small enough to check by hand or by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from veriml.scheduling.cost import (
    Edges,
    bottleneck_matching,
    bottleneck_matching_lsa,
    evaluate,
    held_karp_path,
    pipelines,
)
from veriml.scheduling.scenario import Workload, make


def two_sites(act_bytes: float = 1.25e8, grad_bytes: float = 5e8):
    """Devices 0, 1 at site X and 2, 3 at site Y: 0 ms and 10 Gbit/s inside, 10 ms and 1 Gbit/s across."""
    site = [0, 0, 1, 1]
    lat = np.array([[0.0 if site[i] == site[j] else 10.0 for j in range(4)] for i in range(4)])
    bw = np.array([[10.0 if site[i] == site[j] else 1.0 for j in range(4)] for i in range(4)])
    w = Workload("toy", 1e6, 2, stages=2, group_size=2, activation_bytes=act_bytes, gradient_bytes=grad_bytes)
    return make("two-sites", lat, bw, w, ("X", "X", "Y", "Y"))


def test_units_ms_and_gbps_become_seconds_and_bytes_per_second():
    s = two_sites()
    assert s.latency_s[0, 2] == pytest.approx(0.010)
    assert s.bandwidth_bps[0, 2] == pytest.approx(1.25e8)  # 1 Gbit/s = 125 MB/s
    assert s.bandwidth_bps[0, 1] == pytest.approx(1.25e9)


def test_hand_computed_costs():
    e = Edges.of(two_sites())
    # Groups by site: DP 2 (0 + 5e8 / (1.25e9 * 2)) = 0.4; PP one cross link 0.01 + 1.25e8 / 1.25e8 = 1.01.
    c = evaluate(e, [(0, 1), (2, 3)])
    assert (c.dp, c.pp, c.total) == pytest.approx((0.4, 1.01, 0.4 + 2 * 1.01))
    # Groups across sites: DP 2 (0.01 + 5e8 / (1.25e8 * 2)) = 4.02; PP matched inside sites 1.25e8 / 1.25e9 = 0.1.
    c = evaluate(e, [(0, 2), (1, 3)])
    assert (c.dp, c.pp, c.total) == pytest.approx((4.02, 0.1, 4.02 + 0.2))
    assert sorted(map(sorted, pipelines(e, ((0, 2), (1, 3)), c.order))) == [[0, 1], [2, 3]]


def test_dp_cost_is_the_worst_member_sum():
    lat = np.zeros((4, 4))
    bw = np.array([[1, 1, 2, 4], [1, 1, 1, 1], [2, 1, 1, 1], [4, 1, 1, 1]], dtype=float)  # Gbit/s
    w = Workload("toy", 1e6, 1, stages=1, group_size=4, activation_bytes=0.0, gradient_bytes=1e9)
    e = Edges.of(make("star", lat, bw, w))
    # member 1: 2 * 1e9 / (b * 4) to each of 0, 2, 3 at 1 Gbit/s = 3 * 2 * 1e9 / (1.25e8 * 4) = 12 s
    assert evaluate(e, [(0, 1, 2, 3)]).dp == pytest.approx(12.0)


def brute_bottleneck(m: np.ndarray) -> float:
    n = m.shape[0]
    return min(max(m[r, p[r]] for r in range(n)) for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("matching", [bottleneck_matching, bottleneck_matching_lsa])
def test_bottleneck_matching_is_exact(matching):
    rng = np.random.default_rng(0)
    for t in range(200):
        n = int(rng.integers(1, 7))
        # integer entries make ties common, which is where a threshold search goes wrong
        m = rng.integers(0, 4, (n, n)).astype(float) if t % 2 else rng.random((n, n))
        value, cols = matching(m)
        assert value == brute_bottleneck(m)
        assert sorted(cols) == list(range(n))
        assert max(m[r, cols[r]] for r in range(n)) == value


def test_held_karp_is_the_best_open_path():
    rng = np.random.default_rng(1)
    for _ in range(40):
        k = int(rng.integers(1, 8))
        d = rng.random((k, k))
        d = d + d.T
        best = min(sum(d[p[i], p[i + 1]] for i in range(k - 1)) for p in itertools.permutations(range(k)))
        cost, path = held_karp_path(d)
        assert cost == pytest.approx(best, abs=1e-12)
        assert sorted(path) == list(range(k))
        assert sum(d[path[i], path[i + 1]] for i in range(k - 1)) == pytest.approx(cost, abs=1e-12)
