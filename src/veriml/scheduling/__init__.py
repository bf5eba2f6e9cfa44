"""Placing a pipeline- and data-parallel training job on devices joined by a slow, uneven network.

DT-FM's cost model (Yuan et al. 2022) over a scenario's latency and bandwidth matrices, their
genetic search as the baseline, and ours (seeded local search with exact incremental costs). Pure:
nothing here reads files except `scenario.load`, and nothing prints.
"""

from veriml.scheduling.cost import Cost, Edges, evaluate, pipelines
from veriml.scheduling.genetic import gcma
from veriml.scheduling.localsearch import local_search
from veriml.scheduling.scenario import Scenario, Workload, list_shipped, load
from veriml.scheduling.search import Budget, SearchResult

__all__ = [
    "Budget", "Cost", "Edges", "Scenario", "SearchResult", "Workload",
    "evaluate", "gcma", "list_shipped", "load", "local_search", "pipelines",
]  # fmt: skip
