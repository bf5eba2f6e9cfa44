"""The shipped DT-FM scenarios load, and say what the issue says they are."""

from __future__ import annotations

import numpy as np
import pytest

from veriml.errors import ConfigError
from veriml.scheduling.scenario import GBPS, from_dict, list_shipped, load, to_dict


def test_five_cases_shipped():
    assert list_shipped() == [
        "case0_datacenter", "case1_spot", "case2_universities", "case3_regional", "case4_worldwide",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["0", "1", "2", "3", "4"])
def test_shipped_scenarios_are_64_gpus_in_8_stages_of_8(name):
    s = load(name)
    assert s.devices == 64 and s.workload.stages == 8 and s.workload.group_size == 8
    assert s.workload.model == "GPT-3 XL" and s.workload.layers == 24
    assert np.array_equal(s.latency_s, s.latency_s.T) and np.array_equal(s.bandwidth_bps, s.bandwidth_bps.T)
    assert len(s.regions) == 64


def test_figures_of_the_geo_cases():
    s = load("universities")
    reg = np.array(s.regions)
    inside = np.flatnonzero(reg == "Ohio")[:2]
    across = (np.flatnonzero(reg == "Ohio")[0], np.flatnonzero(reg == "Virginia")[0])
    assert s.latency_s[inside[0], inside[1]] == pytest.approx(0.001)
    assert s.bandwidth_bps[inside[0], inside[1]] == pytest.approx(5 * GBPS)
    assert s.latency_s[across] == pytest.approx(0.011) and s.bandwidth_bps[across] == pytest.approx(1.12 * GBPS)
    w = load("worldwide")
    off = ~np.eye(64, dtype=bool) & (np.array(w.regions)[:, None] != np.array(w.regions)[None, :])
    assert w.latency_s[off].min() == pytest.approx(0.011) and w.latency_s[off].max() == pytest.approx(0.238)
    assert w.bandwidth_bps[off].min() == pytest.approx(0.335 * GBPS)
    assert w.bandwidth_bps[off].max() == pytest.approx(1.16 * GBPS)
    assert sorted(set(w.regions)) == sorted(["Oregon", "Virginia", "Ohio", "Tokyo", "Seoul", "London", "Frankfurt",
                                             "Ireland"])  # fmt: skip
    r = load("regional")
    assert sorted(r.regions.count(x) for x in set(r.regions)) == [16, 16, 16, 16]


def test_round_trip_and_errors(tmp_path):
    s = load("4")
    t = from_dict(to_dict(s))
    assert np.allclose(t.latency_s, s.latency_s) and np.allclose(t.bandwidth_bps, s.bandwidth_bps)
    assert t.workload == s.workload
    with pytest.raises(ConfigError):
        load("no-such-scenario")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    with pytest.raises(ConfigError):
        load(bad)
