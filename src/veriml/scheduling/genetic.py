"""The baseline: DT-FM's scheduler re-implemented (Yuan et al. 2022, section 3.3; code
DS3Lab/DT-FM `scheduler/heuristic_evolutionary_solver/scheduler.py`).

GCMA, a genetic algorithm with a cyclic-partitioning local search (Kim et al. 2011): a population of
100 random balanced partitions; each trial picks two parents at random, copies five random devices'
groups from one into the other (a five-point crossover, then rebalanced), runs one round of cyclic
partitioning moves with their gain heuristic, scores the child with the full cost model (their
bottleneck matching: repeated linear_sum_assignment) and lets it replace the worse parent unless it is
worse than both. Kept as they wrote it, with three differences: the random generator is seeded (their
`random.seed = i` assigns instead of seeding), the replacement test compares scores (theirs compares a
score with a boolean), and the search stops on a budget rather than after 4,900 trials.
"""

from __future__ import annotations

import numpy as np

from veriml.scheduling.cost import Edges, bottleneck_matching_lsa, evaluate
from veriml.scheduling.scenario import Scenario
from veriml.scheduling.search import Budget, Clock, Progress, SearchResult, as_partition

POPULATION = 100


def _groups(assign: np.ndarray, k: int) -> list[np.ndarray]:
    return [np.flatnonzero(assign == g) for g in range(k)]


def _score(edges: Edges, assign: np.ndarray, k: int) -> float:
    return evaluate(edges, _groups(assign, k), matching=bottleneck_matching_lsa).total


def five_point_crossover(rng: np.random.Generator, p1: np.ndarray, p2: np.ndarray, size: int) -> np.ndarray:
    """p2 with five random devices given p1's groups, then rebalanced the way DT-FM does it."""
    child = p2.copy()
    points = rng.permutation(len(p1))[:5]
    child[points] = p1[points]
    sizes = np.bincount(child, minlength=int(p1.max()) + 1)
    for i in range(len(child)):
        if sizes[child[i]] > size:
            j = int(np.flatnonzero(sizes < size)[0])
            sizes[j] += 1
            sizes[child[i]] -= 1
            child[i] = j
    return child


def _gain(pp: np.ndarray, assign: np.ndarray, locked: np.ndarray, k: int):
    """DT-FM's move gains: for each group's unlocked device nearest its own group, the best target group.

    gain[v, own] = v's least pipeline cost to a member of its own group; gain[v, q] = v's mean pipeline
    cost to group q. Returns G_ij (k x k), G_i (k) and per group the (device, target) of G_i.
    """
    n = len(assign)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), assign] = 1.0
    gain = (pp @ onehot) / onehot.sum(axis=0)[None, :]
    same = (assign[:, None] == assign[None, :]) & ~np.eye(n, dtype=bool)
    own = np.where(same, pp, np.inf).min(axis=1)
    gain[np.arange(n), assign] = own
    g_ij = np.full((k, k), -np.inf)
    g_i = np.full(k, -np.inf)
    trace: list[tuple[int | None, int | None]] = [(None, None)] * k
    for p in range(k):
        members = np.flatnonzero((assign == p) & ~locked)
        if len(members) == 0:
            continue
        v = int(members[np.argmin(own[members])])
        with np.errstate(invalid="ignore"):  # a lone member's own gain is inf; delta[p] is set below
            delta = gain[v] - gain[v, p]
        delta[p] = -np.inf
        g_ij[p] = delta
        q = int(np.argmax(delta))
        g_i[p], trace[p] = delta[q], (v, q)
    return g_ij, g_i, trace


def cyclic_partitioning(pp: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """One round of DT-FM's `move_cycles`: up to k cycles of locked moves, each cut at its best prefix."""
    n = len(assign)
    locked = np.zeros(n, dtype=bool)
    locked_groups = np.zeros(k, dtype=bool)
    offsprings, sums = [assign], [0.0]
    for _ in range(k):
        cur = offsprings[-1].copy()
        moves: list[tuple[int, int, int]] = []
        eps: list[float] = []
        tau: list[float] = []
        g_ij, g_i, trace = _gain(pp, cur, locked, k)
        s0 = si = int(np.argmax(g_i))
        for _ in range(n):
            v, pv = trace[si]
            if v is None:
                if not moves:
                    break
                v, pv = moves[-1][0], s0
            cur[v] = pv
            locked[v] = True
            locked_groups[pv] = True
            moves.append((v, si, pv))
            eps.append(g_i[si])
            tau.append(g_ij[si, s0])
            si = pv
            if si == s0:
                break
            g_ij, g_i, trace = _gain(pp, cur, locked, k)
        if not moves:
            break
        best, cut = 0.0, 0
        for i in range(1, len(eps)):
            if sum(eps[:i]) + tau[i] > best:
                best, cut = sum(eps[:i]) + tau[i], i
        for i in range(len(eps) - 1, cut, -1):
            cur[moves[i][0]] = moves[i][1]
        cur[moves[cut][0]] = s0
        offsprings.append(cur)
        sums.append(best)
        if locked_groups.all():
            break
    best, m = 0.0, 0
    for i in range(1, len(sums)):
        if sum(sums[:i]) > best:
            best, m = sum(sums[:i]), i - 1
    return offsprings[m]


def gcma(
    scenario: Scenario, seed: int = 0, budget: Budget = Budget(), on_progress: Progress | None = None
) -> SearchResult:
    """DT-FM's search on `scenario` within `budget`; the best partition it met."""
    rng = np.random.default_rng(seed)
    edges = Edges.of(scenario)
    k, size, n = scenario.workload.stages, scenario.workload.group_size, scenario.devices
    clock = Clock(budget, on_progress)
    pop, scores = [], []
    best_assign, best_score = None, float("inf")
    for _ in range(POPULATION):
        a = np.repeat(np.arange(k), size)[rng.permutation(n)]
        s = _score(edges, a, k)
        clock.count(s)
        pop.append(a)
        scores.append(s)
        if s < best_score:
            best_assign, best_score = a, s
        if clock.spent():
            break
    while not clock.spent():
        i, j = (int(x) for x in rng.integers(len(pop), size=2))
        child = cyclic_partitioning(edges.pp, five_point_crossover(rng, pop[i], pop[j], size), k)
        s = _score(edges, child, k)
        clock.count(s)
        if s < best_score:
            best_assign, best_score = child, s
        if s <= max(scores[i], scores[j]):
            worse = i if scores[i] > scores[j] else j
            pop[worse], scores[worse] = child, s
    assert best_assign is not None
    part = as_partition(_groups(best_assign, k))
    return SearchResult("dt-fm gcma", part, evaluate(edges, part), clock.evaluations, clock.elapsed(), seed,
                        clock.history)  # fmt: skip
