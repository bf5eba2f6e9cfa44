"""The searches: determinism, the incremental state, and ours against theirs and against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from veriml.scheduling.cost import Edges, evaluate
from veriml.scheduling.genetic import gcma
from veriml.scheduling.localsearch import local_search
from veriml.scheduling.scenario import Workload, make
from veriml.scheduling.search import Budget, State


def sites(n: int, stages: int, n_sites: int, seed: int):
    """n devices over n_sites sites: fast inside a site, a random slower link between each two sites."""
    rng = np.random.default_rng(seed)
    site = rng.permutation(np.arange(n) % n_sites)
    s_lat = rng.uniform(10, 200, (n_sites, n_sites))
    s_bw = rng.uniform(0.3, 1.2, (n_sites, n_sites))
    s_lat, s_bw = (s_lat + s_lat.T) / 2, (s_bw + s_bw.T) / 2
    np.fill_diagonal(s_lat, 5.0)
    np.fill_diagonal(s_bw, 2.0)
    w = Workload("toy", 1e9, stages, stages=stages, group_size=n // stages, activation_bytes=5e8, gradient_bytes=9e8)
    return make(f"sites-{n}-{seed}", s_lat[np.ix_(site, site)], s_bw[np.ix_(site, site)], w)


def all_partitions(items: list[int], size: int):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for others in itertools.combinations(rest, size - 1):
        left = [x for x in rest if x not in others]
        for tail in all_partitions(left, size):
            yield [(first, *others), *tail]


def test_state_tracks_swaps_exactly():
    s = sites(32, 4, 4, seed=3)
    e = Edges.of(s)
    rng = np.random.default_rng(0)
    st = State(e, rng.permutation(32).reshape(4, 8))
    for _ in range(30):
        g, h = rng.choice(4, size=2, replace=False)
        a, b = rng.choice(8, size=2, replace=False), rng.choice(8, size=2, replace=False)
        key, commit = st.try_swap(int(g), a, int(h), b)
        commit()
        fresh = State(e, st.groups)
        assert key == pytest.approx(fresh.key())
        assert st.total == pytest.approx(evaluate(e, st.groups).total)


@pytest.mark.parametrize("search", [local_search, gcma])
def test_same_seed_same_result(search):
    s = sites(16, 4, 3, seed=1)
    budget = Budget(time_s=None, evaluations=150)
    a, b = search(s, seed=7, budget=budget), search(s, seed=7, budget=budget)
    assert a.partition == b.partition and a.cost == b.cost and a.evaluations == b.evaluations == 150


def test_ours_finds_the_brute_force_optimum():
    for seed in range(3):
        s = sites(8, 4, 3, seed=seed)
        e = Edges.of(s)
        best = min(evaluate(e, p).total for p in all_partitions(list(range(8)), 2))
        assert local_search(s, seed=0, budget=Budget(time_s=None, evaluations=300)).cost.total == pytest.approx(best)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ours_not_above_theirs_on_the_same_budget(seed):
    s = sites(32, 4, 4, seed=seed)
    budget = Budget(time_s=None, evaluations=300)
    ours, theirs = local_search(s, seed=seed, budget=budget), gcma(s, seed=seed, budget=budget)
    assert ours.cost.total <= theirs.cost.total + 1e-9


def test_result_is_a_balanced_partition_with_its_cost():
    s = sites(16, 4, 2, seed=5)
    r = local_search(s, seed=0, budget=Budget(time_s=None, evaluations=100))
    assert sorted(d for g in r.partition for d in g) == list(range(16))
    assert all(len(g) == 4 for g in r.partition)
    assert r.cost == evaluate(Edges.of(s), r.partition)
    assert [b for _, _, b in r.history] == sorted((b for _, _, b in r.history), reverse=True)
