"""`run_optimistic_demo` end to end: an honest job verified after its window, a lie caught by bisection."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from veriml.demo_optimistic import run_optimistic_demo


def test_demo_runs_and_writes_json(tmp_path: Path) -> None:
    out = io.StringIO()
    report = run_optimistic_demo(Console(file=out, width=160), tmp_path / "run.json")
    assert json.loads((tmp_path / "run.json").read_text()) == report
    text = out.getvalue()
    assert "bisection over states 0..128" in text and "winner challenger" in text and "books balanced" in text
    jobs = report["jobs"]
    verified = [j for j in jobs if j["status"] == "verified"]
    overturned = [j for j in jobs if j["status"] == "overturned"]
    assert verified and overturned and len(verified) + len(overturned) == len(jobs)
    for j in jobs:
        assert {"id", "model", "scheme", "status", "output", "fee_paid", "refund", "dispute"} <= set(j)
        assert j["scheme"] == "optimistic" and j["model"] == "int-mlp"
    for j in verified:
        assert j["dispute"] is None and j["output"] is not None and j["fee_paid"] == j["fee"]
    for j in overturned:
        d = j["dispute"]
        assert set(d) >= {"steps", "rounds", "winner", "one_step_gas"}
        assert (d["steps"], d["rounds"], d["winner"]) == (106, 7, "challenger") and d["one_step_gas"] > 0
        assert d["step"] + 1 == j["tampered_step"]
        assert j["output"] is None and j["refund"] == j["fee"] and j["fee_paid"] == 0
        assert 0 <= j["burned_wei"] < j["slashed_wei"]  # the slash's burned share; the rest went to the watcher
    b = report["books"]
    assert b["balance"] == b["escrow"] + b["bonds"] + b["credits"] and b["registry_balance"] == b["stakes"]
    assert report["model"]["int_accuracy"] >= 0.95
