"""`veriml demo` end to end: the JSON it writes, and the story it tells."""

from __future__ import annotations

import io
import json

from rich.console import Console

from veriml.demo import run_demo


def test_demo_catches_the_dishonest_node_and_balances_the_books(tmp_path):
    out = tmp_path / "demo.json"
    console = Console(file=io.StringIO(), width=140)
    run_demo(console, out)
    data = json.loads(out.read_text())
    jobs, nodes = data["jobs"], data["nodes"]
    assert len(jobs) >= 4 and sum(j["n"] == 5 for j in jobs) >= 1 and sum(j["n"] == 3 for j in jobs) >= 3
    for j in jobs:
        assert set(j) >= {
            "id",
            "model",
            "scheme",
            "n",
            "status",
            "output",
            "output_digest",
            "agree",
            "slashed",
            "fee_paid",
            "refund",
        }
        assert j["status"] in ("verified", "refunded", "disputed")
        assert j["fee_paid"] + j["refund"] >= 0
    (cheat,) = [n for n in nodes if not n["honest"]]
    assert any(cheat["address"] in j["slashed"] for j in jobs)
    assert cheat["stake_after"] < cheat["stake_before"]
    for n in nodes:
        assert set(n) >= {"address", "honest", "stake_before", "stake_after", "earned"}
        if n["honest"]:
            assert n["stake_after"] == n["stake_before"]
            assert all(n["address"] not in j["slashed"] for j in jobs)
    assert all(j["status"] == "verified" for j in jobs)
    b = data["books"]
    assert b["market_balance"] == b["escrow"] + b["credits"] and b["registry_balance"] == b["stakes"]
    text = console.file.getvalue()
    assert "SLASHED" in text and "verified output" in text
