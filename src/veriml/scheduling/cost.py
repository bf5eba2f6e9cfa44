"""DT-FM's communication cost of a placement (Yuan et al. 2022, section 3), computed exactly.

A placement is a balanced partition of the devices into `stages` groups of `group_size`: each group
holds one pipeline stage and is that stage's data-parallel group. With A in seconds and B in bytes/s:

- data-parallel cost  DP = max over groups g, members i of  sum_{j in g, j != i} 2 (a_ij + c_grad / (b_ij N))
- pipeline cost between groups g, h: the bottleneck perfect matching of g to h under a_ij + c_act / b_ij
  (each replica's stage-k device sends to one stage-k+1 device)
- stage order: the open path over groups of least summed pipeline cost (Held-Karp), PP = that sum
- total = DP + 2 PP (activations forward, gradients backward)

Their `8 * GB / Gbps` is our `bytes / (bytes/s)`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from veriml.scheduling.scenario import Scenario

Partition = tuple[tuple[int, ...], ...]  # groups of device indices


@dataclass(frozen=True)
class Edges:
    """Per-pair costs in seconds, precomputed once per scenario."""

    dp: np.ndarray  # 2 (a_ij + c_grad / (b_ij N)), diagonal 0
    pp: np.ndarray  # a_ij + c_act / b_ij

    @staticmethod
    def of(s: Scenario) -> Edges:
        w = s.workload
        with np.errstate(divide="ignore"):
            dp = 2 * (s.latency_s + w.gradient_bytes / (s.bandwidth_bps * w.group_size))
            pp = s.latency_s + w.activation_bytes / s.bandwidth_bps
        np.fill_diagonal(dp, 0.0)
        np.fill_diagonal(pp, 0.0)
        return Edges(dp, pp)


@dataclass(frozen=True)
class Cost:
    """A placement's cost, its parts and the stage order and matchings that achieve it."""

    total: float
    dp: float
    pp: float  # the path sum (total = dp + 2 pp)
    order: tuple[int, ...]  # group indices, stage 0 first
    group_dp: tuple[float, ...]  # each group's data-parallel cost


def group_dp_cost(dp_edges: np.ndarray, group: np.ndarray) -> float:
    """A group's data-parallel cost: its worst member's summed all-reduce time."""
    sub = dp_edges[np.ix_(group, group)]
    return float(sub.sum(axis=1).max())


def bottleneck_matching(m: np.ndarray) -> tuple[float, np.ndarray]:
    """The least t such that rows and columns of `m` have a perfect matching using entries <= t; and one.

    Exact: binary search over the sorted distinct entries, each threshold tested by a 0/1 assignment
    (a perfect matching below t exists iff the assignment of `m > t` costs 0). The search starts at
    the lower bound max(max row minimum, max column minimum), which most matrices attain.
    Returns (t, cols) with row r matched to column cols[r].
    """
    lb = max(m.min(axis=1).max(), m.min(axis=0).max())
    rows, cols = linear_sum_assignment(m > lb)
    if not (m[rows, cols] > lb).any():
        return float(lb), cols
    vals = np.unique(m)
    lo, hi = int(np.searchsorted(vals, lb)) + 1, len(vals) - 1  # vals[hi] always admits a matching
    best = None
    while lo < hi:
        mid = (lo + hi) // 2
        rows, cols = linear_sum_assignment(m > vals[mid])
        if (m[rows, cols] > vals[mid]).any():
            lo = mid + 1
        else:
            hi, best = mid, cols
    if best is None:
        _, best = linear_sum_assignment(m > vals[hi])
    return float(vals[hi]), best


def bottleneck_matching_lsa(m: np.ndarray) -> tuple[float, np.ndarray]:
    """DT-FM's method: forbid edges from the largest down until no perfect matching is left.

    Also exact, but one assignment per forbidden edge (up to N^2); kept as the baseline's evaluator.
    """
    n = m.shape[0]
    big = 1e6 + float(m.max()) * n
    c = m.astype(float).copy()
    cols = linear_sum_assignment(c)[1]
    for idx in np.argsort(m, axis=None, kind="stable")[::-1]:
        r, k = divmod(int(idx), n)
        c[r, k] = big
        rows, new = linear_sum_assignment(c)
        if c[rows, new].sum() >= big:
            return float(m[r, k]), cols
        cols = new
    raise AssertionError("unreachable: an n x n matrix always has a perfect matching")


@functools.cache
def _subset_layers(k: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """For each subset size 2..k: every (subset, last node j in it) pair, and the subset without j."""
    masks = np.arange(1 << k)
    popcount = np.array([bin(x).count("1") for x in range(1 << k)])
    out = []
    for size in range(2, k + 1):
        layer = masks[popcount == size]
        sel = np.repeat(layer, k)
        js = np.tile(np.arange(k), len(layer))
        keep = (sel >> js) & 1 == 1
        sel, js = sel[keep], js[keep]
        out.append((sel, js, sel ^ (1 << js)))
    return tuple(out)


def held_karp_path(d: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """The open path visiting every node once with the least summed cost d[u, v] (any start, any end).

    Held-Karp dynamic programming over subsets, O(2^k k^2), vectorised over the subsets of each size.
    """
    k = d.shape[0]
    if k == 1:
        return 0.0, (0,)
    full = 1 << k
    dp = np.full((full, k), np.inf)
    parent = np.full((full, k), -1, dtype=np.int64)
    dp[1 << np.arange(k), np.arange(k)] = 0.0
    dt = d.T
    for sel, js, prev in _subset_layers(k):
        cand = dp[prev] + dt[js]  # cand[p, i]: reach j = js[p] from i, having visited prev[p]
        best = cand.argmin(axis=1)
        dp[sel, js] = cand[np.arange(len(sel)), best]
        parent[sel, js] = best
    end = int(dp[full - 1].argmin())
    cost = float(dp[full - 1, end])
    path, mask, j = [end], full - 1, end
    while parent[mask, j] >= 0:
        i = int(parent[mask, j])
        mask ^= 1 << j
        path.append(i)
        j = i
    return cost, tuple(reversed(path))


def pp_matrix(pp_edges: np.ndarray, groups: list[np.ndarray], matching=bottleneck_matching) -> np.ndarray:
    """Bottleneck matching cost between every two groups (symmetric, zero diagonal)."""
    k = len(groups)
    out = np.zeros((k, k))
    for g in range(k):
        for h in range(g + 1, k):
            out[g, h] = out[h, g] = matching(pp_edges[np.ix_(groups[g], groups[h])])[0]
    return out


def evaluate(edges: Edges, partition: Partition | list, matching=bottleneck_matching) -> Cost:
    """The total cost DP + 2 PP of a partition, with the stage order that attains it."""
    groups = [np.asarray(g, dtype=np.int64) for g in partition]
    gdp = tuple(group_dp_cost(edges.dp, g) for g in groups)
    pp, order = held_karp_path(pp_matrix(edges.pp, groups, matching))
    dp = max(gdp)
    return Cost(dp + 2 * pp, dp, pp, order, gdp)


def pipelines(edges: Edges, partition: Partition, order: tuple[int, ...]) -> list[list[int]]:
    """The devices of each pipeline, stage 0 first: stage k's device r sends to its bottleneck match in stage k+1."""
    stages = [list(partition[g]) for g in order]
    lines = [[d] for d in stages[0]]
    for k in range(1, len(stages)):
        prev = [line[-1] for line in lines]
        _, cols = bottleneck_matching(edges.pp[np.ix_(prev, stages[k])])
        for r, line in enumerate(lines):
            line.append(stages[k][int(cols[r])])
    return lines
