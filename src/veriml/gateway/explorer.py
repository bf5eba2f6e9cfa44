"""What the explorer pages show: recent jobs, one job's timeline, nodes and models.

Jobs and timelines come from the index (SQLite); stakes, endpoints and prices are read from the chain
under the sequencer's chain lock. Amounts in wei are decimal strings (JavaScript numbers are doubles).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from veriml.gateway.problem import ApiError
from veriml.gateway.report import timeline
from veriml.gateway.sequencer import Sequencer
from veriml.models import zoo


def jobs(seq: Sequencer, limit: int = 50) -> dict[str, Any]:
    rows = seq.index.recent(max(1, min(limit, 500)))
    for r in rows:
        r["fee"] = str(r["fee"])
    return {"head": seq.index.cursor, "jobs": rows}


def job(seq: Sequencer, job_id: int) -> dict[str, Any]:
    row = seq.index.job(job_id)
    if row is None:
        raise ApiError(404, f"no job {job_id} on this market (yet)", "not_found_error", "job_id", "unknown_job")
    events = seq.index.events(job_id)
    out: dict[str, Any] = {"job": row, "report": seq.index.report(job_id, seq.explorer), "timeline": timeline(events)}
    req = seq.db.one("SELECT id, kind, text FROM requests WHERE job_id = ?", (job_id,))
    if req is not None:
        out["request"] = {"id": req["id"], "kind": req["kind"], "output": req["text"]}
    return out


def _activity(seq: Sequencer) -> tuple[Counter[str], dict[str, int], Counter[str], Counter[str]]:
    """Per node: jobs drawn, wei credited, times slashed, times in the winning majority."""
    drawn: Counter[str] = Counter()
    earned: dict[str, int] = defaultdict(int)
    slashed: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    for r in seq.db.query("SELECT name, args FROM events WHERE name IN ('JobAssigned','Credited','JobFinalized')"):
        a = json.loads(r["args"])
        if r["name"] == "JobAssigned":
            drawn.update(a["nodes"])
        elif r["name"] == "Credited":
            earned[a["account"]] += int(a["amount"])
        else:
            slashed.update(a["slashed"])
            agreed.update(a["winners"])
    return drawn, earned, slashed, agreed


def nodes(seq: Sequencer) -> dict[str, Any]:
    drawn, earned, slashed, agreed = _activity(seq)
    serves: dict[str, list[str]] = defaultdict(list)
    with seq.lock:
        for name, entry in seq.catalog.models.items():
            for addr, _ in seq.contracts.candidates(entry.manifest.model_id()):
                serves[addr].append(name)
        addrs = sorted(set(serves) | set(drawn))
        views = {a: seq.contracts.node(a) for a in addrs}
    out = []
    for a in addrs:
        v = views[a]
        out.append({
            "address": a,
            "stake": str(v.stake),
            "endpoint": v.endpoint,
            "registered": v.registered,
            "open_jobs": v.open_jobs,
            "models": serves.get(a, []),
            "jobs": drawn[a],
            "agreed": agreed[a],
            "slashes": slashed[a],
            "earned": str(earned.get(a, 0)),
        })  # fmt: skip
    return {"nodes": out}


def node(seq: Sequencer, address: str) -> dict[str, Any]:
    for n in nodes(seq)["nodes"]:
        if n["address"].lower() == address.lower():
            history = []
            for r in seq.db.query("SELECT job_id, args FROM events WHERE name = 'JobAssigned' ORDER BY block DESC"):
                if n["address"] in json.loads(r["args"])["nodes"]:
                    history.append(seq.index.report(int(r["job_id"]), seq.explorer))
            n["history"] = [
                {k: h[k] for k in ("job_id", "status", "agree", "slashed", "fee", "refund")} for h in history[:100]
            ]
            return n
    raise ApiError(404, f"no node {address[:60]!r} serves this market", "not_found_error", "address", "unknown_node")


def models(seq: Sequencer) -> dict[str, Any]:
    return {"models": [_model(seq, name) for name in sorted(seq.catalog.models)]}


def model(seq: Sequencer, name: str) -> dict[str, Any]:
    if name not in seq.catalog.models:
        raise ApiError(404, f"model {name[:60]!r} is not served here", "not_found_error", "model", "model_not_found")
    out = _model(seq, name)
    out["manifest"] = zoo.manifest(name).to_dict()
    return out


def _model(seq: Sequencer, name: str) -> dict[str, Any]:
    e = seq.catalog.models[name]
    m = e.manifest
    return {
        "name": name,
        "task": m.task,
        "model_id": "0x" + m.model_id().hex(),
        "weights_root": m.weights_root,
        "policy": m.policy,
        "policy_threshold": m.policy_threshold,
        "runtime": m.runtime,
        "price_wei": str(e.price_wei),
        "nodes": e.nodes,
        "schemes": list(seq.catalog.schemes),
        "verifier": f"quorum commit-reveal on QuorumJobs {seq.contracts.quorum.address}, outputs matched by "
        f"the '{m.policy}' policy (OutputMatching)",
    }
