"""`veriml schedule`: search a scenario and print the placement and its cost."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

from veriml.scheduling.cost import Edges, pipelines
from veriml.scheduling.genetic import gcma
from veriml.scheduling.localsearch import local_search
from veriml.scheduling.progress import search_bar
from veriml.scheduling.scenario import load
from veriml.scheduling.search import Budget, SearchResult

Method = Literal["ours", "dt-fm"]


def schedule_command(console: Console, scenario: str | Path, seed: int, time_s: float, method: Method) -> SearchResult:
    """Search `scenario` for `time_s` seconds with `method` and print the placement."""
    s = load(scenario)
    search = local_search if method == "ours" else gcma
    with search_bar(f"{method} on {s.name}") as bar:
        r = search(s, seed=seed, budget=Budget(time_s=time_s), on_progress=bar)
    c, e = r.cost, Edges.of(s)
    console.print(f"[bold]{s.name}[/]: {s.description}")
    console.print(
        f"{r.method}, seed {seed}: {r.evaluations} evaluations in {r.seconds:.1f} s; "
        f"cost [bold]{c.total:.3f} s[/] = data-parallel {c.dp:.3f} s + 2 x pipeline {c.pp:.3f} s"
    )
    table = Table(title="stages in pipeline order, each a data-parallel group")
    table.add_column("stage", justify="right")
    table.add_column("all-reduce s", justify="right")
    table.add_column("to next s", justify="right")
    table.add_column("device region, in pipelines 0, 1, ... (pipeline r sends to pipeline r of the next stage)")
    lines = pipelines(e, r.partition, c.order)
    for k, g in enumerate(c.order):
        nxt = f"{_hop(e, r.partition, c.order, k):.3f}" if k + 1 < len(c.order) else "-"
        cells = ", ".join(_device(s.regions, line[k]) for line in lines)
        table.add_row(str(k), f"{c.group_dp[g]:.3f}", nxt, cells)
    console.print(table)
    return r


def _hop(e: Edges, partition, order, k: int) -> float:
    from veriml.scheduling.cost import bottleneck_matching

    a, b = partition[order[k]], partition[order[k + 1]]
    return bottleneck_matching(e.pp[list(a)][:, list(b)])[0]


def _device(regions: tuple[str, ...], d: int) -> str:
    return f"{d} {regions[d]}" if regions else str(d)
