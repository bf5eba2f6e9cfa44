"""The gateway's index of the job market: every QuorumJobs event decoded into SQLite, read incrementally.

One `eth_getLogs` over the blocks since the last sync per round, whatever the number of jobs in flight
(on the embedded chain a per-job log query over a job's lifetime costs tenths of a second; a sync over
a few new blocks costs milliseconds). The explorer, the progress reports and the sequencer's settling
all read from here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hexbytes import HexBytes
from web3 import Web3

from veriml.chain.contracts import Contracts
from veriml.errors import UnknownModel
from veriml.gateway.database import Database
from veriml.gateway.report import STATUS_CODES, Event, fold
from veriml.models import zoo

CURSOR = "index.cursor"
_MAX_SAFE_INT = 2**53  # JSON readers in browsers lose precision above this: wei goes out as text
_JOB_STATUS = {"JobSubmitted": "submitted", "JobAssigned": "assigned", "JobRefunded": "refunded"}


def jsonable(v: Any) -> Any:
    """Event arguments as JSON: bytes as 0x-hex, big integers as decimal strings."""
    if isinstance(v, bytes | bytearray | HexBytes):
        return "0x" + bytes(v).hex()
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if abs(v) < _MAX_SAFE_INT else str(v)
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


class ChainIndex:
    """QuorumJobs events of one deployment, mirrored into the gateway database."""

    def __init__(self, db: Database, contracts: Contracts) -> None:
        self.db = db
        self.contracts = contracts
        self._events = {}
        for item in contracts.quorum.contract.abi:
            if item.get("type") == "event":
                types = ",".join(i["type"] for i in item["inputs"])
                topic = bytes(Web3.keccak(text=f"{item['name']}({types})"))
                self._events[topic] = getattr(contracts.quorum.contract.events, item["name"])()
        self._names: dict[str, str] = {}
        # A new deployment (a fresh chain) must not inherit another chain's cursor.
        deployment = f"{contracts.chain.chain_id}:{contracts.quorum.address}"
        if db.get_meta("index.deployment") != deployment:
            db.set_meta("index.deployment", deployment)
            db.set_meta(CURSOR, "-1")

    @property
    def cursor(self) -> int:
        return int(self.db.get_meta(CURSOR, "-1") or -1)

    def sync(self, head: int | None = None) -> set[int]:
        """Read the market's events up to `head`; returns the ids of the jobs they touched."""
        head = self.contracts.chain.block_number() if head is None else head
        start = self.cursor + 1
        if start > head:
            return set()
        logs = self.contracts.w3.eth.get_logs(
            {"address": self.contracts.quorum.address, "fromBlock": start, "toBlock": head}
        )
        touched: set[int] = set()
        rows = []
        for log in logs:
            event = self._events.get(bytes(log["topics"][0])) if log["topics"] else None
            if event is None:
                continue
            decoded = event.process_log(log)
            args = jsonable(dict(decoded["args"]))
            job_id = args.get("jobId")
            rows.append((int(log["blockNumber"]), int(log["logIndex"]), job_id, decoded["event"],
                         Web3.to_hex(log["transactionHash"]), args))  # fmt: skip
            if job_id is not None:
                touched.add(int(job_id))
        with self.db.transaction() as conn:
            for block, index, job_id, name, tx, args in rows:
                conn.execute(
                    "INSERT OR IGNORE INTO events (block, log_index, job_id, name, tx, args) VALUES (?,?,?,?,?,?)",
                    (block, index, job_id, name, tx, json.dumps(args)),
                )
                self._apply(conn, block, job_id, name, args)
            conn.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                         (CURSOR, str(head), str(head)))  # fmt: skip
        return touched

    def _apply(self, conn: Any, block: int, job_id: int | None, name: str, a: dict[str, Any]) -> None:
        now = time.time()
        if job_id is None:
            return
        if name == "JobSubmitted":
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, user, model_id, model, n, fee, status, submit_block, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (job_id, a["user"], a["modelId"], self.model_name(a["modelId"]), int(a["n"]), str(a["fee"]),
                 "submitted", block, now),
            )  # fmt: skip
        elif name == "JobAssigned":
            conn.execute(
                "UPDATE jobs SET status = 'assigned', commit_deadline = ?, reveal_deadline = ?, updated = ?"
                " WHERE job_id = ?",
                (int(a["commitDeadline"]), int(a["revealDeadline"]), now, job_id),
            )
        elif name == "Committed":
            conn.execute("UPDATE jobs SET commits = commits + 1, updated = ? WHERE job_id = ?", (now, job_id))
        elif name == "Revealed":
            conn.execute("UPDATE jobs SET reveals = reveals + 1, updated = ? WHERE job_id = ?", (now, job_id))
        elif name == "JobFinalized":
            status = STATUS_CODES.get(int(a["status"]), "unknown")
            conn.execute("UPDATE jobs SET status = ?, updated = ? WHERE job_id = ?", (status, now, job_id))
        elif name in _JOB_STATUS:
            conn.execute("UPDATE jobs SET status = ?, updated = ? WHERE job_id = ?", (_JOB_STATUS[name], now, job_id))

    def model_name(self, model_id_hex: str) -> str:
        """A shipped model's name for its 0x id, or the id itself."""
        if model_id_hex not in self._names:
            try:
                self._names[model_id_hex] = zoo.by_model_id(bytes.fromhex(model_id_hex[2:]))
            except (UnknownModel, ValueError):
                self._names[model_id_hex] = model_id_hex
        return self._names[model_id_hex]

    # ---- reads ----
    def events(self, job_id: int) -> list[Event]:
        rows = self.db.query("SELECT * FROM events WHERE job_id = ? ORDER BY block, log_index", (job_id,))
        return [Event(r["block"], r["log_index"], r["name"], r["tx"], json.loads(r["args"])) for r in rows]

    def report(self, job_id: int, explorer: str = "") -> dict[str, Any]:
        return fold(job_id, self.events(job_id), explorer)

    def job(self, job_id: int) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return None if row is None else dict(row)

    def open_jobs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM jobs WHERE status IN ('submitted', 'assigned')")]

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM jobs ORDER BY job_id DESC LIMIT ?", (limit,))]
