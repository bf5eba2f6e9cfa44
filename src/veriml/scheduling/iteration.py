"""Predicted time of one training iteration of a placement: compute plus the communication it cannot hide.

The cost model (`cost`) ranks placements by communication alone; this turns a placement into seconds
per iteration at a given compute speed, so scenarios can be compared by throughput as DT-FM's headline
does. The model, stated so it can be argued with:

- each of the `group_size` pipelines runs M = tokens_per_iteration / (group_size * sequence_length *
  micro_batch_sequences) micro-batches, GPipe-style: all forwards, then all backwards;
- a stage's forward costs 2 * (params / stages) * tokens FLOPs, its backward twice that (the 6 N T
  rule; attention's sequence-squared term and recomputation left out), at `flops_per_gpu` achieved;
- each boundary of a pipeline carries activations forward and gradients of the same size back, the
  scenario's per-iteration activation volume split over the M micro-batches, one message each at
  latency + bytes / bandwidth over the link the placement's bottleneck matching chose. Sending runs
  beside compute, one micro-batch at a time per link, so a pass over the pipeline takes
  sum(stage compute) + sum(link times) + (M - 1) * max(stage compute, slowest link);
- then each stage's group all-reduces its gradients, not overlapped with anything: the cost model's
  data-parallel cost (its slowest group).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from veriml.scheduling.cost import Edges, Partition, evaluate, pipelines
from veriml.scheduling.scenario import Scenario


@dataclass(frozen=True)
class IterationTime:
    """Seconds per iteration and its parts."""

    total_s: float
    compute_s: float  # the same schedule on an infinitely fast network (pipeline bubbles included)
    pipeline_s: float  # forward + backward passes with their communication, slowest pipeline
    allreduce_s: float  # data-parallel gradient all-reduce, slowest group
    micro_batches: int
    stage_forward_s: float

    @property
    def exposed_comm_s(self) -> float:
        return self.total_s - self.compute_s


def micro_batches(s: Scenario) -> int:
    w = s.workload
    return max(1, round(w.tokens_per_iteration / (w.group_size * w.sequence_length * w.micro_batch_sequences)))


def iteration_time(s: Scenario, partition: Partition, flops_per_gpu: float) -> IterationTime:
    """The predicted iteration time of `partition` on `s` with GPUs achieving `flops_per_gpu` FLOP/s."""
    w = s.workload
    edges = Edges.of(s)
    cost = evaluate(edges, partition)
    m = micro_batches(s)
    tokens = w.sequence_length * w.micro_batch_sequences
    f = 2 * (w.params / w.stages) * tokens / flops_per_gpu
    b = 2 * f
    msg = w.activation_bytes / m
    worst = 0.0
    for line in pipelines(edges, partition, cost.order):
        src, dst = np.array(line[:-1]), np.array(line[1:])
        links = s.latency_s[src, dst] + msg / s.bandwidth_bps[src, dst]
        slow = float(links.max(initial=0.0))
        fwd = w.stages * f + float(links.sum()) + (m - 1) * max(f, slow)
        bwd = w.stages * b + float(links.sum()) + (m - 1) * max(b, slow)
        worst = max(worst, fwd + bwd)
    compute = (w.stages + m - 1) * (f + b)
    return IterationTime(worst + cost.dp, compute, worst, cost.dp, m, f)


def flops_for_ratio(s: Scenario, p: Partition, base: Scenario, base_p: Partition, ratio: float) -> float | None:
    """The fastest GPU (FLOP/s) at which `s` stays within `ratio` x `base`'s iteration time (None: never)."""

    def r(x: float) -> float:
        return iteration_time(s, p, x).total_s / iteration_time(base, base_p, x).total_s

    lo, hi = 1e9, 1e16  # the ratio rises with speed: communication matters more as compute shrinks
    if r(lo) > ratio:
        return None
    if r(hi) <= ratio:
        return hi
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if r(mid) <= ratio else (lo, mid)
    return lo
