"""A job's `veriml` report, folded from its chain events: who was drawn, committed, revealed, agreed and
was slashed, with every transaction hash, the fee and the refund.

Pure: a list of decoded events (as the index stores them) in, a JSON-able dict out. The same fold
serves a job in flight (a progress report) and a settled one (the report a response carries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FINAL = ("verified", "disputed", "refunded")
STATUS_CODES = {3: "verified", 4: "disputed", 5: "refunded"}  # QuorumJobs.Status of a finalized job


@dataclass(frozen=True)
class Event:
    """One decoded QuorumJobs event of a job."""

    block: int
    log_index: int
    name: str
    tx: str
    args: dict[str, Any]


def fold(job_id: int, events: Iterable[Event], explorer: str = "") -> dict[str, Any]:
    """The report of job `job_id` as far as `events` (in chain order) go."""
    r: dict[str, Any] = {
        "job_id": job_id,
        "scheme": "quorum",
        "n": None,
        "status": "unknown",
        "model_id": None,
        "output_digest": None,
        "assigned": [],
        "committed": [],
        "revealed": [],
        "agree": [],
        "slashed": [],
        "fee": "0",
        "refund": "0",
        "fee_paid": "0",
        "refund_reason": None,
        "txs": {},
        "blocks": {},
        "explorer": f"{explorer}/explorer#/job/{job_id}",
    }
    for e in events:
        a = e.args
        if e.name == "JobSubmitted":
            r.update(status="submitted", n=int(a["n"]), fee=str(a["fee"]), fee_paid=str(a["fee"]),
                     model_id=a["modelId"], scheme="quorum")  # fmt: skip
            _tx(r, "submit", e)
        elif e.name == "JobAssigned":
            r.update(status="assigned", assigned=list(a["nodes"]))
            r["commit_deadline"], r["reveal_deadline"] = int(a["commitDeadline"]), int(a["revealDeadline"])
            _tx(r, "assign", e)
        elif e.name == "Committed":
            r["committed"].append(a["node"])
            r["status"] = "revealing" if r["n"] and len(r["committed"]) == r["n"] else "committing"
            _tx(r, f"commit:{a['node']}", e)
        elif e.name == "Revealed":
            r["revealed"].append(a["node"])
            r["status"] = "revealing"
            _tx(r, f"reveal:{a['node']}", e)
        elif e.name == "JobFinalized":
            status = STATUS_CODES.get(int(a["status"]), "unknown")
            refund = int(a["refund"])
            r.update(status=status, agree=list(a["winners"]), slashed=list(a["slashed"]), refund=str(refund),
                     fee_paid=str(int(r["fee"]) - refund))  # fmt: skip
            if status == "verified":
                r["output_digest"] = a["digest"]
            _tx(r, "finalize", e)
        elif e.name == "JobRefunded":
            amount = int(a["amount"])
            r.update(status="refunded", refund=str(amount), refund_reason=a.get("reason"),
                     fee_paid=str(int(r["fee"]) - amount))  # fmt: skip
            _tx(r, "refund", e)
    r["final"] = r["status"] in FINAL
    return r


def _tx(r: dict[str, Any], label: str, e: Event) -> None:
    r["txs"][label] = e.tx
    r["blocks"][label] = e.block


def eth(wei: Any) -> str:
    """Wei as exact ETH text: 1500000000000000 -> '0.0015 ETH'."""
    whole, frac = divmod(int(wei), 10**18)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") + " ETH"


def describe(e: Event) -> str:
    """One line saying what an event did."""
    a = e.args
    if e.name == "JobSubmitted":
        return f"submitted: n={a['n']}, fee {eth(a['fee'])} in escrow"
    if e.name == "CandidatesFrozen":
        return f"{len(a['candidates'])} candidate node(s) frozen for the draw"
    if e.name == "JobAssigned":
        return f"drew {len(a['nodes'])} node(s); commit by block {a['commitDeadline']}, reveal by {a['revealDeadline']}"
    if e.name == "Committed":
        return f"commitment {str(a['commitment'])[:18]}.."
    if e.name == "Revealed":
        return f"revealed digest {str(a['digest'])[:18]}.."
    if e.name == "JobFinalized":
        status = STATUS_CODES.get(int(a["status"]), "?")
        return f"{status}: {len(a['winners'])} agreed, {len(a['slashed'])} slashed, refund {eth(a['refund'])}"
    if e.name == "JobRefunded":
        return f"refunded {eth(a['amount'])}: {a['reason']}"
    if e.name == "Credited":
        return f"credited {eth(a['amount'])}"
    return e.name


def timeline(events: Iterable[Event]) -> list[dict[str, Any]]:
    """The events as explorer rows: block, what happened, who, and the transaction."""
    rows = []
    for e in events:
        who = e.args.get("node") or e.args.get("account") or e.args.get("user")
        rows.append({"block": e.block, "event": e.name, "what": describe(e), "who": who, "tx": e.tx})
    return rows
