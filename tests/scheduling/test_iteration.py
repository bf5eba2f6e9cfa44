"""The predicted iteration time on a two-stage pipeline small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from veriml.scheduling.iteration import flops_for_ratio, iteration_time, micro_batches
from veriml.scheduling.scenario import Workload, make


def two_stages(latency_ms: float = 10.0, gbps: float = 1.0):
    # 4 micro-batches of one 2048-token sequence; 1e9 parameters per stage; 1.25e7 bytes per message
    w = Workload("toy", 2e9, 2, stages=2, group_size=1, activation_bytes=4 * 1.25e7, gradient_bytes=1e9,
                 tokens_per_iteration=4 * 2048, sequence_length=2048, micro_batch_sequences=1)  # fmt: skip
    lat = np.array([[0.0, latency_ms], [latency_ms, 0.0]])
    return make("two-stages", lat, np.full((2, 2), gbps), w)


def test_compute_bound_by_hand():
    s = two_stages()
    assert micro_batches(s) == 4
    # f = 2 * 1e9 * 2048 / 4.096e12 = 1 s, b = 2 s; link 0.01 + 1.25e7 / 1.25e8 = 0.11 s
    t = iteration_time(s, ((0,), (1,)), flops_per_gpu=4.096e12)
    assert t.stage_forward_s == pytest.approx(1.0)
    assert t.pipeline_s == pytest.approx((2 * 1 + 0.11 + 3 * 1) + (2 * 2 + 0.11 + 3 * 2))
    assert t.compute_s == pytest.approx((2 + 4 - 1) * 3)
    assert t.allreduce_s == 0.0 and t.total_s == pytest.approx(t.pipeline_s)


def test_link_bound_by_hand():
    t = iteration_time(two_stages(), ((0,), (1,)), flops_per_gpu=4.096e15)  # f = 1 ms
    assert t.pipeline_s == pytest.approx((0.002 + 0.11 + 3 * 0.11) + (0.004 + 0.11 + 3 * 0.11))
    assert t.exposed_comm_s == pytest.approx(t.total_s - (2 + 4 - 1) * 0.003)


def test_flops_for_ratio_brackets_the_crossing():
    slow, fast = two_stages(latency_ms=100.0, gbps=0.1), two_stages()
    p = ((0,), (1,))
    x = flops_for_ratio(slow, p, fast, p, 2.0)
    assert x is not None

    def ratio(f: float) -> float:
        return iteration_time(slow, p, f).total_s / iteration_time(fast, p, f).total_s

    assert ratio(x) <= 2.0 < ratio(x * 1.01)
