"""`veriml demo --scheme zk` end to end: a forged answer is rejected and refunded, honest ones are proven,
and --json carries the zk figures of every job."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from veriml.demo_zk import run_zk_demo


def test_zk_demo_proves_and_catches_the_forger(zk_cache: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    report = run_zk_demo(Console(file=out, width=140), tmp_path / "run.json", cache_dir=zk_cache)
    text = out.getvalue()
    assert "NOT TRUSTLESS" in text and "books balanced" in text
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved == json.loads(json.dumps(report))
    jobs = saved["jobs"]
    assert any(j["status"] == "verified" for j in jobs)
    assert any(j["status"] == "rejected" for j in jobs)
    for j in jobs:
        assert set(j["zk"]) >= {"prove_s", "verify_gas", "proof_bytes"}
        assert j["zk"]["prove_s"] > 0 and 0 < j["zk"]["verify_gas"] < 1_000_000 and j["zk"]["proof_bytes"] > 1000
        if j["status"] == "verified":
            assert j["label"] is not None and j["fee_paid"] == j["fee"]
        else:
            assert j["reason"] == "invalid proof" and j["refund"] == 2 * j["fee"] and j["slashed"] > j["fee"]
    cheat = next(n for n in saved["nodes"] if not n["honest"])
    assert cheat["times_slashed"] >= 1 and cheat["stake_after"] < cheat["stake_before"]
    assert all(n["stake_after"] == n["stake_before"] for n in saved["nodes"] if n["honest"])
    b = saved["books"]
    assert b["zk_jobs_balance"] == b["escrow"] + b["credits"]
    assert b["registry_balance"] == b["stakes"]
    assert saved["srs_local_not_trustless"] is True
