"""What every placement search shares: its budget, its result, and the incremental cost state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from veriml.scheduling.cost import Cost, Edges, Partition, bottleneck_matching, evaluate, held_karp_path

SOFT = 4.0  # exponent of the power means in State's smooth companion

# on_progress(fraction of the budget used, best total cost so far)
Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class Budget:
    """Stop after `time_s` seconds or `evaluations` cost evaluations, whichever comes first.

    A search is a function of its seed and its evaluation count; a time limit makes it depend on the
    machine's speed too, so pass `evaluations` alone where the result must be reproducible.
    """

    time_s: float | None = 10.0
    evaluations: int | None = None

    def __post_init__(self) -> None:
        if self.time_s is None and self.evaluations is None:
            raise ValueError("a budget needs a time or an evaluation count")


class Clock:
    """Tracks a budget's use; `spent()` is true once either limit is reached."""

    def __init__(self, budget: Budget, on_progress: Progress | None = None) -> None:
        self.budget, self.on_progress = budget, on_progress
        self.start = time.perf_counter()
        self.evaluations = 0
        self.best = float("inf")
        self.history: list[tuple[float, int, float]] = []  # (seconds, evaluations, best) at each improvement
        self._last_report = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction(self) -> float:
        f = 0.0
        if self.budget.time_s is not None:
            f = max(f, self.elapsed() / self.budget.time_s)
        if self.budget.evaluations is not None:
            f = max(f, self.evaluations / self.budget.evaluations)
        return min(f, 1.0)

    def spent(self) -> bool:
        b = self.budget
        return (b.evaluations is not None and self.evaluations >= b.evaluations) or (
            b.time_s is not None and self.elapsed() >= b.time_s
        )

    def count(self, total: float) -> None:
        """Record one evaluation of cost `total`."""
        self.evaluations += 1
        if total < self.best:
            self.best = total
            self.history.append((self.elapsed(), self.evaluations, total))
        if self.on_progress is not None and (self.evaluations % 64 == 0 or self.spent()):
            now = self.elapsed()
            if now - self._last_report > 0.1:
                self._last_report = now
                self.on_progress(self.fraction(), self.best)


@dataclass(frozen=True)
class SearchResult:
    """The best placement a search found and how it got there."""

    method: str
    partition: Partition
    cost: Cost
    evaluations: int
    seconds: float
    seed: int
    history: list[tuple[float, int, float]] = field(default_factory=list)


def random_partition(rng: np.random.Generator, n: int, stages: int) -> np.ndarray:
    """A uniformly random balanced partition as a stages x (n / stages) array of devices."""
    return rng.permutation(n).reshape(stages, n // stages)


def as_partition(groups: np.ndarray) -> Partition:
    """Canonical form: each group sorted, groups sorted by their first device."""
    return tuple(sorted(tuple(sorted(int(d) for d in g)) for g in groups))


class State:
    """A partition with its group costs and pipeline matrix kept current under swaps.

    A swap of two devices between groups g and h changes only those groups' data-parallel costs and
    the 2(k-1)-1 pipeline entries that touch g or h, so a move costs 13 matchings instead of 28 at k = 8.
    Beside the exact cost it keeps a smooth companion, used to break ties: each group's power mean
    (p = SOFT) of its members' all-reduce times, and for each pair of groups the power mean of the
    edges of a perfect matching least in that mean. They fall before the maxima they stand for can,
    so a search can walk off the maxima's plateaus, and being concave in how many edges are slow,
    they reward making one boundary entirely fast over making many boundaries partly fast.
    """

    def __init__(self, edges: Edges, groups: np.ndarray) -> None:
        self.edges = edges
        self.groups = np.array(groups, dtype=np.int64)
        k = self.groups.shape[0]
        gd = [self._gdp(self.groups[g]) for g in range(k)]
        self.gdp = np.array([x[0] for x in gd])
        self.gdp_mean = np.array([x[1] for x in gd])
        self.ppm = np.zeros((k, k))
        self.ppm_mean = np.zeros((k, k))
        for g in range(k):
            for h in range(g + 1, k):
                b, m = self._pp(self.groups[g], self.groups[h])
                self.ppm[g, h] = self.ppm[h, g] = b
                self.ppm_mean[g, h] = self.ppm_mean[h, g] = m
        self.pp, self.order = held_karp_path(self.ppm)
        self.total = float(self.gdp.max() + 2 * self.pp)
        self._key = self._key_of(self.total, self.gdp_mean, self.ppm_mean, self.order)

    def _gdp(self, grp: np.ndarray) -> tuple[float, float]:
        rows = self.edges.dp[np.ix_(grp, grp)].sum(axis=1)
        return float(rows.max()), float(np.mean(rows**SOFT) ** (1 / SOFT))

    def _pp(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        m = self.edges.pp[np.ix_(a, b)]
        mp = m**SOFT
        r, c = linear_sum_assignment(mp)
        return bottleneck_matching(m)[0], float(np.mean(mp[r, c]) ** (1 / SOFT))

    @staticmethod
    def _key_of(total: float, gdp_mean: np.ndarray, ppm_mean: np.ndarray, order: tuple[int, ...]):
        # The smooth path is its own least path: among orders tied on the bottlenecks, the one whose
        # hops are closest to cheap, which the exact order's tie-breaking would not reward.
        return total, float(gdp_mean.max() + 2 * held_karp_path(ppm_mean)[0])

    def key(self) -> tuple[float, float]:
        """Lexicographic objective: the exact total, then its smooth companion."""
        return self._key

    def try_swap(self, g: int, a, h: int, b) -> tuple[tuple[float, float], Callable[[], None]]:
        """The key after swapping groups[g, a] and groups[h, b] (positions or arrays of them), and a commit."""
        rows = self.groups[[g, h]].copy()
        rows[0, a], rows[1, b] = self.groups[h, b], self.groups[g, a]
        gdp, gdp_mean = self.gdp.copy(), self.gdp_mean.copy()
        (gdp[g], gdp_mean[g]), (gdp[h], gdp_mean[h]) = self._gdp(rows[0]), self._gdp(rows[1])
        ppm, ppm_mean = self.ppm.copy(), self.ppm_mean.copy()
        k = ppm.shape[0]
        for x, row in ((g, rows[0]), (h, rows[1])):
            for y in range(k):
                if y == x or (x == h and y == g):
                    continue
                other = rows[0] if y == g else (rows[1] if y == h else self.groups[y])
                bb, mm = self._pp(row, other)
                ppm[x, y] = ppm[y, x] = bb
                ppm_mean[x, y] = ppm_mean[y, x] = mm
        pp, order = held_karp_path(ppm)
        total = float(gdp.max() + 2 * pp)
        key = self._key_of(total, gdp_mean, ppm_mean, order)

        def commit() -> None:
            self.groups[g], self.groups[h] = rows[0], rows[1]
            self.gdp, self.gdp_mean, self.ppm, self.ppm_mean = gdp, gdp_mean, ppm, ppm_mean
            self.pp, self.order, self.total, self._key = pp, order, total, key

        return key, commit

    def cost(self) -> Cost:
        return evaluate(self.edges, self.groups)
