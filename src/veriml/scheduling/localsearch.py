"""Ours: seeded iterated local search on swaps, with the exact cost kept incrementally.

Where the baseline (`genetic`) spends each evaluation on a child scored from scratch with a slow
matching, this search spends the same time on many more, cheaper, exact evaluations:
- seeds built from the network (`seeds`): groups of near devices for data parallelism, pipelines of
  near devices, and the mixtures between, beside random ones;
- moves that swap one to four devices each way between two groups, which keep the partition balanced,
  scored by updating only the two groups' costs and the pipeline entries that touch them (`search.State`);
- half the moves repairs aimed at what sets a maximum, since no other move can lower it: the worst
  member of the group with the largest all-reduce cost, or the slowest matched link of a boundary on
  the chosen stage order, each swapped for a device that is close where it is needed;
- sideways moves allowed on the lexicographic key (the exact total, then its smooth companion, see
  `search.State`), and from a stall a restart at the best placement kicked either by a few random
  swaps or by one round of DT-FM's cyclic moves, the one part of their search we reuse.
"""

from __future__ import annotations

import numpy as np

from veriml.scheduling.cost import Edges, bottleneck_matching, evaluate
from veriml.scheduling.genetic import cyclic_partitioning
from veriml.scheduling.scenario import Scenario
from veriml.scheduling.search import Budget, Clock, Progress, SearchResult, State, as_partition, random_partition


def cluster_groups(dist: np.ndarray, k: int, size: int) -> np.ndarray:
    """A balanced greedy clustering: the most isolated free device and its size-1 nearest free ones, k times."""
    free = np.ones(dist.shape[0], dtype=bool)
    out = []
    for _ in range(k):
        idx = np.flatnonzero(free)
        sub = dist[np.ix_(idx, idx)]
        u = idx[int(sub.sum(axis=1).argmax())]
        near = idx[np.argsort(dist[u, idx], kind="stable")]
        grp = [u] + [int(d) for d in near if d != u][: size - 1]
        free[grp] = False
        out.append(grp)
    return np.array(out, dtype=np.int64)


def chain(dist: np.ndarray) -> np.ndarray:
    """The devices in a nearest-neighbour chain: from the most central one, always to the nearest free one,
    ties broken towards the more central. Sites come out contiguous, and near sites next to each other."""
    n = dist.shape[0]
    central = dist.sum(axis=1)
    free = np.ones(n, dtype=bool)
    u = int(central.argmin())
    out = [u]
    free[u] = False
    for _ in range(n - 1):
        idx = np.flatnonzero(free)
        u = int(idx[np.lexsort((central[idx], dist[u, idx]))[0]])
        out.append(u)
        free[u] = False
    return np.array(out, dtype=np.int64)


def dealt(order: np.ndarray, k: int, size: int, r: int) -> np.ndarray:
    """Groups from a device order: consecutive blocks of r groups' worth, each dealt round-robin to its r groups.

    r = 1 puts each group on consecutive (near) devices; r = k deals every stretch of k near devices one to
    each group, so that the pipelines run through near devices; the r between mix the two.
    """
    groups = []
    for start in range(0, k * size, r * size):
        block = order[start : start + r * size]
        groups.extend(block[j::r] for j in range(r))
    return np.array(groups, dtype=np.int64)


def seeds(edges: Edges, k: int, size: int) -> list[np.ndarray]:
    """Structured starting partitions from the network alone (no region labels): balanced clusters by
    all-reduce cost, their transpose by link cost, and chains of near devices dealt to 1, 2, 4 ... k groups."""
    out = [cluster_groups(edges.dp, k, size), cluster_groups(edges.pp, size, k).T.copy()]
    for dist in (edges.pp, edges.dp):
        order = chain(dist)
        out.extend(dealt(order, k, size, r) for r in range(1, k + 1) if k % r == 0)
    return out


def local_search(
    scenario: Scenario,
    seed: int = 0,
    budget: Budget = Budget(),
    on_progress: Progress | None = None,
    patience: int | None = None,
    seeded: bool = True,
) -> SearchResult:
    """Our search on `scenario` within `budget`; the best partition it met.

    `patience`: moves without a fall before a restart, by default 150 or twice the number of single
    swaps, whichever is less (a small instance's neighbourhood is soon exhausted). `seeded=False` starts
    from random partitions only (for measuring what the seeds contribute).
    """
    rng = np.random.default_rng(seed)
    edges = Edges.of(scenario)
    k, size, n = scenario.workload.stages, scenario.workload.group_size, scenario.devices
    if patience is None:
        patience = min(150, k * (k - 1) * size * size)
    clock = Clock(budget, on_progress)

    starts = (seeds(edges, k, size) if seeded else []) + [random_partition(rng, n, k) for _ in range(2)]
    states = []
    for g in starts:
        st = State(edges, g)
        clock.count(st.total)
        states.append(st)
    cur = min(states, key=State.key)
    best_key, best_groups = cur.key(), cur.groups.copy()
    # A short descent from each start first, so a poor seed's basin does not get the whole budget.
    share = max(1, patience // 2)
    for st in sorted(states, key=State.key):
        _descend(st, rng, clock, share)
        if st.key() < best_key:
            best_key, best_groups, cur = st.key(), st.groups.copy(), st
    stall = 0
    while not clock.spent():
        improved = _step(cur, rng, clock)
        key = cur.key()
        if key < best_key:
            best_key, best_groups, stall = key, cur.groups.copy(), 0
        elif not improved:
            stall += 1
        if stall >= patience:
            cur = _kick(edges, best_groups, rng)
            clock.count(cur.total)
            stall = 0
    part = as_partition(best_groups)
    method = "ours: seeded local search" if seeded else "ours: local search from random"
    return SearchResult(method, part, evaluate(edges, part), clock.evaluations, clock.elapsed(), seed, clock.history)


def _kick(edges: Edges, groups: np.ndarray, rng: np.random.Generator) -> State:
    """A restart near `groups`: a few random swaps, or one round of DT-FM's cyclic moves (which spread
    devices that are near each other over different groups, the shape of pipelines inside a site)."""
    k, size = groups.shape
    if rng.random() < 0.5:
        assign = np.empty(k * size, dtype=np.int64)
        assign[groups.ravel()] = np.repeat(np.arange(k), size)
        assign = cyclic_partitioning(edges.pp, assign, k)
        return State(edges, np.array([np.flatnonzero(assign == g) for g in range(k)]))
    st = State(edges, groups)
    for _ in range(int(rng.integers(2, 7))):
        g, h = rng.choice(k, size=2, replace=False)
        _, commit = st.try_swap(int(g), int(rng.integers(size)), int(h), int(rng.integers(size)))
        commit()
    return st


def _descend(st: State, rng: np.random.Generator, clock: Clock, tries: int) -> None:
    misses = 0
    while misses < tries and not clock.spent():
        misses = 0 if _step(st, rng, clock) else misses + 1


def _where(st: State) -> tuple[np.ndarray, np.ndarray]:
    """Each device's group and position."""
    k, size = st.groups.shape
    flat = st.groups.ravel()
    grp, pos = np.empty(flat.size, dtype=np.int64), np.empty(flat.size, dtype=np.int64)
    grp[flat], pos[flat] = np.repeat(np.arange(k), size), np.tile(np.arange(size), k)
    return grp, pos


def _repair_dp(st: State, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Swap the worst member of the group that sets the DP maximum for a device close to the rest of it."""
    g = int(st.gdp.argmax())
    members = st.groups[g]
    a = int(st.edges.dp[np.ix_(members, members)].sum(axis=1).argmax())
    rest = np.delete(members, a)
    near = st.edges.dp[:, rest].sum(axis=1)
    near[members] = np.inf
    w = int(np.argsort(near, kind="stable")[int(rng.integers(4))])
    grp, pos = _where(st)
    return g, a, int(grp[w]), int(pos[w])


def _repair_pp(st: State, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """On a boundary of the stage order (the costliest, or a random one), replace the far end of its
    slowest matched link with a device close to the near end."""
    k, size = st.groups.shape
    hops = [(st.ppm[st.order[i], st.order[i + 1]], st.order[i], st.order[i + 1]) for i in range(k - 1)]
    _, g, h = max(hops) if rng.random() < 0.5 else hops[int(rng.integers(k - 1))]
    if rng.random() < 0.5:
        g, h = h, g
    m = st.edges.pp[np.ix_(st.groups[g], st.groups[h])]
    _, cols = bottleneck_matching(m)
    a = int(m[np.arange(size), cols].argmax())
    u, b = st.groups[g, a], int(cols[a])
    near = st.edges.pp[u].copy()
    near[st.groups[h]] = np.inf
    near[u] = np.inf
    w = int(np.argsort(near, kind="stable")[int(rng.integers(4))])
    grp, pos = _where(st)
    return int(grp[w]), int(pos[w]), h, b  # w goes to h in the far end's place


def _step(st: State, rng: np.random.Generator, clock: Clock) -> bool:
    """Try one move; keep it if the key does not rise. True if the key fell."""
    k, size = st.groups.shape
    r = rng.random()
    if r < 0.2:
        g, a, h, b = _repair_dp(st, rng)
    elif r < 0.5:
        g, a, h, b = _repair_pp(st, rng)
    elif r < 0.7 and size >= 2:  # a block of 2-4 devices each way
        g, h = (int(x) for x in rng.choice(k, size=2, replace=False))
        m = int(rng.integers(2, min(4, size) + 1))
        a, b = rng.choice(size, size=m, replace=False), rng.choice(size, size=m, replace=False)
    else:
        g, h = (int(x) for x in rng.choice(k, size=2, replace=False))
        a, b = int(rng.integers(size)), int(rng.integers(size))
    if g == h:
        return False
    old = st.key()
    key, commit = st.try_swap(g, a, h, b)
    clock.count(key[0])
    if key <= old:
        commit()
        return key < old
    return False
